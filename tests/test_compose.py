"""docker-compose.yml against the Compose Specification (Docker does not run here)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from driftline.cli import main
from driftline.settings import Settings
from driftline.web import check_access
from driftline.web_access import Access

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
    assert set(k for k, v in published.items() if v) == {"kafka", "redis", "worker", *OBSERVABILITY}
    for name, ports in published.items():
        for port in ports:
            assert interpolate(port).startswith("127.0.0.1:"), (name, port)
            bound = interpolate(port, {**REQUIRED, "DRIFTLINE_BIND": "0.0.0.0"})
            # Prometheus has no login: loopback whatever DRIFTLINE_BIND says (Grafana too)
            expected = "127.0.0.1:" if name in OBSERVABILITY else "0.0.0.0:"
            assert bound.startswith(expected), (name, port)


OBSERVABILITY = ("prometheus", "grafana")


def test_the_observability_profile_mounts_what_ships_in_deploy(compose):
    services = compose["services"]
    for name in OBSERVABILITY:
        assert services[name]["profiles"] == ["observability"], name
        for volume in services[name]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), (name, volume)
    prometheus, grafana = services["prometheus"], services["grafana"]
    assert prometheus["image"].startswith("prom/prometheus:")
    assert grafana["image"].startswith("grafana/grafana:")
    mounts = {v.split(":")[1]: v.split(":")[0] for v in prometheus["volumes"]}
    assert mounts["/etc/prometheus/prometheus.yml"] == "./deploy/prometheus/prometheus.yml"
    assert mounts["/etc/prometheus/driftline-rules.yml"] == \
        "./deploy/prometheus/driftline-rules.yml"
    # The scrape's token is the worker's, a compose secret read from its required variable
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    [job] = config["scrape_configs"]
    assert prometheus["secrets"] == ["driftline_api_token"]
    assert compose["secrets"]["driftline_api_token"] == {"environment": "DRIFTLINE_API_TOKEN"}
    assert job["authorization"]["credentials_file"] == "/run/secrets/driftline_api_token"
    # ... and the worker answers to the Host Prometheus sends (the service's name)
    [target] = job["static_configs"][0]["targets"]
    env = {k: interpolate(str(v)) for k, v in services["worker"]["environment"].items()}
    assert Access(Settings.from_env(env)).host_ok(target)
    assert Access(Settings.from_env(env)).host_ok("localhost:6066")
    assert not Access(Settings.from_env(env)).host_ok("rebind.evil.example:6066")


def test_grafana_refuses_to_start_without_an_admin_password(compose):
    """Grafana's own default is admin/admin. ``${...:?}`` would make every ``docker compose
    up`` demand it (compose interpolates services of inactive profiles too), so the
    container's entrypoint refuses instead; here it runs under sh."""
    grafana = compose["services"]["grafana"]
    text = (ROOT / "docker-compose.yml").read_text()
    assert re.findall(r"\$\{GRAFANA_ADMIN_PASSWORD(:-|:\?|-|\?|\})([^}]*)", text) == [(":-", "")]
    sh, flag, script = grafana["entrypoint"]
    assert (sh, flag) == ("/bin/sh", "-c") and script.endswith("exec /run.sh")
    script = script.replace("$$", "$")  # compose's escape for a literal $
    for password, code, said in (("", 1, "set GRAFANA_ADMIN_PASSWORD"),
                                 ("s3cret-from-the-operator", 127, "/run.sh")):
        value = interpolate(grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"],
                            {**REQUIRED, "GRAFANA_ADMIN_PASSWORD": password})
        assert value == password
        run = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True,
                             env={"PATH": "/usr/bin:/bin", "GF_SECURITY_ADMIN_PASSWORD": value})
        # empty: refused, saying what to set; set: on to Grafana's /run.sh (absent here)
        assert (run.returncode, said in run.stderr) == (code, True), run


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
