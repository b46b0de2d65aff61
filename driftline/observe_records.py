"""What the observatory (:mod:`driftline.observe`) admits from driftline's topics.

Alerts, model events and delivery records are checked by the wire layer's Structs;
metrics records (driftline's own, with no Struct) by their shape here. The topics are
ones anybody can write, so every check bounds what a record may make the views hold.
"""

from __future__ import annotations

import math
from typing import Any, TypeGuard

from driftline.models.wire import ALERT, ALERT_DELIVERY, MODEL_EVENT, EventKind, unbatch
from driftline.models.wire.events import MODEL_RE, as_dict

__all__ = ["FEATURE_CELLS", "MAX_TRAIL", "Cell", "admit", "feature_cells", "finite",
           "metrics_record_ok", "number_or_null", "trail_ok"]

WIRE: dict[str, EventKind[Any]] = {"alerts": ALERT, "models": MODEL_EVENT,
                                   "alert_deliveries": ALERT_DELIVERY}
MAX_VERSION = 2**63 - 1


def number_or_null(x: Any) -> bool:
    return x is None or (isinstance(x, int | float) and not isinstance(x, bool)
                         and math.isfinite(x))


def finite(x: Any) -> TypeGuard[float]:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


FEATURE_CELLS = 100  # features kept per record in the drift history, the most drifted
# A feature's cell of one record: its drift statistic over its limit, and its data quality
# over the monitor's window: missing and type-mismatch shares, and a count of values out of
# the reference's range (numeric) or of the most frequent category it never saw (categorical).
Cell = tuple[float | None, float | None, float | None, int | None, int | None]


def feature_cells(features: Any) -> dict[str, Cell]:
    """feature -> (drift statistic / its limit, missing share, mismatch share, out-of-range
    count, unseen-category count) of a report's ``features`` (None where the record has
    none; at most :data:`FEATURE_CELLS`, the highest ratios first: the record comes from a
    topic anybody can write).

    >>> feature_cells({"x0": {"value": 0.3, "limit": 0.25, "missing_share": 0.0,
    ...                       "mismatch_share": 0.0, "out_of_range_count": 7},
    ...                "x1": {"type": "numeric"}, "x2": "junk"})
    {'x0': (1.2, 0.0, 0.0, 7, None), 'x1': (None, None, None, None, None)}
    """
    if not isinstance(features, dict):
        return {}
    out: dict[str, Cell] = {}
    for name, f in features.items():
        if not isinstance(name, str) or not isinstance(f, dict):
            continue
        value, limit = f.get("value"), f.get("limit")
        miss, mismatch, odd, unseen = (f.get(k) for k in (
            "missing_share", "mismatch_share", "out_of_range_count", "unseen_category_count"))
        out[name] = (value / limit if finite(value) and finite(limit) and limit > 0 else None,
                     miss if finite(miss) else None, mismatch if finite(mismatch) else None,
                     odd if _count(odd) else None, unseen if _count(unseen) else None)
    if len(out) > FEATURE_CELLS:
        kept = sorted(out, key=lambda n: -(out[n][0] or 0.0))[:FEATURE_CELLS]
        out = {n: out[n] for n in kept}
    return out


def _count(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def metrics_record_ok(value: Any) -> bool:
    """A metrics record (the monitor's report of one version) has what the views read,
    of the types they expect.

    >>> metrics_record_ok({"model": "m", "version": 1, "rolling_mse": 1.5, "n_scored": 3})
    True
    >>> metrics_record_ok({"model": "m", "version": "1"}), metrics_record_ok([1])
    (False, False)
    """
    if not isinstance(value, dict):
        return False
    model, version = value.get("model"), value.get("version")
    if not isinstance(model, str) or not MODEL_RE.fullmatch(model):
        return False
    if version is not None and not (isinstance(version, int) and not isinstance(version, bool)
                                    and 1 <= version <= MAX_VERSION):
        return False
    if not all(number_or_null(value.get(k)) for k in ("rolling_mse", "baseline_mse")):
        return False
    if not all(_count(value[k]) for k in ("n_scored", "n_predictions") if k in value):
        return False
    if not trail_ok(value.get("trail")):
        return False
    shadow, segments = value.get("shadow"), value.get("segments")
    return ((shadow is None or (isinstance(shadow, list)
                                and all(isinstance(w, dict) for w in shadow)))
            and (segments is None or (isinstance(segments, dict)
                                      and all(isinstance(s, dict) for s in segments.values()))))


MAX_TRAIL = 256  # samples a metrics record may carry (the monitor sends at most 64)


def trail_ok(trail: Any) -> bool:
    """A metrics record's ``trail`` (absent, or ``[[n_scored, label_ts, rolling], ...]``).

    >>> trail_ok([[250, 1.5e9, 0.9]]), trail_ok(None), trail_ok([[250, "x", 0.9]])
    (True, True, False)
    """
    return trail is None or (isinstance(trail, list) and len(trail) <= MAX_TRAIL and all(
        isinstance(s, list) and len(s) == 3 and _count(s[0]) and finite(s[1])
        and number_or_null(s[2]) for s in trail))


def admit(kind: str, raw: bytes | None) -> tuple[list[dict[str, Any]], int]:
    """The valid records in one message of topic ``kind`` (one record or a JSON array),
    as dicts, and how many were not valid.

    >>> admit("alerts", b'{"model": "m", "status": "firing"}')[1]
    1
    >>> admit("metrics", b'[{"model": "m", "version": 1}, {"model": 7}]')
    ([{'model': 'm', 'version': 1}], 1)
    """
    if kind in WIRE:
        good, bad = WIRE[kind].decode(raw)
        return [as_dict(e) for e in good], len(bad)
    try:
        values = unbatch(raw or b"")
    except ValueError:  # not JSON
        return [], 1
    ok = [v for v in values if metrics_record_ok(v)]
    return ok, len(values) - len(ok)


