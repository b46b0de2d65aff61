"""The generator of tests/wire_strategies.py: it makes only what the wire layer accepts,
and it keeps reaching every kind, every optional field and every limit the Structs
declare, so consumer tests built on it cannot silently stop covering them (issue 29)."""

from __future__ import annotations

import msgspec
import msgspec.inspect
import pytest
import wire_strategies as ws
from hypothesis import HealthCheck, given, settings

from driftline.models.wire import ALERT, ALERT_DELIVERY, MODEL_EVENT, RETRAIN_REQUEST, encode
from driftline.models.wire.events import (
    MAX_EPOCH_SECONDS,
    MAX_ID_CHARS,
    Alert,
    AlertDelivery,
    ModelEvent,
    RetrainRequest,
)

FIXED = settings(derandomize=True, database=None, deadline=None, print_blob=False,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

CASES = [(Alert, ALERT, ws.ALERTS), (ModelEvent, MODEL_EVENT, ws.MODEL_EVENTS),
         (RetrainRequest, RETRAIN_REQUEST, ws.RETRAIN_REQUESTS),
         (AlertDelivery, ALERT_DELIVERY, ws.DELIVERIES)]
IDS = [cls.__name__ for cls, _, _ in CASES]
LITERALS = {Alert: ("kind", "status", "severity", "reason"), ModelEvent: ("event",),
            RetrainRequest: (), AlertDelivery: ("outcome",)}


def optional_fields(cls: type[msgspec.Struct]) -> set[str]:
    """Fields that may be left out or null, read off the Struct."""
    info = msgspec.inspect.type_info(cls)
    return {f.name for f in info.fields if not f.required
            or isinstance(f.type, msgspec.inspect.UnionType)
            and any(isinstance(t, msgspec.inspect.NoneType) for t in f.type.types)}


def round_trips(kind, event) -> None:
    good, bad = kind.decode(encode(event))
    assert bad == [], bad[0].error
    assert good == [event]


@pytest.mark.parametrize(("cls", "kind", "strategy"), CASES, ids=IDS)
def test_every_generated_event_round_trips_and_the_run_reaches_every_target(cls, kind,
                                                                            strategy):
    seen: set[tuple[str, str]] = set()

    @settings(FIXED, max_examples=400)
    @given(strategy)
    def draw(event):
        round_trips(kind, event)
        seen.update(ws.observed(event))

    draw()
    wanted = ws.targets(cls)
    assert wanted - seen == set()
    # Not vacuous: the Literal choices on the annotations are among the targets.
    for field in LITERALS[cls]:
        values = ws.literal_values(cls, field)
        assert values and {(field, f"={v}") for v in values} <= wanted, field


def test_alert_kinds_come_from_the_annotation():
    """A kind added to ``AlertKind`` is a target, a corner and a drawn value at once."""
    kinds = ws.literal_values(Alert, "kind")
    assert {"concept_drift", "metric_threshold", "promotion_regressed"} <= kinds
    assert {(c.kind) for c in ws.corners(Alert)} == kinds
    assert ws.literal_values(Alert, "reason") == {"cleared", "superseded"}


def optional_states(alert: Alert) -> set[tuple[str, str]]:
    return {("attribution", "left out" if alert.attribution is msgspec.UNSET
             else "not empty" if alert.attribution else "empty"),
            ("segment", "null" if alert.segment is None else "set"),
            ("reason", "left out" if alert.reason is msgspec.UNSET else alert.reason),
            ("feature", "null" if alert.feature is None else "set"),
            ("version", "null" if alert.version is None else "set")}


ALL_STATES = {("attribution", s) for s in ("left out", "empty", "not empty")} | {
    (f, s) for f in ("segment", "feature", "version") for s in ("null", "set")} | {
    ("reason", s) for s in ("left out", "cleared", "superseded")}


@pytest.mark.parametrize("kind", sorted(ws.literal_values(Alert, "kind")))
def test_each_kind_is_drawn_with_each_optional_field_set_and_left_out(kind):
    """Attribution left out, empty and not, segment and feature set and null, reason of
    each value and left out, version null and not: with every kind."""
    seen: set[tuple[str, str]] = set()

    @settings(FIXED, max_examples=100)
    @given(ws.alerts(kind=kind))
    def draw(alert):
        round_trips(ALERT, alert)
        seen.update(optional_states(alert))

    draw()
    assert ALL_STATES - seen == set()
    # A new optional field of Alert must join ALL_STATES (and the consumers' tests).
    assert {f for f, _ in ALL_STATES} == optional_fields(Alert)


@pytest.mark.parametrize(("cls", "kind", "strategy"), CASES, ids=IDS)
def test_corners_round_trip_and_pair_every_literal_with_every_optional_field(cls, kind,
                                                                             strategy):
    made = ws.corners(cls)
    for event in made:
        round_trips(kind, event)
    optional = [f.name for f in msgspec.structs.fields(cls)
                if f.default is not msgspec.NODEFAULT or f.default_factory
                is not msgspec.NODEFAULT]
    if cls is Alert:  # every kind x status x severity with all optional fields set and unset
        states = {(a.kind, a.status, a.severity, a.attribution is not msgspec.UNSET,
                   a.segment is not None, a.reason) for a in made}
        for a_kind in ws.literal_values(Alert, "kind"):
            for status in ("firing", "resolved"):
                for severity in ("warning", "critical"):
                    for reason in ("cleared", "superseded"):
                        assert (a_kind, status, severity, True, True, reason) in states
                    assert (a_kind, status, severity, False, False, msgspec.UNSET) in states
        longest = max(made, key=lambda a: len(a.alert_id))
        assert len(longest.alert_id) == MAX_ID_CHARS and longest.ts == MAX_EPOCH_SECONDS
        assert len(longest.model) == 128 and longest.feature is not None
    else:
        for event in made[:1]:
            assert all(getattr(event, f) is not msgspec.UNSET for f in optional)


def test_streams_do_contain_episodes_that_resolve():
    found = []

    @settings(FIXED, max_examples=60)
    @given(ws.alert_streams())
    def draw(stream):
        ids = {a.alert_id for a in stream}
        found.extend(a for a in stream if a.status == "resolved"
                     and a.alert_id.removesuffix(".resolved") + ".firing" in ids)

    draw()
    assert len(found) >= 20 and {a.reason for a in found} >= {"cleared", "superseded"}
