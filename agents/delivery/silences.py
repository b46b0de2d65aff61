"""Silences: "do not push this model's alerts (of this kind, for this feature) until T".

A silence matches an alert when the model is the same and ``kind`` / ``feature``, where
set, are too. Delivery applies them: a matching alert stays on the alerts topic and
its delivery record says ``silenced``; nothing is pushed.

Stored in the registry's Redis under the registry prefix ``P``:

======================  ======  =====================================================
``P silence:ID``        string  the silence as JSON, expiring when the silence ends
``P silences``          zset    silence ids scored by their end (ms), to list them
======================  ======  =====================================================

>>> s = Silence("ab12", "houses", "data_drift", None, 0.0, 7200.0, "deploy", "ann")
>>> s.matches({"model": "houses", "kind": "data_drift", "feature": "rooms"}, now=10.0)
True
>>> s.matches({"model": "houses", "kind": "concept_drift", "feature": None}, now=10.0)
False
>>> s.matches({"model": "houses", "kind": "data_drift", "feature": None}, now=7200.0)
False
"""

from __future__ import annotations

import getpass
import re
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import msgspec
import redis

from driftline.errors import DriftlineError
from driftline.models.wire.events import MODEL_RE

# KEYS: the silence's key, the index zset. ARGV: silence JSON, end (epoch ms), id, now (ms).
# One step, so a listed id always has its silence (until it expires) and ended ids go.
CREATE = """
redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[4])
return 1
"""
# KEYS: the silence's key, the index zset. ARGV: id. Returns 1 if the silence was active.
DELETE = """
local existed = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return existed
"""

MAX_DURATION = 366 * 86400.0
# What create() makes (12 hex digits of a uuid4). The silence keys share the registry's
# prefix (``P silence:ID`` beside a model's ``P <model>:...``): an id from outside is
# checked against this before it becomes a key, so it can only name a silence.
ID_RE = re.compile(r"[0-9a-f]{12}")


def check_id(silence_id: str) -> str:
    """``silence_id`` if it is one a silence could have, else :class:`SilenceError`.

    >>> check_id("0123456789ab")
    '0123456789ab'
    >>> try:
    ...     check_id("v:1")
    ... except SilenceError as exc:
    ...     print(str(exc)[:39])
    silence id 'v:1': ids are 12 hex digits
    """
    if not isinstance(silence_id, str) or not ID_RE.fullmatch(silence_id):
        raise SilenceError(f"silence id {silence_id!r}: ids are 12 hex digits (list them "
                           f"with `driftline alerts silences`)")
    return silence_id


class SilenceError(DriftlineError):
    """A silence that cannot be made, or a Redis that cannot be reached (``retriable``)."""

    def __init__(self, message: str, *, retriable: bool = False) -> None:
        super().__init__(message)
        self.retriable = retriable


class Silence(msgspec.Struct, forbid_unknown_fields=True):
    id: str
    model: str
    kind: str | None
    feature: str | None
    starts_at: float
    ends_at: float
    reason: str
    created_by: str

    def matches(self, alert: dict[str, Any], now: float) -> bool:
        return (self.starts_at <= now < self.ends_at and alert.get("model") == self.model
                and (self.kind is None or alert.get("kind") == self.kind)
                and (self.feature is None or alert.get("feature") == self.feature))

    def as_dict(self) -> dict[str, Any]:
        return msgspec.structs.asdict(self)


def matching(silences: Iterable[Silence], alert: dict[str, Any], now: float) -> Silence | None:
    """The first active silence that matches ``alert``, or None."""
    return next((s for s in silences if s.matches(alert, now)), None)


def parse_duration(text: str) -> float:
    """``90s``, ``15m``, ``2h``, ``1d`` (or plain seconds) -> seconds.

    >>> parse_duration("2h"), parse_duration("90s"), parse_duration("1.5m"), parse_duration("30")
    (7200.0, 90.0, 90.0, 30.0)
    """
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    raw = text.strip().lower()
    factor = units.get(raw[-1:], None)
    number = raw[:-1] if factor else raw
    try:
        seconds = float(number) * (factor or 1)
    except ValueError:
        raise SilenceError(f"duration {text!r}: use a number with s, m, h or d "
                           f"(e.g. 2h)") from None
    if not 0 < seconds <= MAX_DURATION:
        raise SilenceError(f"duration {text!r} must be more than 0 and at most 366 days")
    return seconds


class SilenceStore:
    """Silences in Redis (the registry's, under its prefix); ``clock`` gives epoch seconds."""

    def __init__(self, client: redis.Redis, prefix: str = "driftline:",
                 clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.prefix = prefix
        self.clock = clock
        self.index = f"{prefix}silences"
        self._create = client.register_script(CREATE)
        self._delete = client.register_script(DELETE)

    @classmethod
    def from_settings(cls, settings: Any, **kwargs: Any) -> SilenceStore:
        from driftline.redis_client import INTERACTIVE, settings_redis_client

        return cls(settings_redis_client(settings, timeout=kwargs.pop("timeout", INTERACTIVE)),
                   settings.registry_prefix, **kwargs)

    def _key(self, silence_id: str) -> str:
        return f"{self.prefix}silence:{check_id(silence_id)}"

    def create(self, model: str, duration: float, reason: str, *, kind: str | None = None,
               feature: str | None = None, created_by: str | None = None) -> Silence:
        """A silence from now for ``duration`` seconds."""
        from typing import get_args

        from driftline.models.wire.events import AlertKind

        if not MODEL_RE.fullmatch(model):
            raise SilenceError(f"model {model!r}: use letters, digits, '.', '_' or '-'")
        kinds = get_args(AlertKind)
        if kind is not None and kind not in kinds:
            raise SilenceError(f"kind {kind!r}: use one of {', '.join(kinds)}")
        if not reason.strip():
            raise SilenceError("a silence needs a --reason (who is working on what)")
        if not 0 < duration <= MAX_DURATION:
            raise SilenceError("a silence lasts more than 0 s and at most 366 days")
        now = self.clock()
        silence = Silence(uuid.uuid4().hex[:12], model, kind, feature or None, now,
                          now + duration, reason.strip()[:1000],
                          created_by or _user())
        self._call(self._create, [self._key(silence.id), self.index],
                   [msgspec.json.encode(silence), int(silence.ends_at * 1000), silence.id,
                    int(now * 1000)])
        return silence

    def active(self) -> list[Silence]:
        """Silences in force now, soonest to end first."""
        now = self.clock()
        ids = self._call(self.client.zrangebyscore, self.index, f"({int(now * 1000)}", "+inf")
        if not ids:
            return []
        # Only ids a silence can have: anything else in the index is not ours to read.
        wanted = [i.decode() for i in ids if ID_RE.fullmatch(i.decode(errors="replace"))]
        if not wanted:
            return []
        values = self._call(self.client.mget, [self._key(i) for i in wanted])
        out = []
        for value in values:
            if value is None:  # expired between the two calls
                continue
            try:
                silence = msgspec.json.decode(value, type=Silence)
            except msgspec.DecodeError:
                continue  # not ours: never trusted, never fatal
            if silence.starts_at <= now < silence.ends_at:
                out.append(silence)
        return out

    def delete(self, silence_id: str) -> bool:
        """End a silence now; False if there is no such active silence, and a
        :class:`SilenceError` if ``silence_id`` is not a silence id at all."""
        return bool(self._call(self._delete, [self._key(silence_id), self.index],
                               [silence_id]))

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except redis.RedisError as exc:
            raise SilenceError(f"cannot reach the silences in Redis: {exc}",
                               retriable=True) from exc

    def close(self) -> None:
        self.client.close()


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
