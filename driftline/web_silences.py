"""``/api/silences``: list, make and end silences over HTTP (the CLI's
``driftline alerts silence | silences | unsilence``), in the registry's Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import faust
import orjson
from faust import web

from driftline.settings import Settings


def install_silences(app: faust.App, settings: Settings,
                     denied: Callable[[web.View, web.Request], web.Response | None]) -> None:
    from driftline.agents.delivery.silences import SilenceError, SilenceStore, parse_duration

    store: list[SilenceStore] = []

    def silences() -> SilenceStore:
        if not store:
            store.append(SilenceStore.from_settings(settings))
        return store[0]

    def failed(view: web.View, exc: SilenceError) -> web.Response:
        return view.json({"error": str(exc)}, status=503 if exc.retriable else 400)

    @app.page("/api/silences")
    class Silences(web.View):
        async def get(self, request: web.Request) -> web.Response:
            if (refusal := denied(self, request)) is not None:
                return refusal
            try:
                active = await asyncio.to_thread(silences().active)
            except SilenceError as exc:
                return failed(self, exc)
            return self.json({"silences": [s.as_dict() for s in active]})

        async def post(self, request: web.Request) -> web.Response:
            if (refusal := denied(self, request)) is not None:
                return refusal
            try:
                body: Any = orjson.loads(await request.read())
            except orjson.JSONDecodeError:
                body = None
            if not isinstance(body, dict) or not isinstance(body.get("model"), str):
                return self.json({"error": 'send a JSON object: {"model", "kind"?, "feature"?, '
                                           '"duration": "2h" or seconds, "reason"}'}, status=400)
            optional = {k: body.get(k) for k in ("kind", "feature")}
            if any(v is not None and not isinstance(v, str) for v in optional.values()) or \
                    not isinstance(body.get("reason"), str):
                return self.json({"error": "kind, feature and reason must be strings"},
                                 status=400)
            try:
                duration = body.get("duration")
                seconds = (float(duration) if isinstance(duration, int | float)
                           and not isinstance(duration, bool)
                           else parse_duration(duration if isinstance(duration, str) else ""))
                made = await asyncio.to_thread(
                    silences().create, body["model"], seconds, body["reason"],
                    kind=optional["kind"], feature=optional["feature"], created_by="api")
            except SilenceError as exc:
                return failed(self, exc)
            return self.json({"silence": made.as_dict()}, status=201)

    @app.page("/api/silences/{silence_id}")
    class OneSilence(web.View):
        async def delete(self, request: web.Request, silence_id: str) -> web.Response:
            if (refusal := denied(self, request)) is not None:
                return refusal
            try:
                ended = await asyncio.to_thread(silences().delete, silence_id)
            except SilenceError as exc:
                return failed(self, exc)
            if not ended:
                return self.json({"error": f"no silence {silence_id!r} in force"}, status=404)
            return self.json({"ended": silence_id})
