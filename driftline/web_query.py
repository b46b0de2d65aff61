"""The HTTP API's query parameters, read one way for every route: event-time ranges and
paging. A bad value raises :class:`QueryError`, which a route answers with a 400 and
its message.

>>> window({"since": "10", "until": ""})
(10.0, inf)
>>> count({"limit": "20"}, "limit", 100, 1, 1000), count({}, "offset", 0, 0)
(20, 0)
>>> count({"limit": "0"}, "limit", 100, 1, 1000)
Traceback (most recent call last):
...
driftline.web_query.QueryError: limit must be an integer from 1 to 1000
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

__all__ = ["MAX_OFFSET", "QueryError", "WINDOW_ERROR", "count", "page", "paging", "window"]

T = TypeVar("T")
WINDOW_ERROR = "since and until must be numbers (event time, epoch seconds)"
MAX_OFFSET = 10**9


class QueryError(ValueError):
    """A query parameter the route cannot use; its message says which and what it takes."""


def window(query: Mapping[str, str]) -> tuple[float, float]:
    """``since`` and ``until`` (event time, epoch seconds; each optional, open when absent
    or empty)."""
    bounds = []
    for name, default in (("since", -math.inf), ("until", math.inf)):
        raw = query.get(name) or None
        try:
            value = default if raw is None else float(raw)
        except ValueError:
            raise QueryError(WINDOW_ERROR) from None
        if raw is not None and not math.isfinite(value):
            raise QueryError(WINDOW_ERROR)
        bounds.append(value)
    return bounds[0], bounds[1]


def count(query: Mapping[str, str], name: str, default: int | None, low: int,
          high: int = MAX_OFFSET) -> Any:
    """The integer parameter ``name`` in [low, high], ``default`` when absent or empty."""
    raw = query.get(name) or None
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise QueryError(f"{name} must be an integer from {low} to {high}")
    return value


def page(items: Sequence[T], limit: int | None, offset: int) -> tuple[list[T], dict[str, Any]]:
    """``limit`` items (all: None) from ``offset``, and the answer's paging fields:
    ``total``, ``offset`` and ``next_offset`` (null on the last page).

    >>> page("abcde", 2, 2)
    (['c', 'd'], {'total': 5, 'offset': 2, 'next_offset': 4})
    >>> page("abc", None, 0)[1]
    {'total': 3, 'offset': 0, 'next_offset': None}
    """
    return list(items[offset:None if limit is None else offset + limit]), paging(
        len(items), limit, offset)


def paging(total: int, limit: int | None, offset: int) -> dict[str, Any]:
    """``{"total", "offset", "next_offset"}`` of a page of ``limit`` (all: None) items
    from ``offset`` of ``total``."""
    end = total if limit is None else offset + limit
    return {"total": total, "offset": offset, "next_offset": end if end < total else None}
