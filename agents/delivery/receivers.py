"""The receivers an alert is pushed to, and the retry rule for pushing.

A :class:`Target` is one receiver: Alertmanager (``POST {url}/api/v2/alerts``) or one
webhook. :func:`push` sends one request until it has an answer that settles it:

* 2xx: ``delivered``;
* 4xx (but 408 and 429): ``failed`` at once: the receiver refused this alert, sending
  it again cannot help; the agent dead-letters it with the reason;
* 3xx: ``failed`` at once too. Redirects are never followed: a 307 would re-POST the
  signed body and its signature to whatever origin it names (issue 30);
* 5xx, 408, 429, a timeout, a refused or reset connection: retried with
  :class:`~driftline.retry.Backoff` (0.5 s doubling up to ``max_delay``) for as long
  as it takes, unless ``max_attempts`` is set. Nothing is skipped: a receiver that is
  down holds back its own lane (:mod:`.lanes`), and its progress record says where
  delivery to it resumes after a restart.

Of an answer's body only the first ``MAX_ERROR_BYTES`` are read (for the error text):
a receiver that answers with 50 MB must not cost 50 MB.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from driftline.models.wire.events import DeliveryOutcome
from driftline.retry import Backoff
from driftline.settings import Settings, redact_url, redact_webhook

log = logging.getLogger(__name__)

RETRIED_4XX = (408, 429)
MAX_ERROR_CHARS = 500
MAX_ERROR_BYTES = 4096  # of a body read for its error text; the rest is never read


@dataclass(frozen=True)
class Target:
    """``name`` is what records and logs show (never the URL: it may hold a secret)."""

    name: str
    kind: str          # "alertmanager" | "webhook"
    url: str           # where requests go
    secret: str = field(default="", repr=False)  # a webhook's signature key

    def __repr__(self) -> str:
        return f"Target({self.name!r})"


def targets(settings: Settings) -> list[Target]:
    out = []
    if settings.alertmanager_url:
        base = settings.alertmanager_url.rstrip("/")
        out.append(Target("alertmanager", "alertmanager", f"{base}/api/v2/alerts"))
    for i, url in enumerate(settings.webhook_urls, 1):
        host = redact_webhook(url).split("://", 1)[1].split("/", 1)[0]
        out.append(Target(f"webhook-{i}:{host}", "webhook", url, settings.webhook_key(i)))
    return out


def shown(target: Target) -> str:
    return redact_url(target.url) if target.kind == "alertmanager" else redact_webhook(target.url)


@dataclass
class Result:
    outcome: DeliveryOutcome
    attempts: int
    status_code: int | None
    error: str | None


@dataclass
class PushStats:
    """Counts for logs and tests: retries per target."""

    retries: dict[str, int] = field(default_factory=dict)


async def push(session: aiohttp.ClientSession, target: Target, body: bytes,
               headers: dict[str, str], *, timeout: float, max_delay: float,
               max_attempts: int = 0, stats: PushStats | None = None,
               sleep: Callable[[float], Any] = asyncio.sleep,
               sign: Callable[[], dict[str, str]] | None = None) -> Result:
    """POST ``body`` to ``target`` until it is settled (see the module's doc).
    ``sign()``, if given, adds headers made anew for each attempt (a timestamp)."""
    backoff = Backoff(0.5, max_delay)
    attempts = 0
    while True:
        attempts += 1
        status: int | None = None
        try:
            sent = headers if sign is None else {**headers, **sign()}
            async with session.post(target.url, data=body, headers=sent,
                                    allow_redirects=False,
                                    timeout=aiohttp.ClientTimeout(total=timeout)) as response:
                status = response.status
                if 200 <= status < 300:
                    return Result("delivered", attempts, status, None)
                if 300 <= status < 400:
                    # Only the host of where it points: its path may be a secret.
                    where = redact_webhook(response.headers.get("Location", ""))
                    return Result("failed", attempts, status,
                                  f"HTTP {status}: redirect to {where} not followed (set "
                                  f"the receiver's final URL)")
                text = await _head(response)
            error = f"HTTP {status}: {text.strip()}" if text.strip() else f"HTTP {status}"
            if 400 <= status < 500 and status not in RETRIED_4XX:
                return Result("failed", attempts, status, error)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            # aiohttp's errors name the URL: say what failed without it.
            error = f"{type(exc).__name__}: {_without_url(str(exc), target)}"
        if max_attempts and attempts >= max_attempts:
            return Result("failed", attempts, status, f"gave up after {attempts} attempts: "
                                                       f"{error}")
        delay = backoff.next()
        if stats is not None:
            stats.retries[target.name] = stats.retries.get(target.name, 0) + 1
        log.warning("delivery to %s failed (%s, attempt %d); retrying in %.1fs",
                    target.name, error, attempts, delay)
        await sleep(delay)


async def _head(response: aiohttp.ClientResponse) -> str:
    """The first ``MAX_ERROR_BYTES`` of the body as text (at most ``MAX_ERROR_CHARS``)."""
    data = b""
    while len(data) < MAX_ERROR_BYTES:
        chunk = await response.content.read(MAX_ERROR_BYTES - len(data))
        if not chunk:
            break
        data += chunk
    return data.decode("utf-8", errors="replace")[:MAX_ERROR_CHARS]


def _without_url(text: str, target: Target) -> str:
    return text.replace(target.url, shown(target))[:MAX_ERROR_CHARS] or "no answer"
