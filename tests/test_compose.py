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


def interpolate(value: str) -> str:
    """Compose's ${VAR:-default} with nothing set: the default."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def test_driftline_services_use_only_known_settings_with_valid_values(compose):
    services = compose["services"]
    known = set(Settings.env_names().values())
    for name in ("worker", "trainer", "delivery"):
        env = {k: interpolate(str(v)) for k, v in services[name]["environment"].items()}
        assert env, name
        assert set(env) <= known, f"{name} sets unknown variables {set(env) - known}"
        settings = Settings.from_env(env)  # valid values, or ConfigError
        check_access(settings)  # not on 0.0.0.0 without a token
        assert settings.bootstrap_servers == ["kafka:9092"]
        assert settings.redis_url.startswith("redis://:change-me@redis:6379")
        command = services[name]["command"][0]
        assert command in main.commands, f"{name} runs unknown command {command!r}"
        assert services[name]["build"] == "."
        assert services[name]["healthcheck"]["test"][1:3] == ["driftline", "health"]
        assert {"kafka", "redis"} <= set(services[name]["depends_on"])


def test_the_worker_publishes_its_web_port_with_a_token(compose):
    worker = compose["services"]["worker"]
    assert worker["ports"] == ["6066:6066"]
    assert worker["environment"]["DRIFTLINE_WEB_HOST"] == "0.0.0.0"
    assert interpolate(worker["environment"]["DRIFTLINE_API_TOKEN"])


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
