"""The worker's HTTP side, on Faust's aiohttp web server: JSON API, Prometheus, dashboard.

=========================  =============================================================
``GET /``                  the dashboard (one HTML page, no build step, polls the API)
``GET /api/models``        models with their versions, aliases and newest event time;
                           malformed records skipped per topic (``bad_records``);
                           ``?limit=&offset=``: a page of the models by name (``paging``)
``GET /api/models/{m}``    rolling metrics per version, baseline, detector state, open
                           alerts, label-join rate, the MSE series, model events, shadow
                           scores of a challenger and canaries of new champions;
                           ``?since=&until=``: the series points and alerts of that
                           event-time range (epoch seconds, either end optional),
                           and each feature's drift over its limit in 48 spans of it;
                           ``?alerts=`` (default 50) newest alerts of the range;
                           ``?features=&feature_offset=``: a page of the drift heatmap's
                           features, the most drifted first (default all), with their
                           data quality over the same spans (``quality``); ``features``
                           also keeps each report's top so many (``features_total``)
``GET /api/models/{m}/lifecycle``  each version's state (champion, challenger with its
                           shadow run, canary, rolled back, rejected, retired) and the
                           registry's history, newest first, ``?limit=&offset=``
``GET /api/models/{m}/performance``  realised and estimated MSE per version over event
                           time (NannyML's plot), ``?since=&until=&segment=``: of one
                           segment; the segments and each one's latest metrics
``GET /api/alerts``        ``?model=&status=firing|resolved|open&limit=&offset=&since=&until=``
                           (``offset``: past the newest so many; ``paging``)
``GET /api/deliveries``    delivery outcomes (``alert-deliveries``), ``?alert_id=&limit=``
``GET /api/silences``      the silences in force
``POST /api/silences``     ``{"model", "kind"?, "feature"?, "duration": "2h" | seconds,
                           "reason"}`` -> 201 and the silence
``DELETE /api/silences/{id}``  end a silence now (404 if none is in force)
``GET /metrics``           Prometheus exposition format (:mod:`driftline.prom`)
``GET /healthz``           broker and Redis reachable, partitions assigned (200 / 503),
                           ``ok`` or ``unavailable`` each, probed at most every few s
=========================  =============================================================

Event time is the pairs' label time: a series point
``[published, rolling_mse, baseline_mse, n_scored, event_ts]`` sits at the newest label
time of the pairs its metrics record covers (``event_ts``; null in an older record, then
``published`` stands in), an alert at its ``ts``. ``newest_event_ts`` (per model, in
both model answers) is what a relative range ("the last hour") is counted back from.

Models, series and alerts come from the :class:`~driftline.observe.Observatory`,
which reads driftline's topics, so any worker answers for every model. Who may ask,
from where: :mod:`driftline.web_access` (the Host check, the token, cross-site
writes). Binding to an address other than loopback without a token of at least 16
characters is refused at start-up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from importlib import resources
from typing import Any, cast

import aiohttp.web
import faust
from faust import web

from driftline.agents.monitor.config import MonitorConfig
from driftline.errors import ConfigError, RegistryError
from driftline.observe import Observatory, follow
from driftline.settings import Settings
from driftline.web_access import Access, check_access
from driftline.web_query import QueryError, count, page, paging, window
from driftline.web_views import report_view

__all__ = ["Health", "WebState", "check_access", "health_checks", "install"]

log = logging.getLogger(__name__)

STATUSES = ("firing", "resolved", "open")


class WebState:
    """What the views read: the observatory, the registry, and the worker's agents."""

    def __init__(self, app: faust.App, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.observatory = Observatory()
        self.health = Health(app, settings)
        self._registry: Any = None
        self._config: MonitorConfig | None = None

    def quality_window(self, model: str) -> int:
        """``model``'s data-drift window in the monitor config this worker runs: what its
        reports' out-of-range and unseen counts are over."""
        if self._config is None:
            try:
                self._config = MonitorConfig.load(self.settings.monitor_config or None)
            except ConfigError as exc:  # the monitor stops on it; the views carry on
                log.warning("%s: data quality read over the default window", exc)
                self._config = MonitorConfig()
        return self._config.for_model(model).data_drift.window

    @property
    def registry(self):
        if self._registry is None:
            from driftline.models.registry import ModelRegistry
            from driftline.redis_client import INTERACTIVE, settings_redis_client

            self._registry = ModelRegistry(
                settings_redis_client(self.settings, timeout=INTERACTIVE),
                prefix=self.settings.registry_prefix)
        return self._registry

    async def registry_names(self) -> tuple[list[str], str | None]:
        """The models the registry holds, or ([], why) if it cannot be read."""
        try:
            return await asyncio.to_thread(self.registry.models), None
        except RegistryError as exc:
            return [], str(exc)

    async def registry_view(self, model: str | None = None, *,
                            names: list[str] | None = None) -> tuple[dict[str, Any], str | None]:
        """Versions and aliases of ``model`` (or of ``names``; None: every model) from
        Redis, or ({}, why) if it cannot be read."""
        def read() -> dict[str, Any]:
            wanted = [model] if model else self.registry.models() if names is None else names
            out = {}
            for name in wanted:
                versions = self.registry.versions(name)
                if versions:
                    out[name] = {"aliases": self.registry.aliases(name),
                                 "versions": [_version(v) for v in versions]}
            return out
        try:
            return await asyncio.to_thread(read), None
        except RegistryError as exc:
            return {}, str(exc)

    def close(self) -> None:
        if self._registry is not None:
            self._registry.close()
        self.health.close()


def _version(info) -> dict[str, Any]:
    meta = info.meta
    metric, loss = info.holdout
    return {"version": info.version, "status": info.status, "created": info.created,
            "aliases": list(info.aliases), "parent_version": meta.get("parent_version"),
            "request_id": meta.get("request_id"), "alert_id": meta.get("alert_id"),
            "kind": info.kind, "task": info.task,
            # the holdout loss it was judged by: MSE, a classifier's log loss by default
            "holdout_metric": metric, "holdout_loss": loss,
            "holdout_mse": loss if metric == "mse" else None,
            "decision_reason": meta.get("decision_reason"),
            # Standardised coefficients and prediction-variance shares on its training rows
            # (models/explanation.py), and the features the trainer kept and dropped.
            "explanation": (meta.get("explanation") or {}).get("features"),
            "selection": meta.get("selection")}


def install(app: faust.App, settings: Settings) -> WebState:
    check_access(settings)
    state = WebState(app, settings)
    access = Access(settings)

    @app.task
    async def observe() -> None:
        while True:  # the topics may not exist for a moment at first start
            try:
                await follow(state.observatory, settings)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the dashboard's topic reader failed; restarting in 2 s")
                await asyncio.sleep(2)
                state.observatory = Observatory()  # the restart reads the history again

    def denied(view: web.View, request: web.Request) -> web.Response | None:
        req = cast(aiohttp.web.Request, request)  # Faust's driver hands aiohttp's over
        refusal = access.refusal(req.method, req.path, req.headers, req.query.get("token"),
                                 req.body_exists, req.content_type)
        if refusal is None:
            return None
        status, message = refusal
        return view.json({"error": message}, status=status,
                         headers={"WWW-Authenticate": "Bearer"} if status == 401 else None)

    @app.page("/")
    class Dashboard(web.View):
        async def get(self, request: web.Request) -> web.Response:
            return denied(self, request) or self.html(
                resources.files("driftline").joinpath("dashboard.html").read_text())

    @app.page("/api/models")
    class Models(web.View):
        async def get(self, request: web.Request) -> web.Response:
            if (refusal := denied(self, request)) is not None:
                return refusal
            try:
                limit = count(request.query, "limit", None, 1, 1000)
                offset = count(request.query, "offset", 0, 0)
            except QueryError as exc:
                return self.json({"error": str(exc)}, status=400)
            obs = state.observatory
            known, problem = await state.registry_names()
            names, paging = page(sorted(set(known) | set(obs.models())), limit, offset)
            registry, unread = await state.registry_view(names=[n for n in names if n in known])
            return self.json({"models": [
                {"model": name, "aliases": registry.get(name, {}).get("aliases", {}),
                 "versions": registry.get(name, {}).get("versions", []),
                 "monitored_versions": sorted(
                     v for v in obs.reports.get(name, {}) if v is not None),
                 "open_alerts": len(obs.open_alerts(name)),
                 "newest_event_ts": obs.newest_event_ts(name)} for name in names],
                "paging": paging, "registry_error": problem or unread,
                # malformed records this worker's reader skipped, per topic
                "bad_records": obs.bad_record_totals()})

    @app.page("/api/models/{model}")
    class Model(web.View):
        async def get(self, request: web.Request, model: str) -> web.Response:
            if (refusal := denied(self, request)) is not None:
                return refusal
            obs = state.observatory
            registry, problem = await state.registry_view(model)
            if model not in registry and model not in obs.models():
                return self.json({"error": f"unknown model {model!r}"}, status=404)
            try:
                since, until = window(request.query)
                alerts = count(request.query, "alerts", 50, 1, 1000)
                features = count(request.query, "features", None, 1, 1000)
                feature_offset = count(request.query, "feature_offset", 0, 0)
            except QueryError as exc:
                return self.json({"error": str(exc)}, status=400)
            entry = registry.get(model, {"aliases": {}, "versions": []})
            shown, total = obs.alerts_page(model, limit=alerts, since=since, until=until)
            reports = obs.reports.get(model, {})
            return self.json({
                "model": model, "champion": entry["aliases"].get("champion"),
                "aliases": entry["aliases"], "versions": entry["versions"],
                "metrics": {str(v): report_view(r, features) for v, r in reports.items()},
                "open_alerts": obs.open_alerts(model),
                "alerts": shown, "alerts_paging": paging(total, alerts, 0),
                "events": list(obs.events.get(model, ())),
                "shadow": list(obs.shadow.get(model, {}).values()),
                "series": obs.series_of(model, since, until),
                "feature_drift": obs.feature_drift(model, since, until, limit=features,
                                                   offset=feature_offset,
                                                   window=state.quality_window(model)),
                "newest_event_ts": obs.newest_event_ts(model),
                "registry_error": problem})

    @app.page("/api/alerts")
    class Alerts(web.View):
        async def get(self, request: web.Request) -> web.Response:
            if (refusal := denied(self, request)) is not None:
                return refusal
            status = request.query.get("status") or None
            if status is not None and status not in STATUSES:
                return self.json({"error": f"status must be one of {', '.join(STATUSES)}"},
                                 status=400)
            try:
                limit = count(request.query, "limit", 100, 1, 1000)
                offset = count(request.query, "offset", 0, 0)
                since, until = window(request.query)
            except QueryError as exc:
                return self.json({"error": str(exc)}, status=400)
            model = request.query.get("model") or None
            alerts, total = state.observatory.alerts_page(model, status, limit, since, until,
                                                          offset)
            return self.json({"alerts": alerts, "paging": paging(total, limit, offset)})

    @app.page("/api/deliveries")
    class Deliveries(web.View):
        async def get(self, request: web.Request) -> web.Response:
            if (refusal := denied(self, request)) is not None:
                return refusal
            try:
                limit = count(request.query, "limit", 100, 1, 1000)
            except QueryError as exc:
                return self.json({"error": str(exc)}, status=400)
            return self.json({"deliveries": state.observatory.recent_deliveries(
                request.query.get("alert_id") or None, limit)})

    from driftline.web_silences import install_silences
    from driftline.web_views import install_views

    install_silences(app, settings, denied)
    install_views(app, state, denied)

    @app.page("/metrics")
    class Metrics(web.View):
        async def get(self, request: web.Request) -> web.Response:
            if (refusal := denied(self, request)) is not None:
                return refusal
            from driftline.prom import exposition

            body, content_type = await exposition(app, state)
            # aiohttp refuses a charset in content_type=; the header carries it.
            return self.bytes(body, headers={"Content-Type": content_type})

    @app.page("/healthz")
    class Health(web.View):
        async def get(self, request: web.Request) -> web.Response:
            answer = await state.health.answer()
            return self.json(answer, status=200 if answer["ok"] else 503)

    return state


HEALTH_TTL = 3.0  # seconds a /healthz probe is answered from


class Health:
    """``/healthz``'s answer: Kafka and Redis reachable, partitions assigned, each
    ``ok`` or ``unavailable`` (what failed is logged, never sent: an error can name
    hosts and ports). However many requests come, one probe runs at a time and its
    result serves every request for ``ttl`` seconds, over one Redis client."""

    def __init__(self, app: faust.App, settings: Settings, *, ttl: float = HEALTH_TTL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self.settings = settings
        self.ttl = ttl
        self.clock = clock
        self.probes = 0  # how many probes ran
        self._lock = asyncio.Lock()
        self._answer: dict[str, Any] | None = None
        self._at = 0.0
        self._redis: Any = None

    async def answer(self) -> dict[str, Any]:
        async with self._lock:  # the others wait for this probe, then share it
            if self._answer is None or self.clock() - self._at >= self.ttl:
                self._answer = await self._probe()
                self._at = self.clock()
            return self._answer

    async def _probe(self) -> dict[str, Any]:
        self.probes += 1
        if self._redis is None:
            from driftline.redis_client import INTERACTIVE, settings_redis_client

            self._redis = settings_redis_client(self.settings, timeout=INTERACTIVE)
        return await health_checks(self.app, self.settings, self._redis)

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()


async def health_checks(app: faust.App, settings: Settings,
                        redis_client: Any = None) -> dict[str, Any]:
    """One probe: ``{"ok", "checks": {"kafka", "redis", "consumer"}, "assigned_partitions"}``,
    each check ``"ok"`` or ``"unavailable"``; ``redis_client`` is reused when given."""
    async def reachable(host: str, port: int) -> bool:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 2)
            writer.close()
            await writer.wait_closed()
            return True
        except (TimeoutError, OSError) as exc:
            log.warning("/healthz: Kafka at %s:%d unreachable: %s", host, port,
                        str(exc) or type(exc).__name__)
            return False

    host, _, port = settings.bootstrap_servers[0].rpartition(":")
    kafka = await reachable(host, int(port))

    def ping() -> bool:
        import redis

        from driftline.redis_client import INTERACTIVE, settings_redis_client

        client = redis_client or settings_redis_client(settings, timeout=INTERACTIVE)
        try:
            client.ping()
            return True
        except redis.RedisError as exc:
            log.warning("/healthz: Redis unreachable: %s", exc)
            return False
        finally:
            if redis_client is None:
                client.close()

    assigned = len(app.consumer.assignment())
    checks = {"kafka": kafka, "redis": await asyncio.to_thread(ping), "consumer": assigned > 0}
    return {"ok": all(checks.values()),
            "checks": {k: "ok" if v else "unavailable" for k, v in checks.items()},
            "assigned_partitions": assigned}
