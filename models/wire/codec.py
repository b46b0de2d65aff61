"""Bytes on a topic -> validated events, or the reasons they were refused.

A message value is one JSON event object or a JSON array of events of one kind
(DESIGN.md). The fast path decodes and validates the whole message in one msgspec
call. Only when that fails is the message looked at element by element: a bad
element of a batch is refused on its own, with its own bytes and index, and the
good elements around it go on. msgspec's reason is then turned into driftline's
stable error (``kind``, field path, reason), see :mod:`driftline.models.wire.explain`.

>>> good, bad = LABEL.decode(b'[{"prediction_id": "a", "label": 1}, {"label": 2}]')
>>> good
[Label(prediction_id='a', label=1.0, ts=UNSET, model=UNSET)]
>>> [(r.index, r.kind, r.error) for r in bad]
[(1, 'missing_field', '[1].prediction_id: required field is missing from a label event')]
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import msgspec
import orjson

from driftline.errors import SchemaError
from driftline.models.wire import events as ev
from driftline.models.wire.explain import explain

DEFAULT_MAX_BYTES = 1_048_576
DEFAULT_MAX_BATCH = 10_000

E = TypeVar("E", bound=msgspec.Struct)

def _enc_hook(obj: Any) -> Any:
    item = getattr(obj, "item", None)  # a numpy scalar (metrics computed with numpy)
    if item is not None:
        return item()
    raise NotImplementedError(f"cannot encode {type(obj).__name__}")


_encoder = msgspec.json.Encoder(enc_hook=_enc_hook)


@dataclass(frozen=True)
class Rejection:
    """Why (part of) a message was refused. ``index`` is the batch position, or None."""

    kind: str
    error: str
    raw: bytes
    index: int | None = None


class EventKind(Generic[E]):
    """One public event type: its name in messages, and its codec.

    >>> LABEL.validate({"prediction_id": "p1", "label": float("nan")})
    Traceback (most recent call last):
    ...
    driftline.errors.SchemaError: label: must be a finite number, got nan
    """

    def __init__(self, name: str, event_type: type[E],
                 check: Callable[[E], str | None] | None = None,
                 checked: str | None = None, strict: type[E] | None = None) -> None:
        self.name = name
        self.type = event_type
        # ``strict``: the type with the model name's pattern, which ``event_type`` leaves to
        # :meth:`_names_ok`; it names the errors and gives the schema.
        self.strict = strict
        # What the schema alone cannot say (a prediction's probabilities sum to 1), run on
        # the events whose ``checked`` attribute is set (a C-level filter: ~10 ns an event
        # that has none); it may fix the event, else it says what is wrong.
        self._check = check
        self._field = checked or ""
        self._checked = operator.attrgetter(checked) if checked else None
        self._one_or_many = msgspec.json.Decoder(list[event_type] | event_type)  # type: ignore[valid-type]
        self._one = msgspec.json.Decoder(event_type)
        self._many = msgspec.json.Decoder(list[event_type])  # type: ignore[valid-type]

    def decode(self, raw: bytes | None, *, max_bytes: int = DEFAULT_MAX_BYTES,
               max_batch: int = DEFAULT_MAX_BATCH) -> tuple[list[E], list[Rejection]]:
        """Decode and validate one message value; never raises on bad input."""
        if raw is None:
            return [], [Rejection("empty", "message has no value (null)", b"")]
        if len(raw) > max_bytes:
            return [], [Rejection("oversized", f"message is {len(raw)} bytes, the limit is "
                                               f"{max_bytes} (DRIFTLINE_MAX_MESSAGE_BYTES)", raw)]
        try:
            value = self._one_or_many.decode(raw)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return self._decode_slowly(raw, max_batch)
        if not self._names_ok(value if isinstance(value, list) else [value]):
            return self._decode_slowly(raw, max_batch)
        if isinstance(value, list):
            problem = _batch_problem(len(value), max_batch)
            if problem:
                return [], [Rejection(*problem, raw)]
            return self._checked_events(value, raw, True)
        return self._checked_events([value], raw, False)

    def _names_ok(self, events: list[E]) -> bool:
        """Whether every event's model name fits :data:`~.events.MODEL_RE` (always, for a
        kind without :attr:`strict`): each name of the batch checked once, and remembered."""
        if self.strict is None:
            return True
        for name in {e.model for e in events}:  # type: ignore[attr-defined]
            if name not in _GOOD_NAMES:
                if not ev.MODEL_RE.fullmatch(name):
                    return False
                if len(_GOOD_NAMES) >= _GOOD_NAMES_MAX:
                    _GOOD_NAMES.clear()
                _GOOD_NAMES.add(name)
        return True

    def _problems(self, events: list[E]) -> dict[int, str]:
        """The events :attr:`_check` refuses, by position (none without a check)."""
        check, checked = self._check, self._checked
        if check is None or checked is None or not any(map(checked, events)):
            return {}
        found = {i: check(e) for i, e in enumerate(events) if checked(e)}
        return {i: why for i, why in found.items() if why}

    def _checked_events(self, events: list[E], raw: bytes, batch: bool
                        ) -> tuple[list[E], list[Rejection]]:
        problems = self._problems(events)
        if not problems:
            return events, []
        path = ("[{}]." if batch else "") + self._field + ": "
        return ([e for i, e in enumerate(events) if i not in problems],
                [Rejection("out_of_range", path.format(i) + why,
                           encode(events[i]) if batch else raw, index=i if batch else None)
                 for i, why in problems.items()])

    def decode_each(self, raws: Sequence[bytes]) -> list[E] | None:
        """One event from each of ``raws`` (single-event messages: JSON objects, each
        within the size limit) with one decode for all, or None when that cannot vouch
        for every one (then :meth:`decode` them one by one, for their own errors).

        They are decoded as one JSON array: a value that is not exactly one valid event
        fails it (or changes the count: ``{...},{...}`` in one message) - a value that
        began inside one event and ended in the next would need an array field, and no
        event type has one.

        >>> LABEL.decode_each([b'{"prediction_id": "a", "label": 1}', b'{"label": 2}'])
        >>> [ev.label for ev in LABEL.decode_each([b'{"prediction_id": "a", "label": 1}'])]
        [1.0]
        """
        try:
            events = self._many.decode(b"[" + b",".join(raws) + b"]")
        except (msgspec.ValidationError, msgspec.DecodeError):
            return None
        if len(events) != len(raws) or not self._names_ok(events) or self._problems(events):
            return None
        return events

    def decode_one(self, raw: bytes) -> E:
        """One event driftline wrote itself; raises :class:`SchemaError` if it is not."""
        try:
            event = self._one.decode(raw)
            if not self._names_ok([event]):
                raise msgspec.ValidationError("a model name")  # decode says which, below
            problem = self._problems([event]).get(0)
            if problem:
                raise SchemaError(problem, path=self._field, kind="out_of_range")
            return event
        except (msgspec.ValidationError, msgspec.DecodeError):
            good, bad = self.decode(raw)
            if bad or len(good) != 1:
                raise SchemaError(bad[0].error if bad else f"not one {self.name} event",
                                  kind=bad[0].kind if bad else "wrong_type") from None
            return good[0]

    def validate(self, obj: Any, path: str = "") -> E:
        """A Python object (a dict from a caller, a CSV row) as this event, or a
        :class:`SchemaError` naming the field."""
        try:
            # Plain Python first: a numpy scalar (``model.predict(X)[0]``, a metric computed
            # with numpy) becomes the float or int it stands for, as it would on the wire.
            obj = msgspec.to_builtins(obj, enc_hook=_enc_hook)
        except (TypeError, NotImplementedError):
            pass  # left as it is: convert names the field that is wrong
        try:
            event = msgspec.convert(obj, self.type)
            if not self._names_ok([event]):
                raise msgspec.ValidationError("a model name")
        except msgspec.ValidationError as exc:
            raise explain(self._first_error(obj, exc), obj, self.name).under(path) from None
        problem = self._problems([event]).get(0)
        if problem:
            raise SchemaError(problem, path=self._field, kind="out_of_range").under(path)
        return event

    def _first_error(self, obj: Any, exc: msgspec.ValidationError) -> msgspec.ValidationError:
        """The first error of ``obj`` as :attr:`strict` has it (the model name's pattern in
        its place among the fields), else ``exc``."""
        if self.strict is not None:
            try:
                msgspec.convert(obj, self.strict)
            except msgspec.ValidationError as strict:
                return strict
        return exc

    def validate_many(self, obj: Any) -> list[E]:
        """A single event or a list of them; raise on the first bad element."""
        if isinstance(obj, list):
            return [self.validate(item, f"[{i}]") for i, item in enumerate(obj)]
        return [self.validate(obj)]

    def _decode_slowly(self, raw: bytes, max_batch: int) -> tuple[list[E], list[Rejection]]:
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            obj = _lenient_loads(raw)
            if obj is _INVALID:
                return [], [Rejection("invalid_json", f"invalid JSON: {exc}", raw)]
        if not isinstance(obj, list):
            try:
                return [self.validate(obj)], []
            except SchemaError as exc:
                return [], [Rejection(exc.kind, str(exc), raw)]
        problem = _batch_problem(len(obj), max_batch)
        if problem:
            return [], [Rejection(*problem, raw)]
        good: list[E] = []
        bad: list[Rejection] = []
        for i, item in enumerate(obj):
            try:
                good.append(self.validate(item, f"[{i}]"))
            except SchemaError as exc:
                bad.append(Rejection(exc.kind, str(exc), _element_raw(item, raw), index=i))
        return good, bad

    def __repr__(self) -> str:
        return f"EventKind({self.name!r}, {self.type.__name__})"


PREDICTION = EventKind("prediction", ev.Prediction, ev.renormalise, "probabilities",
                       strict=ev.StrictPrediction)
LABEL = EventKind("label", ev.Label)
SCORED_PAIR = EventKind("scored pair", ev.ScoredPair)
ALERT = EventKind("alert", ev.Alert)
RETRAIN_REQUEST = EventKind("retrain request", ev.RetrainRequest)
MODEL_EVENT = EventKind("model event", ev.ModelEvent)
DEAD_LETTER = EventKind("dead letter", ev.DeadLetter)
ALERT_DELIVERY = EventKind("alert delivery", ev.AlertDelivery)
KINDS = (PREDICTION, LABEL, SCORED_PAIR, ALERT, RETRAIN_REQUEST, MODEL_EVENT, DEAD_LETTER,
         ALERT_DELIVERY)


def _batch_problem(n: int, max_batch: int) -> tuple[str, str] | None:
    if n == 0:
        return "empty", "batch is an empty JSON array"
    if n > max_batch:
        return "oversized", f"batch has {n} events, the limit is {max_batch} " \
                            f"(DRIFTLINE_MAX_BATCH_EVENTS)"
    return None


_GOOD_NAMES: set[str] = set()  # model names seen to fit MODEL_RE
_GOOD_NAMES_MAX = 10_000
_INVALID = object()


def _lenient_loads(raw: bytes) -> Any:
    """Second chance for what orjson refuses but Python's json writes: NaN, Infinity, 1e999
    and integers beyond 64 bits. They parse here so that validation can name the field
    ("prediction: must be a finite number, got nan") instead of a bare syntax error.

    A string with an unpaired surrogate escape (``"\\ud800"``) stays invalid, as orjson
    said: it is not Unicode text, and an id made of it could never be written out again
    (a scored pair, a join-state record) - it would stop the join instead."""
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError):
        return _INVALID
    return _INVALID if _has_unpaired_surrogate(obj) else obj


def _has_unpaired_surrogate(obj: Any) -> bool:
    stack = [obj]  # no recursion: the nesting can be as deep as json.loads allows
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(value, dict):
            stack.extend(value)
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return False


def _element_raw(item: Any, raw: bytes) -> bytes:
    """The refused element as JSON, or the whole message if it cannot be written again
    (orjson stops at 255 levels of nesting, which its parser allows up to 1024)."""
    try:
        return orjson.dumps(item)
    except TypeError:
        return raw


def encode(obj: Any) -> bytes:
    """Events (Structs, or plain dicts and lists of them) to wire bytes: compact UTF-8 JSON."""
    return _encoder.encode(obj)


def decode(raw: bytes | None, kind: EventKind[E], *, max_bytes: int = DEFAULT_MAX_BYTES,
           max_batch: int = DEFAULT_MAX_BATCH) -> tuple[list[E], list[Rejection]]:
    """:meth:`EventKind.decode` as a function."""
    return kind.decode(raw, max_bytes=max_bytes, max_batch=max_batch)


ARRAY_BYTES = 256 * 1024  # what driftline's own batch messages stay under


def arrays(encoded: list[bytes], max_bytes: int = ARRAY_BYTES) -> Iterator[list[bytes]]:
    """Encoded events in order, cut into runs whose JSON array stays under ``max_bytes``
    (a single larger event still gets a run of its own).

    >>> [len(run) for run in arrays([b"1234"] * 5, max_bytes=11)]
    [2, 2, 1]
    """
    run: list[bytes] = []
    size = 1
    for item in encoded:
        if run and size + len(item) + 1 > max_bytes:
            yield run
            run, size = [], 1
        run.append(item)
        size += len(item) + 1
    if run:
        yield run


def array(run: list[bytes]) -> bytes:
    """A run of encoded events as one JSON array value."""
    return b"[" + b",".join(run) + b"]"


def unbatch(raw: bytes) -> list[dict[str, Any]]:
    """The events of a message driftline wrote itself, as dicts: one object or an array.

    >>> unbatch(b'{"a": 1}'), unbatch(b'[{"a": 1}, {"a": 2}]')
    ([{'a': 1}], [{'a': 1}, {'a': 2}])
    """
    value = orjson.loads(raw)
    return value if isinstance(value, list) else [value]


def scored_pairs(raw: bytes) -> list[ev.ScoredPair]:
    """The pairs of a ``scored`` record driftline wrote itself, as structs (a pair that
    does not decode as one is left out). No size or count limit: those are for input.

    >>> [(p.prediction_id, p.label) for p in scored_pairs(
    ...     b'[{"prediction_id": "a", "model": "m", "version": 1, "prediction": 1.0,'
    ...     b' "label": "cat", "error": null, "features": {}, "ts": 1.0, "label_ts": 2.0}]')]
    [('a', 'cat')]
    """
    pairs, _ = SCORED_PAIR.decode(raw, max_bytes=len(raw), max_batch=len(raw))
    return pairs
