"""HTTP receivers for delivery tests: an Alertmanager API v2 stand-in and webhooks that
fail their first N requests, refuse with a 4xx, or are not listening yet."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from aiohttp import web

from driftline.ports import free_port

AM_KEYS = {"labels", "annotations", "startsAt", "endsAt", "generatorURL"}


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = 0.0  # time.time() when it arrived

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class Receiver:
    """Answers ``fail_first`` requests with ``fail_status``, then ``status``. Accepted
    requests are in ``received``; all of them in ``seen``."""

    fail_first: int = 0
    fail_status: int = 503
    status: int = 200
    port: int = field(default_factory=free_port)
    received: list[Request] = field(default_factory=list)
    seen: int = 0
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.seen += 1
        if self.seen <= self.fail_first:
            return web.Response(status=self.fail_status, text="try later")
        if request.path == "/api/v2/alerts" and not _is_v2_alerts(body):
            return web.json_response({"error": "not an API v2 alert list"}, status=400)
        if self.status >= 300:
            return web.Response(status=self.status, text="payload refused: unknown channel")
        self.received.append(Request(request.path, dict(request.headers), body, time.time()))
        return web.Response(status=self.status)

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def _is_v2_alerts(body: bytes) -> bool:
    """What Alertmanager's API v2 accepts: a list of alerts, each with string labels
    (alertname among them) and annotations, RFC 3339 times, an end not before the start
    ("start time must be before end time"), a generator URL."""
    try:
        alerts = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return isinstance(alerts, list) and all(
        isinstance(a, dict) and set(a) <= AM_KEYS and "labels" in a
        and isinstance(a["labels"].get("alertname"), str)
        and all(isinstance(v, str) for v in a["labels"].values())
        and all(isinstance(v, str) for v in a.get("annotations", {}).values())
        and all(a.get(t, "Z").endswith("Z") for t in ("startsAt", "endsAt"))
        and _in_order(a.get("startsAt"), a.get("endsAt"))
        for a in alerts)


def _in_order(starts: str | None, ends: str | None) -> bool:
    if starts is None or ends is None:
        return True
    try:
        return (datetime.fromisoformat(starts.replace("Z", "+00:00"))
                <= datetime.fromisoformat(ends.replace("Z", "+00:00")))
    except ValueError:
        return False
