"""Headless Chromium driven over its DevTools protocol (aiohttp's websocket client): for a
browser test that clicks, where a DOM dump (``--dump-dom``) only loads the page."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp

from driftline.ports import free_port


class DevTools:
    """One page of a headless Chromium: :meth:`navigate`, :meth:`evaluate` a JavaScript
    expression (its value), :meth:`wait` for one to be truthy. A context manager: the
    browser stops on leaving it."""

    def __init__(self, browser: str, profile: Path) -> None:
        self.port = free_port()
        self.command = [browser, "--headless", "--no-sandbox", "--disable-gpu",
                        "--no-first-run", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync",
                        f"--user-data-dir={profile}", "--window-size=1280,1000",
                        f"--remote-debugging-port={self.port}", "about:blank"]
        self.loop = asyncio.new_event_loop()
        self.ids = iter(range(1, 10**9))

    def __enter__(self) -> DevTools:
        self.proc = subprocess.Popen(self.command, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list",
                                                timeout=2) as r:
                        targets = json.load(r)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")

            async def connect() -> None:
                self.session = aiohttp.ClientSession()
                self.ws = await self.session.ws_connect(url, max_msg_size=0)
            self.loop.run_until_complete(connect())
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        async def close() -> None:
            if hasattr(self, "ws"):
                await self.ws.close()
            if hasattr(self, "session"):
                await self.session.close()
        try:
            self.loop.run_until_complete(close())
        finally:
            self.loop.close()
            self.proc.terminate()
            self.proc.wait(10)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        async def run() -> dict[str, Any]:
            n = next(self.ids)
            await self.ws.send_json({"id": n, "method": method, "params": params})
            while True:
                msg = await asyncio.wait_for(self.ws.receive_json(), 30)
                if msg.get("id") == n:
                    return msg.get("result", {"error": msg.get("error")})
        return self.loop.run_until_complete(run())

    def navigate(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "result" in result and "exceptionDetails" not in result, (expression, result)
        return result["result"].get("value")

    def wait(self, expression: str, timeout: float = 20.0) -> Any:
        """The expression's value once it is truthy (an AssertionError after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
            value = result.get("result", {}).get("value")  # an error while the page loads: not yet
            if value and "exceptionDetails" not in result:
                return value
            assert time.monotonic() < deadline, f"never true: {expression}"
            time.sleep(0.1)
