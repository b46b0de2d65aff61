"""Where each version of a model is in its life, from what the worker already has: the
registry (versions, aliases, the history stream) and the monitor's shadow and canary
reports. Pure: :mod:`driftline.web_views` feeds it and serves the answer.

A version's ``state``, the first that holds:

=================  ===============================================================
``champion``       the ``champion`` alias points at it (``canary`` says how its
                   watch against the version before it goes: ``running``,
                   ``passed``, ``rollback``)
``challenger``     the ``challenger`` alias points at it: scored in shadow on live
                   pairs (``shadow``: ``running``, or its verdict)
``rolled_back``    it was champion and a rollback took the alias off it
``rejected``       the trainer or its shadow run turned it down
``archived``       archived by hand
``retired``        it was champion once, and a newer one replaced it
``registered``     registered, never served
=================  ===============================================================

>>> versions = [{"version": 1, "status": "active", "aliases": []},
...             {"version": 2, "status": "active", "aliases": ["champion"]},
...             {"version": 3, "status": "active", "aliases": ["challenger"]}]
>>> history = [{"action": "promoted", "version": 1, "alias": "champion", "time": 1.0},
...            {"action": "promoted", "version": 2, "alias": "champion", "time": 2.0}]
>>> watches = [{"role": "challenger", "version": 3, "n": 40, "verdict": None}]
>>> [(v["version"], v["state"], v["shadow"]) for v in lifecycle(versions, history, watches)]
[(1, 'retired', None), (2, 'champion', None), (3, 'challenger', 'running')]
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["STATES", "lifecycle"]

STATES = ("champion", "challenger", "rolled_back", "rejected", "archived", "retired",
          "registered")
WATCH_ROLES = {"challenger": "shadow", "canary": "canary"}


def lifecycle(versions: Iterable[dict[str, Any]], history: Iterable[dict[str, Any]],
              watches: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each version (the registry's view of it, as ``/api/models`` serves it) with its
    ``state``, ``shadow`` and ``canary`` (None, ``running`` or the verdict), the
    registry actions on it (``actions``: action, alias, time, reason) and its watch
    reports (``watches``)."""
    actions: dict[int, list[dict[str, Any]]] = {}
    served: set[int] = set()
    rolled_back: set[int] = set()
    for h in history:
        version = h.get("version")
        if h.get("action") == "rolled_back" and h.get("previous") is not None:
            rolled_back.add(h["previous"])
            actions.setdefault(h["previous"], []).append(
                {"action": "rolled_back_from", "alias": h.get("alias"),
                 "time": h.get("time"), "reason": h.get("reason")})
        if version is None:
            continue
        if h.get("alias") == "champion" and h.get("action") in ("promoted", "alias_set",
                                                                "rolled_back"):
            served.add(version)
        actions.setdefault(version, []).append(
            {"action": h.get("action"), "alias": h.get("alias") or None,
             "time": h.get("time"), "reason": h.get("reason") or None})
    by_version: dict[Any, list[dict[str, Any]]] = {}
    for w in watches:
        by_version.setdefault(w.get("version"), []).append(w)
    out = []
    for v in versions:
        number, aliases = v["version"], set(v.get("aliases") or ())
        mine = by_version.get(number, [])
        watch = {WATCH_ROLES[w["role"]]: w.get("verdict") or "running"
                 for w in mine if w.get("role") in WATCH_ROLES}
        if "champion" in aliases:
            state = "champion"
        elif "challenger" in aliases:
            state = "challenger"
        elif number in rolled_back:
            state = "rolled_back"
        elif v.get("status") in ("rejected", "archived"):
            state = v["status"]
        elif number in served:
            state = "retired"
        else:
            state = "registered"
        out.append({**v, "state": state, "shadow": watch.get("shadow"),
                    "canary": watch.get("canary"), "actions": actions.get(number, []),
                    "watches": mine})
    return out
