"""Hypothesis strategies for the public events, built from the wire layer's Structs.

Every strategy here is read off :mod:`driftline.models.wire.events` through
``msgspec.inspect``: a field's type, its ``Meta`` constraints (lengths, bounds, the
model-name pattern), its ``Literal`` choices and whether it may be left out. A kind, a
field or a constraint added to a Struct is therefore generated without a change here,
and :func:`targets` makes it something the coverage test (tests/test_wire_strategies.py)
demands to see.

What is generated is what the wire layer accepts - no more (each event must survive
``decode(encode(event))``), no less: every ``Literal`` value, optional fields set and
left out, ``None`` where allowed, strings of their minimum and maximum length in
characters from all of Unicode (control characters, quotes, ``</script>``, line
separators, astral emoji), numbers at their bounds. Consumers take the events as
:func:`~driftline.models.wire.events.as_dict` gives them, or as JSON.

* :func:`events` - any Struct of the wire layer; :data:`ALERTS`, :data:`MODEL_EVENTS`,
  :data:`RETRAIN_REQUESTS`, :data:`DELIVERIES`;
* :func:`alerts` - alerts, some with ids shaped as the monitor makes them
  (``model.vN.kind.n.status``) so that firings and resolves can pair up;
  :func:`alert_streams` - runs of them with episodes that fire and resolve;
* :func:`corners` - the deterministic extremes: every combination of ``Literal``
  values, once with every optional field set at its largest and once with every
  optional field left out at its smallest;
* :func:`targets` / :func:`observed` - what a run of a strategy must reach.
"""

from __future__ import annotations

import itertools
import math
import re
import typing
from collections.abc import Iterator
from functools import cache
from typing import Any

import msgspec
import msgspec.inspect as mi
from hypothesis import strategies as st
from msgspec import UNSET

from driftline.models.wire import events as ev

# A run of characters that breaks whatever escapes carelessly: JSON (quote, backslash,
# control characters), HTML (</script>, &), terminals (ESC, CR), JavaScript (U+2028),
# UTF-16 (an astral emoji counts one character here, two in JavaScript).
HOSTILE = '"\\\n\r\t\x00\x1b[31m</script><b>&amp;\u2028\u00e9\U0001f525 '
# Characters of strings built to their maximum length: every plane of Unicode except
# the surrogates (not text; the wire layer refuses them).
CHARS = st.characters(codec="utf-8")
SHORT = 12          # longest "ordinary" string drawn (maxima are drawn apart)
MAX_ITEMS = 4       # longest list, largest dict drawn
INT64 = (-(2**63), 2**63 - 1)
# Keys of a free-form dict (an event's ``metrics``) that consumers look up: drawn as
# often as any other key, so a consumer meets them holding every kind of value.
KNOWN_KEYS = ("rolling_mse", "baseline_mse", "n_scored", "challenger", "champion")


def literal_values(cls: type[msgspec.Struct], field: str) -> set[Any]:
    """A ``Literal`` field's choices, read off the annotation (``X | UnsetType`` too)."""
    hint = typing.get_type_hints(cls, include_extras=True)[field]
    found: set[Any] = set()
    for arg in (typing.get_args(hint) if typing.get_origin(hint) is typing.Union else (hint,)):
        if typing.get_origin(arg) is typing.Literal:
            found.update(typing.get_args(arg))
    return found


# --- from a msgspec type to a strategy ---------------------------------------------------

def _pattern_class(pattern: str) -> tuple[str, int, int] | None:
    """``^[A-Za-z0-9._-]{1,128}\\Z`` -> (character class, 1, 128), or None."""
    match = re.fullmatch(r"\^(\[[^\]]+\])\{(\d+),(\d+)\}\\Z", pattern)
    return (match.group(1), int(match.group(2)), int(match.group(3))) if match else None


def _sized_text(alphabet: st.SearchStrategy[str], low: int, high: int | None,
                hostile: bool = True) -> st.SearchStrategy[str]:
    """Strings of ``low``..``high`` characters: exactly ``low``, exactly ``high`` (a drawn
    seed - or :data:`HOSTILE` - repeated, so 4,096 characters cost a few draws), or short
    ones between."""
    top = high if high is not None else max(low, SHORT)
    ordinary = st.text(alphabet, min_size=low, max_size=max(low, min(top, SHORT)))
    choices = [ordinary, st.text(alphabet, min_size=low, max_size=low)]
    if top > SHORT:
        seed = st.text(alphabet, min_size=1, max_size=8)
        if hostile:
            seed |= st.just(HOSTILE)
        choices.append(seed.map(lambda s: (s * (top // len(s) + 1))[:top]))
    else:
        choices.append(st.text(alphabet, min_size=top, max_size=top))
    return st.one_of(choices)


def _text(t: mi.StrType) -> st.SearchStrategy[str]:
    low = t.min_length or 0
    if t.pattern is None:
        return _sized_text(CHARS | st.sampled_from(HOSTILE), low, t.max_length)
    shape = _pattern_class(t.pattern)
    if shape is None:  # a pattern of another shape: hypothesis reads it
        return st.from_regex(t.pattern, fullmatch=True)
    char_class, low, high = shape
    return _sized_text(st.from_regex(char_class, fullmatch=True), low, high, hostile=False)


def _bounds(t: mi.IntType | mi.FloatType, lo: float, hi: float) -> tuple[Any, Any]:
    low = t.ge if t.ge is not None else lo
    high = t.le if t.le is not None else hi
    return low, high


def _integer(t: mi.IntType) -> st.SearchStrategy[int]:
    low, high = _bounds(t, *INT64)
    return st.sampled_from([low, high]) | st.integers(low, high)


def _float(t: mi.FloatType) -> st.SearchStrategy[float]:
    low, high = _bounds(t, -ev.MAX_FLOAT, ev.MAX_FLOAT)
    edges = [low, high] + [x for x in (0.0, -0.0, 0.5, 5e-324) if low <= x <= high]
    return st.sampled_from(edges) | st.floats(low, high, allow_nan=False,
                                              allow_infinity=False)


def strategy(t: mi.Type) -> st.SearchStrategy[Any]:
    """Values of the msgspec type ``t`` (as ``msgspec.inspect`` describes it)."""
    if isinstance(t, mi.StrType):
        return _text(t)
    if isinstance(t, mi.IntType):
        return _integer(t)
    if isinstance(t, mi.FloatType):
        return _float(t)
    if isinstance(t, mi.BoolType):
        return st.booleans()
    if isinstance(t, mi.NoneType):
        return st.none()
    if isinstance(t, mi.LiteralType):
        return st.sampled_from(t.values)
    if isinstance(t, mi.UnionType):
        return st.one_of([strategy(member) for member in t.types])
    if isinstance(t, mi.ListType):
        return st.lists(strategy(t.item_type), min_size=t.min_length or 0,
                        max_size=min(t.max_length or MAX_ITEMS, MAX_ITEMS))
    if isinstance(t, mi.DictType):
        keys = strategy(t.key_type)
        if isinstance(t.key_type, mi.StrType) and t.key_type.pattern is None:
            keys = st.sampled_from(KNOWN_KEYS) | keys
        return st.dictionaries(keys, strategy(t.value_type),
                               min_size=t.min_length or 0,
                               max_size=min(t.max_length or MAX_ITEMS, MAX_ITEMS))
    if isinstance(t, mi.StructType):
        return _struct(t.cls)
    raise NotImplementedError(f"no strategy for {t!r}: add one to tests/wire_strategies.py")


def _fields(cls: type[msgspec.Struct]) -> list[tuple[str, mi.Type, Any]]:
    """(name, type, default or NODEFAULT) of each field, in wire order."""
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    defaults = {f.name: f.default for f in msgspec.structs.fields(cls)}
    return [(f.name, f.type, defaults[f.name]) for f in info.fields]


@cache
def _struct(cls: type[msgspec.Struct]) -> st.SearchStrategy[Any]:
    fields = {}
    for name, t, default in _fields(cls):
        if default is msgspec.NODEFAULT:
            value = strategy(t)
        elif isinstance(t, mi.LiteralType):  # left out as often as each value
            value = st.sampled_from((default, *t.values))
        else:  # optional: left out as often as set
            value = st.just(default) | strategy(t)
        fields[name] = value
    return st.fixed_dictionaries(fields).map(lambda kw: cls(**kw))


def events(cls: type[msgspec.Struct], **fixed: Any) -> st.SearchStrategy[Any]:
    """Valid ``cls`` events; ``fixed`` pins fields to strategies (or plain values)."""
    if not fixed:
        return _struct(cls)
    pinned = {k: v if isinstance(v, st.SearchStrategy) else st.just(v)
              for k, v in fixed.items()}
    return st.tuples(_struct(cls), st.fixed_dictionaries(pinned)).map(
        lambda pair: msgspec.structs.replace(pair[0], **pair[1]))


# --- alerts as the monitor shapes their ids -------------------------------------------------

def monitor_id(alert: ev.Alert, episode: int) -> str | None:
    """The id the monitor would give ``alert`` (``model.vN[.s:seg].kind[.feature].n.status``),
    or None if that is longer than an id may be."""
    version = "vnone" if alert.version is None else f"v{alert.version}"
    segment = "" if alert.segment is None else f".s:{alert.segment}"
    feature = "" if alert.feature is None else f".{alert.feature}"
    made = f"{alert.model}.{version}{segment}.{alert.kind}{feature}.{episode}.{alert.status}"
    return made if len(made) <= ev.MAX_ID_CHARS else None


def shaped(alert: ev.Alert, episode: int) -> ev.Alert:
    """``alert`` with the id the monitor would give it; when that is too long, the id
    without feature and segment (which always fits)."""
    made = monitor_id(alert, episode) or monitor_id(
        msgspec.structs.replace(alert, feature=None, segment=None), episode)
    return msgspec.structs.replace(alert, alert_id=made)


def alerts(**fixed: Any) -> st.SearchStrategy[ev.Alert]:
    """Alerts; half of them with an id shaped as the monitor's."""
    return st.tuples(events(ev.Alert, **fixed), st.booleans(), st.integers(1, 3)).map(
        lambda drawn: shaped(drawn[0], drawn[2]) if drawn[1] else drawn[0])


def resolve_of(firing: ev.Alert, ts: float, reason: Any = UNSET) -> ev.Alert:
    """The resolve of ``firing``'s episode, at ``ts``."""
    head, _, _ = firing.alert_id.rpartition(".")
    return msgspec.structs.replace(firing, status="resolved", alert_id=f"{head}.resolved",
                                   ts=ts, reason=reason)


def _episode(drawn: tuple[ev.Alert, int, float, Any]) -> list[ev.Alert]:
    alert, number, later, reason = drawn
    firing = shaped(msgspec.structs.replace(alert, status="firing", reason=UNSET), number)
    return [firing, resolve_of(firing, min(firing.ts + later, ev.MAX_EPOCH_SECONDS), reason)]


def episodes() -> st.SearchStrategy[list[ev.Alert]]:
    """A firing alert with a monitor-shaped id, and its resolve (``reason`` left out or
    either value)."""
    return st.tuples(events(ev.Alert), st.integers(1, 3), st.floats(0, 1e4),
                     st.sampled_from([UNSET, "cleared", "superseded"])).map(_episode)


def alert_streams(max_size: int = 6) -> st.SearchStrategy[list[ev.Alert]]:
    """Runs of alerts: single ones (any status) and episodes that fire and resolve."""
    return st.lists(alerts().map(lambda a: [a]) | episodes(), max_size=max_size).map(
        lambda runs: [a for run in runs for a in run])


ALERTS = alerts()
MODEL_EVENTS = events(ev.ModelEvent)
RETRAIN_REQUESTS = events(ev.RetrainRequest)
DELIVERIES = events(ev.AlertDelivery)


# --- the extremes, deterministically ---------------------------------------------------------

def extreme(t: mi.Type, high: bool) -> Any:
    """The largest (``high``) or smallest value of ``t``: strings at their length limits
    (of :data:`HOSTILE`, repeated), numbers at their bounds, lists and dicts full or empty."""
    if isinstance(t, mi.StrType):
        shape = _pattern_class(t.pattern) if t.pattern else None
        if t.pattern is not None and shape is None:
            raise NotImplementedError(f"no extreme for the pattern {t.pattern!r}")
        low, top = shape[1:] if shape else (t.min_length or 0, t.max_length or SHORT)
        if shape:
            return ("Aa9._-z" * top)[:top if high else low]
        n = top if high else low
        return (HOSTILE * (n // len(HOSTILE) + 1))[:n]
    if isinstance(t, mi.IntType):
        return _bounds(t, *INT64)[1 if high else 0]
    if isinstance(t, mi.FloatType):
        return _bounds(t, -ev.MAX_FLOAT, ev.MAX_FLOAT)[1 if high else 0]
    if isinstance(t, mi.BoolType):
        return high
    if isinstance(t, mi.NoneType):
        return None
    if isinstance(t, mi.LiteralType):
        return t.values[-1 if high else 0]
    if isinstance(t, mi.UnionType):
        members = [m for m in t.types if not isinstance(m, mi.NoneType)]
        if not high and len(members) < len(t.types):
            return None
        return extreme(members[-1 if high else 0], high)
    if isinstance(t, mi.ListType):
        n = min(t.max_length or MAX_ITEMS, MAX_ITEMS) if high else (t.min_length or 0)
        return [extreme(t.item_type, high) for _ in range(n)]
    if isinstance(t, mi.DictType):
        if not high:
            return {}
        values = t.value_type.types if isinstance(t.value_type, mi.UnionType) \
            else (t.value_type,)
        # Each kind of value at both ends, the first ones under the names consumers read.
        names = iter(KNOWN_KEYS + (HOSTILE,))
        return {next(names, f"k{i}.{end}"): extreme(v, end == "high")
                for i, v in enumerate(values) for end in ("high", "low")}
    if isinstance(t, mi.StructType):
        return _extreme_struct(t.cls, high, {})
    raise NotImplementedError(f"no extreme for {t!r}")


def _extreme_struct(cls: type[msgspec.Struct], high: bool, pinned: dict[str, Any]) -> Any:
    values = {}
    for name, t, default in _fields(cls):
        if name in pinned:
            values[name] = pinned[name]
        elif default is not msgspec.NODEFAULT and not high:
            values[name] = default
        else:
            values[name] = extreme(t, high)
    return cls(**values)


def corners(cls: type[msgspec.Struct]) -> list[Any]:
    """Every combination of ``cls``'s required ``Literal`` fields (an alert's kind, status
    and severity), each once with every optional field set to its largest value - an
    optional ``Literal`` (an alert's ``reason``) to each of its values in turn - and once
    with every optional field left out and the rest at their smallest."""
    fields = _fields(cls)
    required = {name: t.values for name, t, default in fields
                if isinstance(t, mi.LiteralType) and default is msgspec.NODEFAULT}
    optional = {name: t.values for name, t, default in fields
                if isinstance(t, mi.LiteralType) and default is not msgspec.NODEFAULT}
    out = []
    for combo in itertools.product(*required.values()):
        pinned = dict(zip(required, combo))
        for extra in itertools.product(*optional.values()):
            out.append(_extreme_struct(cls, True, {**pinned, **dict(zip(optional, extra))}))
        out.append(_extreme_struct(cls, False, pinned))
    return out


# --- coverage: what a run must reach -----------------------------------------------------------

def _type_targets(t: mi.Type, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(t, mi.LiteralType):
        for value in t.values:
            yield path, f"={value}"
    elif isinstance(t, mi.UnionType):
        for member in t.types:
            yield path, f"is {_kind(member)}"
            yield from _type_targets(member, path)
    elif isinstance(t, mi.StrType):
        shape = _pattern_class(t.pattern) if t.pattern else None
        low, top = shape[1:] if shape else (t.min_length, t.max_length)
        if low is not None:
            yield path, "shortest"
        if top is not None:
            yield path, "longest"
    elif isinstance(t, mi.IntType | mi.FloatType):
        if t.ge is not None:
            yield path, "lowest"
        if t.le is not None:
            yield path, "highest"
    elif isinstance(t, mi.ListType):
        yield path, "empty"
        yield path, "not empty"
        yield from _type_targets(t.item_type, path + "[]")
    elif isinstance(t, mi.DictType):
        yield path, "empty"
        yield path, "not empty"
        yield from _type_targets(t.value_type, path + "{}")
    elif isinstance(t, mi.StructType):
        for name, ftype, default in _fields(t.cls):
            sub = f"{path}.{name}" if path else name
            if default is not msgspec.NODEFAULT:
                yield sub, "left out"
                yield sub, "set"
            yield from _type_targets(ftype, sub)


def _kind(t: mi.Type) -> str:
    return type(t).__name__.removesuffix("Type").lower()


def targets(cls: type[msgspec.Struct]) -> set[tuple[str, str]]:
    """What a run of ``cls``'s strategy has to reach: each ``Literal`` value, each union
    member, optional fields set and left out, empty and full containers, the longest
    strings, numbers at both bounds."""
    return set(_type_targets(mi.type_info(cls), ""))


def _value_targets(t: mi.Type, value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(t, mi.LiteralType):
        yield path, f"={value}"
    elif isinstance(t, mi.UnionType):
        for member in t.types:
            if _fits(member, value):
                yield path, f"is {_kind(member)}"
                yield from _value_targets(member, value, path)
                break
    elif isinstance(t, mi.StrType):
        shape = _pattern_class(t.pattern) if t.pattern else None
        low, top = shape[1:] if shape else (t.min_length, t.max_length)
        if low is not None and len(value) == low:
            yield path, "shortest"
        if top is not None and len(value) == top:
            yield path, "longest"
    elif isinstance(t, mi.IntType | mi.FloatType):
        if t.ge is not None and value == t.ge:
            yield path, "lowest"
        if t.le is not None and value == t.le:
            yield path, "highest"
    elif isinstance(t, mi.ListType):
        yield path, "not empty" if value else "empty"
        for item in value:
            yield from _value_targets(t.item_type, item, path + "[]")
    elif isinstance(t, mi.DictType):
        yield path, "not empty" if value else "empty"
        for item in value.values():
            yield from _value_targets(t.value_type, item, path + "{}")
    elif isinstance(t, mi.StructType):
        for name, ftype, default in _fields(t.cls):
            sub = f"{path}.{name}" if path else name
            field = getattr(value, name)
            if default is not msgspec.NODEFAULT:
                yield sub, "left out" if field is default else "set"
            if field is not UNSET:
                yield from _value_targets(ftype, field, sub)


def _fits(t: mi.Type, value: Any) -> bool:
    if isinstance(t, mi.NoneType):
        return value is None
    if isinstance(t, mi.IntType):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(t, mi.FloatType):
        return isinstance(value, float) and math.isfinite(value)
    if isinstance(t, mi.StrType):
        return isinstance(value, str)
    if isinstance(t, mi.DictType):
        return isinstance(value, dict)
    if isinstance(t, mi.ListType):
        return isinstance(value, list)
    if isinstance(t, mi.LiteralType):
        return value in t.values
    if isinstance(t, mi.StructType):
        return isinstance(value, t.cls)
    raise NotImplementedError(f"no check for {t!r}")


def observed(event: msgspec.Struct) -> set[tuple[str, str]]:
    """The :func:`targets` that ``event`` reaches."""
    return set(_value_targets(mi.type_info(type(event)), event, ""))
