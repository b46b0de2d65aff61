"""The dashboard's per-model views beyond the monitor card: the lifecycle of a model's
versions with the registry's history (``/api/models/{m}/lifecycle``), and realised
against estimated performance, of the whole model or of one segment
(``/api/models/{m}/performance``). The routes are described in :mod:`driftline.web`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

import faust
from faust import web

from driftline.errors import RegistryError
from driftline.lifecycle import lifecycle
from driftline.observe import PERFORMANCE, Observatory
from driftline.web_query import QueryError, count, page, window

Denied = Callable[[web.View, web.Request], web.Response | None]


class State(Protocol):
    """What the views read (:class:`driftline.web.WebState`, which installs them: named
    here by its shape, since this module sits below ``driftline.web``)."""

    observatory: Observatory

    @property
    def registry(self) -> Any: ...

    async def registry_view(self, model: str | None = None, *,
                            names: list[str] | None = None) -> tuple[dict[str, Any],
                                                                     str | None]: ...


def install_views(app: faust.App, state: State, denied: Denied) -> None:
    @app.page("/api/models/{model}/lifecycle")
    class Lifecycle(web.View):
        async def get(self, request: web.Request, model: str) -> web.Response:
            if (refusal := denied(self, request)) is not None:
                return refusal
            try:
                limit = count(request.query, "limit", 50, 1, 1000)
                offset = count(request.query, "offset", 0, 0)
            except QueryError as exc:
                return self.json({"error": str(exc)}, status=400)
            obs = state.observatory
            registry, problem = await state.registry_view(model)
            history: list[dict[str, Any]] = []
            if model in registry:
                try:
                    history = await asyncio.to_thread(state.registry.history, model)
                except RegistryError as exc:
                    problem = str(exc)
            if model not in registry and model not in obs.models():
                return self.json({"error": f"unknown model {model!r}"}, status=404)
            entry = registry.get(model, {"aliases": {}, "versions": []})
            # newest first: the page a reader wants is the latest changes
            shown, paging = page(history[::-1], limit, offset)
            return self.json({
                "model": model, "aliases": entry["aliases"],
                "versions": lifecycle(entry["versions"], history,
                                      obs.shadow.get(model, {}).values()),
                "events": list(obs.events.get(model, ())),
                "history": shown, "history_paging": paging, "registry_error": problem})

    @app.page("/api/models/{model}/performance")
    class Performance(web.View):
        async def get(self, request: web.Request, model: str) -> web.Response:
            if (refusal := denied(self, request)) is not None:
                return refusal
            try:
                since, until = window(request.query)
            except QueryError as exc:
                return self.json({"error": str(exc)}, status=400)
            obs = state.observatory
            if model not in obs.models():
                return self.json({"error": f"unknown model {model!r}"}, status=404)
            segments = obs.segments_of(model)
            segment = request.query.get("segment") or None
            if segment is not None and segment not in segments:
                return self.json({"error": f"model {model!r} has no segment {segment!r}"},
                                 status=404)
            reports = obs.reports.get(model, {})
            return self.json({
                "model": model, "segment": segment, "segments": segments,
                "columns": PERFORMANCE,
                "series": obs.performance_of(model, segment, since, until),
                # each version's latest numbers per segment, side by side
                "segment_metrics": {str(v): {name: {k: s.get(k) for k in PERFORMANCE[1:]}
                                             for name, s in (r.get("segments") or {}).items()
                                             if name in segments}
                                    for v, r in reports.items()},
                "newest_event_ts": obs.newest_event_ts(model)})


PER_FEATURE = ("features", "psi", "feature_types")  # a report's dicts keyed by feature


def report_view(record: dict[str, Any], keep: int | None = None) -> dict[str, Any]:
    """A version's report as ``/api/models/{m}`` serves it: with its label-join rate, and
    with ``keep``, only its ``keep`` features nearest their drift limit (in ``features``,
    ``psi``, ``feature_types``, and its segments' too; ``features_total`` says how many
    it has). 1,000 features make a report of ~180 kB; the dashboard shows 25.

    >>> r = report_view({"n_scored": 3, "n_predictions": 4, "psi": {"a": 0.1, "b": 0.5},
    ...     "features": {"a": {"value": 0.1, "limit": 1}, "b": {"value": 0.5, "limit": 1}}}, 1)
    >>> r["label_join_rate"], r["features"], r["psi"], r["features_total"]
    (0.75, {'b': {'value': 0.5, 'limit': 1}}, {'b': 0.5}, 2)
    """
    scored, predictions = record.get("n_scored", 0), record.get("n_predictions", 0)
    out = {**record, "label_join_rate": scored / predictions if predictions else None}
    features = record.get("features")
    if keep is None or not isinstance(features, dict):
        return out

    def nearness(name: str) -> float:
        f = features[name]
        value, limit = (f.get("value"), f.get("limit")) if isinstance(f, dict) else (0, 0)
        if isinstance(value, int | float) and isinstance(limit, int | float) and limit:
            return value / limit
        return -1.0
    kept = set(sorted(features, key=lambda n: (-nearness(n), n))[:keep])
    for key in PER_FEATURE:
        if isinstance(record.get(key), dict):  # psi also has "prediction": not a feature
            out[key] = {n: v for n, v in record[key].items() if n in kept or n not in features}
    out["features_total"] = len(features)
    if isinstance(record.get("segments"), dict):
        out["segments"] = {name: report_view(r, keep) for name, r in record["segments"].items()}
    return out
