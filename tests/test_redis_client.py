"""One Redis client factory: every client driftline builds gets its URL, TLS CA file and
timeouts from driftline.redis_client."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import redis

from driftline.redis_client import (
    HOT_PATH,
    INTERACTIVE,
    REGISTRY,
    Timeouts,
    redis_client,
    settings_redis_client,
)
from driftline.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("profile", [REGISTRY, INTERACTIVE, HOT_PATH, Timeouts.flat(3.5)],
                         ids=["registry", "interactive", "hot_path", "flat"])
def test_a_profile_reaches_the_connection(profile):
    client = redis_client("redis://:pw@127.0.0.1:1/3", timeout=profile)
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == profile.socket
    assert kwargs["socket_connect_timeout"] == profile.connect
    assert kwargs["health_check_interval"] == profile.health_check_interval
    assert (kwargs["password"], kwargs["db"]) == ("pw", 3)
    client.close()


def test_settings_give_the_url_and_the_tls_ca_file(tmp_path):
    ca = str(tmp_path / "ca.pem")
    client = settings_redis_client(
        Settings(redis_url="rediss://:pw@redis.example:6380/1", redis_ssl_cafile=ca),
        timeout=INTERACTIVE)
    pool = client.connection_pool
    assert pool.connection_class is redis.SSLConnection
    assert pool.connection_kwargs["ssl_ca_certs"] == ca
    assert pool.connection_kwargs["socket_timeout"] == INTERACTIVE.socket
    client.close()


def test_an_unreachable_server_fails_within_the_profile():
    import time

    from driftline.ports import free_port

    client = redis_client(f"redis://127.0.0.1:{free_port()}/0", timeout=HOT_PATH)
    started = time.monotonic()
    with pytest.raises(redis.ConnectionError):
        client.ping()
    assert time.monotonic() - started < HOT_PATH.connect + 1
    client.close()


def test_nothing_else_builds_a_redis_client():
    """``redis.Redis(...)``, ``Redis.from_url`` and ``StrictRedis`` appear only in the
    factory; tests may build their own."""
    offenders = []
    for folder in ("driftline", "agents", "models"):
        for path in (ROOT / folder).rglob("*.py"):
            if path.name == "redis_client.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                    target = ast.unparse(node.func)
                    if target.endswith(("Redis.from_url", "StrictRedis", "redis.Redis",
                                        "Redis.from_pool")):
                        offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {target}")
    assert offenders == []
