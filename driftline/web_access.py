"""Who may use the worker's HTTP server, and from where (issue 30).

Three checks, each answered with a JSON error:

* **Host** (421): the ``Host`` header must be one of ``DRIFTLINE_WEB_ALLOWED_HOSTS``
  (default: the bind address, ``localhost``, ``127.0.0.1`` and ``[::1]``, each with
  the port). A page on ``rebind.evil.example`` whose name was pointed at 127.0.0.1
  (DNS rebinding) sends its own name, so it reads nothing.
* **Token** (401): with ``DRIFTLINE_API_TOKEN`` set, ``Authorization: Bearer <token>``
  (the scheme in any case); ``?token=`` only on ``GET /``, the dashboard page, which
  takes it out of the address bar and sends the header itself. A query string ends up
  in logs, proxies and browser history, a header does not.
* **Cross-site writes** (415, 403): a mutating request (POST, PUT, PATCH, DELETE) with
  a body must say ``Content-Type: application/json``, which a form or a "simple"
  cross-site ``fetch`` cannot send without the browser asking first (and this server
  answers no CORS preflight). Without a token, a mutating request's ``Origin``, when
  the client sends one (browsers do), must be this server's own.

``/healthz`` skips the Host check (probes address a pod or a container by IP) and the
token; it says only ``ok`` or ``unavailable``.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
from collections.abc import Mapping
from urllib.parse import urlsplit

from driftline.errors import ConfigError
from driftline.settings import Settings

MIN_TOKEN_CHARS = 16
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
GENERATE = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_access(settings: Settings) -> None:
    """Refuse, at start-up, a token that cannot protect anything and a server reachable
    from other machines without a real one."""
    token = settings.api_token
    if token and not token.strip():
        raise ConfigError("DRIFTLINE_API_TOKEN is only whitespace: set a real token "
                          f"(e.g. {GENERATE}), or unset it to serve loopback only")
    if token != token.strip():
        raise ConfigError("DRIFTLINE_API_TOKEN starts or ends with whitespace (a newline "
                          "from a file?): clients could never send it; strip it")
    if is_loopback(settings.web_host):
        return
    if not token:
        raise ConfigError(
            f"DRIFTLINE_WEB_HOST={settings.web_host} is reachable from other machines, but "
            f"DRIFTLINE_API_TOKEN is empty: set a token (clients send 'Authorization: Bearer "
            f"<token>'), or bind to 127.0.0.1")
    if len(token) < MIN_TOKEN_CHARS:
        raise ConfigError(
            f"DRIFTLINE_WEB_HOST={settings.web_host} is reachable from other machines, but "
            f"DRIFTLINE_API_TOKEN has {len(token)} characters: use at least "
            f"{MIN_TOKEN_CHARS} (e.g. {GENERATE})")


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def allowed_hosts(settings: Settings) -> frozenset[str]:
    """The ``Host`` values answered, lower case: ``name:port`` (that port), ``name``
    (any port) or ``*`` (any Host at all).

    >>> sorted(allowed_hosts(Settings(web_port=6066)))
    ['127.0.0.1:6066', '[::1]:6066', 'localhost:6066']
    >>> sorted(allowed_hosts(Settings(web_allowed_hosts="Dash.example.com, 10.0.0.5:80")))
    ['10.0.0.5:80', 'dash.example.com']
    """
    configured = [h.strip().lower() for h in settings.web_allowed_hosts.split(",")]
    if any(configured):
        return frozenset(h for h in configured if h)
    port = settings.web_port
    return frozenset(_host_port(h, port) for h in
                     {settings.web_host.lower(), "localhost", "127.0.0.1", "::1"})


def _split(host: str) -> tuple[str, str]:
    """``name:port`` -> (name, port); the port is '' when absent."""
    m = re.fullmatch(r"(\[[^\]]*\]|[^:\[\]]*)(?::(\d*))?", host)
    return (m.group(1), m.group(2) or "") if m else (host, "")


class Access:
    """The rules above for one server; :meth:`refusal` says what is wrong with a request."""

    def __init__(self, settings: Settings) -> None:
        self.token = settings.api_token.encode()
        self.hosts = allowed_hosts(settings)

    def host_ok(self, host: str | None) -> bool:
        if "*" in self.hosts:
            return True
        if not host:
            return False
        host = host.strip().lower()
        name, port = _split(host)
        name = name.rstrip(".")  # "localhost.:6066" is the same name
        return (f"{name}:{port}" if port else name) in self.hosts or name in self.hosts

    def token_ok(self, method: str, path: str, authorization: str,
                 query_token: str | None) -> bool:
        if not self.token:
            return True
        scheme, _, given = authorization.strip().partition(" ")
        supplied = given.strip() if scheme.lower() == "bearer" else ""
        if not supplied and method == "GET" and path == "/" and query_token:
            supplied = query_token
        return bool(supplied) and hmac.compare_digest(supplied.encode(), self.token)

    def refusal(self, method: str, path: str, headers: Mapping[str, str],
                query_token: str | None, has_body: bool,
                content_type: str) -> tuple[int, str] | None:
        """``(status, message)`` if the request must be refused, else None.
        ``headers`` is the request's (a case-insensitive mapping)."""
        get = headers.get
        host = get("Host")
        if not self.host_ok(host):
            return 421, (f"misdirected request: this server does not answer for Host "
                         f"{(host or '')[:100]!r} (DRIFTLINE_WEB_ALLOWED_HOSTS)")
        if not self.token_ok(method, path, get("Authorization", ""), query_token):
            return 401, ("unauthorized: send 'Authorization: Bearer <token>' "
                         "(DRIFTLINE_API_TOKEN)")
        if method not in MUTATING:
            return None
        if (has_body or method != "DELETE") and content_type != "application/json":
            return 415, "send the body as JSON, with 'Content-Type: application/json'"
        origin = get("Origin")
        if not self.token and origin is not None and not same_origin(origin, host or ""):
            return 403, (f"forbidden: a request from {origin[:100]!r} may not change this "
                         f"server (set DRIFTLINE_API_TOKEN to allow other origins with "
                         f"the token)")
        return None


def same_origin(origin: str, host: str) -> bool:
    """``Origin`` names the server at ``host`` (the request's ``Host``).

    >>> same_origin("http://localhost:6066", "localhost:6066")
    True
    >>> same_origin("https://evil.example", "localhost:6066"), same_origin("null", "x")
    (False, False)
    """
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    default = 443 if parts.scheme == "https" else 80
    name, host_port = _split(host.strip().lower())
    ours = (name.strip("[]").rstrip("."), int(host_port) if host_port else default)
    return (parts.hostname.rstrip("."), port or default) == ours
