"""Model registry in Redis: immutable numbered versions, atomic aliases, history.

Keys, under a configurable prefix ``P`` (default ``driftline:``), for model ``M``:

=========================  ======  ===================================================
``P models``               set     model names
``P M:next``               string  version counter (INCR)
``P M:v:N``                hash    ``artifact`` (its kind's bytes), ``checksum``
                                   (sha256), ``meta`` (JSON, with the model ``kind``
                                   and ``task``), ``created``, ``status`` (active,
                                   rejected, archived)
``P M:versions``           zset    version numbers
``P M:aliases``            hash    alias -> version
``P M:prev:A``             list    earlier targets of alias A, newest first (rollback)
``P M:history``            stream  action, version, alias, previous, actor, reason, time
``P M:requests``           hash    retrain request_id -> the version it registered
``P events:M`` (channel)   pubsub  ``alias=version`` after every alias change
=========================  ======  ===================================================

Every write is one Lua script (in :mod:`.registry_scripts`), so a reader never sees a
version without its artifact, and concurrent promotes leave alias, rollback list and
history in step.
The scripts build version keys from their arguments, so they need all of a model's
keys in one slot: fine on a single Redis or with a ``{hash tag}`` prefix on a cluster.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol, Self

import redis

from driftline.errors import ArtifactError, RegistryError, RegistryUnavailable
from driftline.models import kinds
from driftline.models import registry_scripts as lua
from driftline.models.reference import brief, rows_of
from driftline.models.versions import VersionInfo
from driftline.models.wire.events import MODEL_RE
from driftline.redis_client import REGISTRY, redis_client, settings_redis_client

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "driftline:"
CHAMPION = "champion"
CHALLENGER = "challenger"  # scored in shadow on live pairs (agents/monitor/shadow.py)


class EventSink(Protocol):
    """Receives each model lifecycle event (DESIGN.md), after the change is in Redis. A
    sink with a ``close()`` is closed with the registry; ``list.append`` is a sink."""

    def __call__(self, event: dict[str, Any], /) -> None: ...


class ModelRegistry:
    """Versions, aliases and history of models in Redis (``driftline.ModelRegistry``).

    ``on_event``, when given, is called with a model event after each registration,
    promotion, rejection and rollback; the registry owns it from then on. The registry
    knows nothing of Kafka: :class:`driftline.model_events.KafkaModelEvents` is the sink
    that sends the events to the ``models`` topic.

    >>> reg = ModelRegistry.from_url("redis://127.0.0.1:6379/0",  # doctest: +SKIP
    ...                              on_event=KafkaModelEvents("kafka://127.0.0.1:9092"))
    """

    def __init__(self, client: redis.Redis, *, prefix: str = DEFAULT_PREFIX,
                 on_event: EventSink | None = None, actor: str | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.redis = client
        self.prefix = prefix
        self.on_event = on_event
        self.actor = actor or _default_actor()
        self.clock = clock
        self._register = client.register_script(lua.REGISTER)
        self._set_alias = client.register_script(lua.SET_ALIAS)
        self._rollback = client.register_script(lua.ROLLBACK)
        self._delete_alias = client.register_script(lua.DELETE_ALIAS)
        self._archive = client.register_script(lua.ARCHIVE)
        self._reject = client.register_script(lua.REJECT)

    @classmethod
    def from_url(cls, url: str, *, prefix: str = DEFAULT_PREFIX,
                 on_event: EventSink | None = None, ssl_ca_certs: str | None = None,
                 **kwargs: Any) -> Self:
        """``redis://[:password@]host:port/db`` or ``rediss://`` (TLS, verified against
        ``ssl_ca_certs`` or the system's CAs)."""
        try:
            return cls(redis_client(url, timeout=REGISTRY, ssl_ca_certs=ssl_ca_certs),
                       prefix=prefix, on_event=on_event, **kwargs)
        except BaseException:
            _close(on_event)
            raise

    @classmethod
    def from_settings(cls, settings: Any, *, on_event: EventSink | None,
                      **kwargs: Any) -> Self:
        """The registry ``settings`` (a :class:`~driftline.settings.Settings`) point at:
        Redis URL, TLS CA file and key prefix. ``on_event`` has no default, so that a
        caller who wants model events cannot lose them by forgetting to ask: pass the
        sink (``KafkaModelEvents(settings=settings)``), or None."""
        try:
            return cls(settings_redis_client(settings, timeout=REGISTRY),
                       prefix=settings.registry_prefix, on_event=on_event, **kwargs)
        except BaseException:
            _close(on_event)
            raise

    def close(self) -> None:
        _close(self.on_event)
        self.redis.close()

    # --- keys --------------------------------------------------------------------

    def _k(self, model: str, *parts: str) -> str:
        return ":".join((f"{self.prefix}{model}", *parts))

    def _version_key(self, model: str, version: int) -> str:
        return self._k(model, "v", str(version))

    def _channel(self, model: str) -> str:
        return f"{self.prefix}events:{model}"

    # --- writing -----------------------------------------------------------------

    def register(self, name: str, model: Any, *, metrics: dict[str, Any] | None = None,
                 meta: dict[str, Any] | None = None, rejected: str | None = None,
                 reason: str = "", request_id: str | None = None,
                 reference: dict[str, Any] | None = None) -> int:
        """Store a new immutable version; returns its number (1, 2, 3, ... per model).

        ``rejected`` registers it with status ``rejected`` and that reason (a challenger
        that lost). ``meta`` may hold ``parent_version``, the training window, anything
        JSON; ``metrics`` the holdout scores. ``request_id`` (a retrain request) makes the
        call idempotent: a second call with the same id registers nothing and returns the
        version the first one made. It is also stored in ``meta``.

        ``model`` is any model kind (:mod:`driftline.models.kinds`); its ``kind`` and
        ``task`` are stored in ``meta``, and :meth:`load` reads the artifact back with
        that kind. ``reference`` is the version's reference profile
        (:func:`driftline.models.reference.profile`), stored with it in the same script
        (:meth:`reference` reads it; ``meta["reference"]`` says it is there).
        """
        _check(name)
        kind = kinds.kind_of(model)
        artifact = model.to_bytes()
        document = {**(meta or {}), "metrics": metrics or {}, "kind": kind,
                    "task": model.task}
        if request_id is not None:
            document["request_id"] = request_id
        if rejected is not None:
            document["rejected_reason"] = rejected
        reference_json = ""
        if reference is not None:
            rows_of(reference)  # checked whole before anything is written
            document["reference"] = brief(reference)
            reference_json = _dumps(reference, "reference")
        meta_json = _dumps(document, "meta/metrics")
        now = self.clock()
        status = "rejected" if rejected is not None else "active"
        version, new = self._call(self._register, keys=[
            self._k(name, "next"), self._k(name, "versions"), f"{self.prefix}models",
            self._k(name, "history"), self._k(name, "requests")], args=[
            name, self._k(name, "v", ""), artifact, hashlib.sha256(artifact).hexdigest(),
            meta_json, repr(now), status, self.actor, rejected if rejected is not None else reason,
            request_id or "", reference_json])
        version = int(version)
        if not new:
            log.info("%s: request %s already registered v%d; nothing registered", name,
                     request_id, version)
            return version
        self._emit(name, version, "rejected" if rejected is not None else "registered", document,
                   now)
        return version

    def promote(self, name: str, version: int, alias: str = CHAMPION, *,
                reason: str = "") -> int | None:
        """Point ``alias`` at ``version``; returns the version it pointed at before."""
        previous, changed = self._alias_script(name, alias, version, "promoted", reason)
        if changed:
            info = self.get(name, version)
            self._emit(name, version, "shadowing" if alias == CHALLENGER else "promoted",
                       info.meta, self.clock())
        return previous

    def set_alias(self, name: str, alias: str, version: int, *, reason: str = "") -> int | None:
        """Point ``alias`` at ``version``; ``challenger`` also emits the model event
        ``shadowing`` (the monitor starts scoring it on live pairs)."""
        previous, changed = self._alias_script(name, alias, version, "alias_set", reason)
        if changed and alias == CHALLENGER:
            self._emit(name, version, "shadowing", self.get(name, version).meta, self.clock())
        return previous

    def reject(self, name: str, version: int, *, reason: str,
               metrics: dict[str, Any] | None = None, release: str = CHALLENGER) -> bool:
        """Mark a registered version ``rejected`` after the fact (a challenger that lost on
        live pairs), releasing the alias ``release`` if it points at it; ``metrics`` go in
        the model event. Returns False if it was rejected already (nothing recorded)."""
        done = self._call(self._reject, keys=[
            self._k(name, "aliases"), self._version_key(name, version), self._k(name, "history")],
            args=[str(version), self.actor, reason, repr(self.clock()), release,
                  self._channel(name)], what=f"{name} v{version}")
        if done:
            meta = self.get(name, version).meta
            self._emit(name, version, "rejected", {**meta, "metrics": metrics or
                                                   meta.get("metrics", {})}, self.clock())
        return bool(done)

    def _alias_script(self, name: str, alias: str, version: int, action: str,
                      reason: str) -> tuple[int | None, bool]:
        _check(alias, "alias")
        result = self._call(self._set_alias, keys=[
            self._k(name, "aliases"), self._k(name, "prev", alias), self._k(name, "history"),
            self._version_key(name, version)], args=[
            alias, str(version), self.actor, reason, repr(self.clock()), action,
            self._channel(name)], what=f"{name} v{version}")
        previous = result[0].decode() if result[0] else ""
        return (int(previous) if previous else None), bool(result[1])

    def rollback(self, name: str, alias: str = CHAMPION, *, reason: str = "",
                 expect: int | None = None, metrics: dict[str, Any] | None = None) -> int:
        """Point ``alias`` back at its previous target; returns that version.

        ``expect``: roll back only if the alias still points at that version (else
        :class:`RegistryError`, nothing changed). ``metrics`` go in the model event
        (default: the restored version's holdout metrics)."""
        result = self._call(self._rollback, keys=[
            self._k(name, "aliases"), self._k(name, "prev", alias), self._k(name, "history")],
            args=[alias, self.actor, reason, repr(self.clock()), self._channel(name),
                  self._k(name, "v", ""), "" if expect is None else str(expect)],
            what=f"{name} {alias}")
        version = int(result[0])
        meta = self.get(name, version).meta
        self._emit(name, version, "rolled_back",
                   {**meta, "metrics": metrics if metrics is not None
                    else meta.get("metrics", {})}, self.clock())
        return version

    def note(self, name: str, version: int, action: str, *, reason: str = "") -> None:
        """Record a decision that changes nothing (a canary that passed) in the history.
        One XADD: atomic on its own."""
        self._do(self.redis.xadd, self._k(name, "history"), {
            "action": action, "version": str(version), "alias": "", "previous": "",
            "actor": self.actor, "reason": reason, "time": repr(self.clock())})

    def delete_alias(self, name: str, alias: str, *, reason: str = "") -> int:
        result = self._call(self._delete_alias, keys=[
            self._k(name, "aliases"), self._k(name, "history")],
            args=[alias, self.actor, reason, repr(self.clock()), self._channel(name)],
            what=f"{name} alias {alias}")
        return int(result)

    def archive(self, name: str, version: int, *, reason: str = "") -> None:
        """Mark a version archived; refused while an alias points at it."""
        self._call(self._archive, keys=[
            self._k(name, "aliases"), self._version_key(name, version), self._k(name, "history")],
            args=[str(version), self.actor, reason, repr(self.clock())], what=f"{name} v{version}")

    # --- reading -----------------------------------------------------------------

    def models(self) -> list[str]:
        return sorted(m.decode() for m in self._do(self.redis.smembers, f"{self.prefix}models"))

    def aliases(self, name: str) -> dict[str, int]:
        raw = self._do(self.redis.hgetall, self._k(name, "aliases"))
        return {k.decode(): int(v) for k, v in raw.items()}

    def resolve(self, name: str, alias: str = CHAMPION) -> int | None:
        raw = self._do(self.redis.hget, self._k(name, "aliases"), alias)
        return int(raw) if raw else None

    def version_for_request(self, name: str, request_id: str) -> int | None:
        """The version a retrain request registered, if it did."""
        raw = self._do(self.redis.hget, self._k(name, "requests"), request_id)
        return int(raw) if raw else None

    def versions(self, name: str) -> list[VersionInfo]:
        numbers = [int(v) for v in self._do(self.redis.zrange, self._k(name, "versions"), 0, -1)]
        return [self.get(name, v) for v in numbers]

    def get(self, name: str, version: int) -> VersionInfo:
        """Metadata of one version (no artifact)."""
        raw = self._do(self.redis.hmget, self._version_key(name, version),
                       ["created", "status", "checksum", "meta"])
        if raw[0] is None:
            raise RegistryError(f"{name} has no version {version}")
        aliases = tuple(sorted(a for a, v in self.aliases(name).items() if v == version))
        return VersionInfo(name, version, float(raw[0]), raw[1].decode(), raw[2].decode(),
                           json.loads(raw[3]), aliases)

    def load(self, name: str, version: int | None = None, alias: str | None = None) -> Any:
        """The model of a version (or of an alias, default ``champion``), checksum verified:
        an instance of the version's kind (``meta["kind"]``; ``linear`` for versions
        registered before kinds existed)."""
        if version is None:
            alias = alias or CHAMPION
            version = self.resolve(name, alias)
            if version is None:
                raise RegistryError(f"{name} has no alias {alias!r}"
                                    + ("" if name in self.models() else f" (no model {name!r})"))
        artifact, checksum, meta = self._do(self.redis.hmget, self._version_key(name, version),
                                            ["artifact", "checksum", "meta"])
        if artifact is None:
            raise RegistryError(f"{name} has no version {version}")
        if hashlib.sha256(artifact).hexdigest() != checksum.decode():
            raise ArtifactError(f"{name} v{version}: artifact checksum mismatch; refusing to "
                                f"load a modified artifact")
        document = json.loads(meta)
        model = kinds.load(document.get("kind", "linear"), artifact)
        model.version = version
        model.meta = document
        return model

    def reference(self, name: str, version: int) -> dict[str, Any] | None:
        """The version's reference profile (None if it was registered without one)."""
        raw = self._do(self.redis.hget, self._version_key(name, version), "reference")
        if raw is None:
            return None
        try:
            document: dict[str, Any] = json.loads(raw)
            rows_of(document)
        except ValueError as exc:
            raise ArtifactError(f"{name} v{version}: a malformed reference profile: "
                                f"{exc}") from None
        return document

    def history(self, name: str, count: int | None = None) -> list[dict[str, Any]]:
        """Lifecycle actions of ``name``, oldest first."""
        entries = self._do(self.redis.xrange, self._k(name, "history"), count=count)
        out = []
        for entry_id, fields in entries:
            row = {k.decode(): v.decode() for k, v in fields.items()}
            row["id"] = entry_id.decode()
            row["time"] = float(row["time"])
            for key in ("version", "previous"):
                row[key] = int(row[key]) if row.get(key) else None
            out.append(row)
        return out

    # --- plumbing ----------------------------------------------------------------

    def _emit(self, name: str, version: int, event: str, meta: dict[str, Any], ts: float) -> None:
        if self.on_event is None:
            return
        record = {"model": name, "version": version, "event": event,
                  "parent_version": meta.get("parent_version"),
                  "request_id": meta.get("request_id"), "metrics": meta.get("metrics", {}),
                  "ts": ts}
        try:
            self.on_event(record)
        except Exception:  # the registry changed; the history stream has the record
            log.exception("could not publish the model event %s", record)

    def _call(self, script: Any, *, keys: list[str], args: list[Any], what: str = "") -> Any:
        try:
            return script(keys=keys, args=args)
        except redis.ResponseError as exc:
            raise lua.refusal(str(exc), what) from None
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise RegistryUnavailable(f"Redis is unreachable: {exc}") from exc

    def _do(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise RegistryUnavailable(f"Redis is unreachable: {exc}") from exc


def _check(value: str, what: str = "model name") -> None:
    if not isinstance(value, str) or not MODEL_RE.fullmatch(value):
        raise RegistryError(f"{what} {value!r} must match [A-Za-z0-9._-]{{1,128}}")


def _dumps(value: Any, what: str) -> str:
    try:
        return json.dumps(value, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise RegistryError(f"{what} must be JSON with finite numbers: {exc}") from None


def _close(sink: EventSink | None) -> None:
    close = getattr(sink, "close", None)
    if close is not None:
        close()


def _default_actor() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"
