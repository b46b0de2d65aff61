"""docker-compose.yml against the Compose Specification (Docker does not run here)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from driftline.cli import main
from driftline.settings import Settings
from driftline.web import check_access

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT.parent / "shared" / "compose-spec.json"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_file_follows_the_compose_specification(compose):
    if not SPEC.exists():
        pytest.skip(f"{SPEC} is absent: the Compose Specification schema ships in ../shared/")
    import jsonschema

    schema = json.loads(SPEC.read_text())
    jsonschema.validate(compose, schema)
    broken = dict(compose, services={"worker": {"image": "x", "restart": 7}})
    with pytest.raises(jsonschema.ValidationError):  # the schema does check something
        jsonschema.validate(broken, schema)


# What an operator must set (``${VAR:?message}``): compose refuses to start without them.
REQUIRED = {"REDIS_PASSWORD": "redis-pw-from-the-operator",
            "DRIFTLINE_API_TOKEN": "a-token-of-at-least-16-chars"}


def interpolate(value: str, env: dict[str, str] | None = None) -> str:
    """Compose's interpolation with ``env`` set (default: the required variables only):
    ``${VAR:-default}`` and ``${VAR:?message}``, which fails when VAR is unset."""
    env = REQUIRED if env is None else env

    def one(m: re.Match) -> str:
        name, op, rest = m.group(1), m.group(2), m.group(3)
        if env.get(name):
            return env[name]
        if op == ":?":
            raise KeyError(f"{name}: {rest}")
        return rest
    return re.sub(r"\$\{([A-Z_]+)(:-|:\?)([^}]*)\}", one, value)


def test_driftline_services_use_only_known_settings_with_valid_values(compose):
    services = compose["services"]
    known = set(Settings.env_names().values())
    for name in ("worker", "trainer", "delivery"):
        env = {k: interpolate(str(v)) for k, v in services[name]["environment"].items()}
        assert env, name
        assert set(env) <= known, f"{name} sets unknown variables {set(env) - known}"
        settings = Settings.from_env(env)  # valid values, or ConfigError
        check_access(settings)  # not on 0.0.0.0 without a token of 16+ characters
        assert settings.bootstrap_servers == ["kafka:9092"]
        assert settings.redis_url.startswith("redis://:redis-pw-from-the-operator@redis:6379")
        command = services[name]["command"][0]
        assert command in main.commands, f"{name} runs unknown command {command!r}"
        assert services[name]["build"] == "."
        assert services[name]["healthcheck"]["test"][1:3] == ["driftline", "health"]
        assert {"kafka", "redis"} <= set(services[name]["depends_on"])


def test_the_worker_publishes_its_web_port_with_a_token(compose):
    worker = compose["services"]["worker"]
    assert [interpolate(p) for p in worker["ports"]] == ["127.0.0.1:6066:6066"]
    assert worker["environment"]["DRIFTLINE_WEB_HOST"] == "0.0.0.0"
    assert interpolate(worker["environment"]["DRIFTLINE_API_TOKEN"]) == \
        REQUIRED["DRIFTLINE_API_TOKEN"]


def test_no_secret_has_a_default(compose):
    """Issue 30: the file shipped 'change-me' and 'change-me-too'; anyone who ran it
    as it was had secrets the whole internet knows. Unset, compose refuses to start."""
    text = (ROOT / "docker-compose.yml").read_text()
    assert "change-me" not in text
    for name in REQUIRED:
        uses = re.findall(rf"\$\{{{name}(:-|:\?|-|\?|\}})", text)
        assert uses and set(uses) == {":?"}, (name, uses)
    services = compose["services"]
    for where in (services["worker"]["environment"]["DRIFTLINE_API_TOKEN"],
                  services["worker"]["environment"]["DRIFTLINE_REDIS_URL"],
                  services["redis"]["environment"]["REDISCLI_AUTH"],
                  " ".join(services["redis"]["command"])):
        with pytest.raises(KeyError, match="set "):
            interpolate(where, env={})


def test_published_ports_are_on_loopback_unless_the_operator_says_otherwise(compose):
    published = {name: spec.get("ports", []) for name, spec in compose["services"].items()}
    assert set(k for k, v in published.items() if v) == {"kafka", "redis", "worker"}
    for name, ports in published.items():
        for port in ports:
            assert interpolate(port).startswith("127.0.0.1:"), (name, port)
            assert interpolate(port, {**REQUIRED, "DRIFTLINE_BIND": "0.0.0.0"}).startswith(
                "0.0.0.0:"), (name, port)


def test_kafka_is_kraft_and_redis_has_a_password_and_append_only(compose):
    kafka, redis = compose["services"]["kafka"], compose["services"]["redis"]
    assert kafka["image"].startswith("apache/kafka:")
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "healthcheck" in kafka and "healthcheck" in redis
    assert redis["image"].startswith("redis:7")
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert "--requirepass" in command


def test_the_dockerfile_copies_what_the_package_needs():
    dockerfile = (ROOT / "Dockerfile").read_text()
    for part in ("pyproject.toml", "driftline", "agents", "models"):
        assert re.search(rf"^COPY .*\b{part}\b", dockerfile, re.M), part
        assert (ROOT / part).exists()
    assert 'ENTRYPOINT ["driftline"]' in dockerfile
