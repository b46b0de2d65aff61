"""The public events of DESIGN.md as msgspec Structs, with their constraints.

A Struct is both the schema and the value: :mod:`driftline.models.wire.codec` decodes
and validates bytes straight into these types (msgspec checks every constraint while
it parses), and encodes them back to the same JSON objects. Field order is the order
on the wire.

>>> import msgspec
>>> p = msgspec.json.decode(b'{"prediction_id": "p1", "model": "houses", "prediction": 3}',
...                         type=Prediction)
>>> p.prediction, p.version, p.features, p.ts
(3.0, None, {}, UNSET)
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

MAX_ID_CHARS = 256
MAX_FEATURES = 1024
MAX_FEATURE_NAME_CHARS = 256
MAX_CATEGORY_CHARS = 256
MAX_SEGMENT_CHARS = 128
MAX_TEXT_CHARS = 4096
# Epoch seconds above this are almost surely milliseconds (year 5138).
MAX_EPOCH_SECONDS = 1e11
# Integers driftline can write back out (orjson and msgspec stop at 64 bits).
MAX_INT = 2**63 - 1
MAX_FLOAT = 1.7976931348623157e308

# \Z, not $: msgspec matches with re.search, where $ also matches before a final "\n".
MODEL_PATTERN = r"^[A-Za-z0-9._-]{1,128}\Z"
MODEL_RE = re.compile(r"[A-Za-z0-9._-]{1,128}")

# A finite number: NaN fails both bounds, +-inf one of them. JSON integers are accepted
# and become floats; booleans are refused (msgspec is strict).
Number = Annotated[float, Meta(ge=-MAX_FLOAT, le=MAX_FLOAT)]
Id = Annotated[str, Meta(min_length=1, max_length=MAX_ID_CHARS)]
ModelName = Annotated[str, Meta(pattern=MODEL_PATTERN)]
# A prediction's model as msgspec decodes it: its characters are the codec's to check, once
# a batch for each name (:class:`StrictPrediction`).
ModelText = Annotated[str, Meta(min_length=1, max_length=128)]
Version = Annotated[int, Meta(ge=1, le=MAX_INT)]
Timestamp = Annotated[float, Meta(ge=0, le=MAX_EPOCH_SECONDS)]
Text = Annotated[str, Meta(max_length=MAX_TEXT_CHARS)]
Segment = Annotated[str, Meta(min_length=1, max_length=MAX_SEGMENT_CHARS)]
FeatureName = Annotated[str, Meta(min_length=1, max_length=MAX_FEATURE_NAME_CHARS)]
# A feature value (DESIGN.md, since 2026-12-07): a finite number, a category (a string of
# 1-256 characters, or a boolean), or null (missing). Whether a feature is numeric or
# categorical is the version's reference's to say, not one event's.
Category = Annotated[str, Meta(min_length=1, max_length=MAX_CATEGORY_CHARS)]
FeatureValue = Number | Category | bool | None
Features = Annotated[dict[FeatureName, FeatureValue], Meta(max_length=MAX_FEATURES)]
# A prediction or a label (DESIGN.md, since 2026-12-07): a finite number (a regression's
# value, a binary classifier's probability of 1 or its 0/1 label), or a class (a string of
# 1-256 characters: a multiclass model's predicted class, or the true one).
ClassName = Annotated[str, Meta(min_length=1, max_length=MAX_CATEGORY_CHARS)]
Outcome = Number | ClassName
MAX_CLASSES = 1024
PROBABILITY_SUM_SLACK = 0.01  # producers round; driftline renormalises
Probabilities = Annotated[dict[ClassName, Annotated[float, Meta(ge=0, le=1)]],
                          Meta(min_length=1, max_length=MAX_CLASSES)]
# Metrics: name -> finite number, null, or one more level of the same (the model events'
# {"challenger": {...}, "champion": {...}}). Integers stay integers (n_scored: 2048, not
# 2048.0): the union keeps what the producer wrote.
Metric = Annotated[int, Meta(ge=-MAX_INT - 1, le=MAX_INT)] | Number | None
Metrics = dict[str, Metric | dict[str, Metric]]
Count = Annotated[int, Meta(ge=0, le=MAX_INT)]

AlertKind = Literal["concept_drift", "data_drift", "prediction_drift", "metric_threshold",
                    "label_starvation", "estimated_degradation", "multivariate_drift",
                    "promotion_regressed", "data_quality"]
ModelEventKind = Literal["registered", "promoted", "rejected", "rolled_back", "shadowing"]
DeliveryOutcome = Literal["delivered", "silenced", "inhibited", "failed"]


class Event(Struct, forbid_unknown_fields=True, gc=False):
    """Base of every public event: unknown fields are refused. ``gc=False``: an event
    holds numbers, strings and dicts of them, never a cycle, so the garbage collector
    need not track millions of them (msgspec's advice for such types)."""


def renormalise(prediction: Prediction) -> str | None:
    """Make a prediction's class probabilities sum to 1 if they do within
    :data:`PROBABILITY_SUM_SLACK`; else what is wrong (the codec refuses the event with it).
    Not a ``__post_init__``: that is a Python call for every event decoded (0.04 µs), and
    the codec calls this only for events that have probabilities."""
    probabilities = prediction.probabilities
    if not probabilities:
        return None
    total = math.fsum(probabilities.values())
    if abs(total - 1.0) > PROBABILITY_SUM_SLACK:
        return f"must sum to 1 (within {PROBABILITY_SUM_SLACK}), got {total:.6g}"
    if total != 1.0:
        prediction.probabilities = {k: v / total for k, v in probabilities.items()}
    return None


class Prediction(Event):
    prediction_id: Id
    model: ModelText  # a ModelName: the codec checks its characters (StrictPrediction)
    prediction: Outcome
    version: Version | None = None
    # null is read as no features (the join normalises it to {}).
    features: Features | None = {}
    ts: Timestamp | UnsetType = UNSET      # absent: the broker's timestamp
    segment: Segment | UnsetType = UNSET   # the cohort, e.g. a country
    probabilities: Probabilities | UnsetType = UNSET  # a multiclass model's, by class
                                                      # (renormalised: renormalise())


class StrictPrediction(Prediction):
    """A :class:`Prediction` whose model name msgspec checks against its pattern, as the
    schema says and as errors name it. The codec decodes into :class:`Prediction` and
    checks each batch's names once each (``PREDICTION``): msgspec calls the regex for
    every event, ~0.6 µs, a third of a prediction's decode."""

    model: ModelName


class Label(Event):
    prediction_id: Id
    label: Outcome
    ts: Timestamp | UnsetType = UNSET
    model: ModelName | UnsetType = UNSET   # a hint only


class ScoredPair(Event):
    prediction_id: Id
    model: ModelName
    version: Version | None
    prediction: Outcome
    label: Outcome
    error: Number | None  # prediction - label when both are numbers
    features: Features
    ts: Timestamp | None
    label_ts: Timestamp | None
    segment: Segment | UnsetType = UNSET
    probabilities: Probabilities | UnsetType = UNSET  # the prediction's


class Attribution(Event):
    feature: Text
    share: Annotated[float, Meta(ge=0, le=1)]


class Alert(Event):
    alert_id: Id
    model: ModelName
    version: Version | None
    kind: AlertKind
    status: Literal["firing", "resolved"]
    severity: Literal["warning", "critical"]
    detector: Text
    feature: Text | None
    ts: Timestamp
    metrics: Metrics
    message: Text
    segment: Segment | None = None
    attribution: list[Attribution] | UnsetType = UNSET
    reason: Literal["cleared", "superseded"] | UnsetType = UNSET


class RetrainRequest(Event):
    request_id: Id
    model: ModelName
    base_version: Version | None
    alert_id: Id | None
    reason: Text
    ts: Timestamp
    # driftline's addition: train on pairs labelled at or after this event time (the
    # drift point); absent, the most recent pairs whatever their time.
    since: Timestamp | None | UnsetType = UNSET


class ModelEvent(Event):
    model: ModelName
    version: Version
    event: ModelEventKind
    parent_version: Version | None
    request_id: Id | None
    metrics: Metrics
    ts: Timestamp


class DeadLetter(Event):
    """A refused input: where it was and why (``error`` = ``kind: path: reason``)."""

    topic: str
    partition: int | None
    offset: int | None
    error: str
    raw: str
    index: int | UnsetType = UNSET          # the element of a batch
    raw_truncated: bool | UnsetType = UNSET
    raw_bytes: int | UnsetType = UNSET


class AlertDelivery(Event):
    alert_id: Id
    target: Text
    outcome: DeliveryOutcome
    attempts: Count
    status_code: int | None
    error: Text | None
    ts: Timestamp


def as_dict(event: Struct) -> dict[str, Any]:
    """An event as plain JSON types, nested Structs included (``attribution``), with
    its UNSET fields left out: what every consumer (orjson, the payload builders,
    the API) can serialise.

    >>> a = Alert("m.v1.concept_drift.1.firing", "m", 1, "concept_drift", "firing",
    ...           "warning", "adwin", None, 1.0, {}, "up", attribution=[Attribution("x", 0.5)])
    >>> as_dict(a)["attribution"], "reason" in as_dict(a)
    ([{'feature': 'x', 'share': 0.5}], False)
    """
    plain: dict[str, Any] = msgspec.to_builtins(event)
    return plain
