"""Secrets never leave the process as text: the API token, the SASL password and a
password inside a Redis (or Kafka) URL are masked in repr, str, error messages, CLI
output and log lines."""

from __future__ import annotations

import logging

import pytest
from click.testing import CliRunner

from driftline.cli import main
from driftline.errors import ConfigError
from driftline.ports import free_port
from driftline.settings import Settings, redact_url

TOKEN, SASL, REDIS_PW = "tok-4f2a", "sasl-9c1e", "redispw-77b3"
SECRETS = (TOKEN, SASL, REDIS_PW)


def secret_settings(**changes) -> Settings:
    return Settings(api_token=TOKEN, redis_url=f"redis://:{REDIS_PW}@127.0.0.1:6379/0",
                    kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_username="svc",
                    kafka_sasl_password=SASL, **changes)


def secret_env(**extra: str) -> dict[str, str]:
    return {"DRIFTLINE_API_TOKEN": TOKEN, "DRIFTLINE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "DRIFTLINE_KAFKA_SASL_USERNAME": "svc", "DRIFTLINE_KAFKA_SASL_PASSWORD": SASL,
            "DRIFTLINE_REDIS_URL": f"redis://:{REDIS_PW}@127.0.0.1:{free_port()}/0", **extra}


def assert_no_secret(text: str) -> None:
    leaked = [s for s in SECRETS if s in text]
    assert leaked == [], text


def test_repr_and_str_mask_every_secret_but_keep_the_rest():
    s = secret_settings()
    for text in (repr(s), str(s), f"{s}", repr([s])):
        assert_no_secret(text)
        assert "api_token='***'" in text and "kafka_sasl_password='***'" in text
        assert "redis_url='redis://:***@127.0.0.1:6379/0'" in text
        assert "kafka_sasl_username='svc'" in text
    # Unset secrets show as unset, not as a mask that suggests a value.
    assert "api_token=''" in repr(Settings())
    # The values themselves are untouched: only their text is masked.
    assert s.api_token == TOKEN and s.redacted()["api_token"] == "***"


@pytest.mark.parametrize("url,shown", [
    ("redis://:pw@h:6379/0", "redis://:***@h:6379/0"),
    ("redis://user:pw@h:6379/0", "redis://user:***@h:6379/0"),
    ("rediss://pw@h/1", "rediss://***@h/1"),
    ("redis://:p@ss/word@h:1/0", None),
    ("kafka://u:pw@a:9092,b:9092", "kafka://u:***@a:9092,b:9092"),
    ("u:pw@a:9092", "u:***@a:9092"),
    ("unix:///tmp/redis.sock?db=1", "unix:///tmp/redis.sock?db=1"),
    ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
], ids=lambda v: str(v))
def test_redact_url(url, shown):
    if shown is None:  # an unencoded '/' in the password: at least the part before it goes
        assert "p@ss" not in redact_url(url)
        return
    assert redact_url(url) == shown


@pytest.mark.parametrize("changes", [
    {"redis_url": f"http://:{REDIS_PW}@h:6379/0"},
    {"kafka_url": f"kafka://svc:{REDIS_PW}@h:9092"},
    {"kafka_url": f"svc:{REDIS_PW}@h:9092"},
    {"kafka_url": f"http://svc:{REDIS_PW}@h:9092"},
], ids=["redis-scheme", "kafka-userinfo", "kafka-bare-userinfo", "kafka-scheme"])
def test_configuration_errors_mask_passwords(changes):
    with pytest.raises(ConfigError) as info:
        Settings(**changes)
    assert_no_secret(str(info.value))
    assert "***" in str(info.value)


def test_cli_configuration_error_masks_the_password():
    result = CliRunner().invoke(main, ["worker"], env={
        **secret_env(), "DRIFTLINE_REDIS_URL": f"http://:{REDIS_PW}@h:6379/0"})
    assert result.exit_code == 2
    assert "redis_url" in result.output
    assert_no_secret(result.output)


def test_health_output_masks_secrets():
    env = secret_env(DRIFTLINE_KAFKA_URL=f"kafka://127.0.0.1:{free_port()}")
    for args in (["health", "--timeout", "1"], ["health", "--timeout", "1", "--json"]):
        result = CliRunner().invoke(main, args, env=env)
        assert result.exit_code == 1, result.output
        assert "FAIL" in result.output or '"healthy":false' in result.output
        assert_no_secret(result.output)


def test_registry_errors_mask_the_redis_password():
    result = CliRunner().invoke(main, ["models", "list"], env=secret_env())
    assert result.exit_code == 1
    assert "Redis is unreachable" in result.output
    assert_no_secret(result.output)


def test_the_startup_log_line_shows_the_settings_masked(monkeypatch, caplog):
    import driftline.worker

    monkeypatch.setattr(driftline.worker, "run_trainer", lambda settings: 0)
    with caplog.at_level(logging.INFO, logger="driftline"):
        result = CliRunner().invoke(main, ["trainer"], env=secret_env())
    assert result.exit_code == 0, result.output
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("starting")]
    assert "api_token='***'" in line and "kafka_sasl_password='***'" in line
    assert "redis://:***@127.0.0.1:" in line
    assert_no_secret(caplog.text + result.output)


def test_config_command_prints_the_settings_masked():
    for args in (["config"], ["config", "--json"]):
        result = CliRunner().invoke(main, args, env=secret_env())
        assert result.exit_code == 0, result.output
        assert_no_secret(result.output)
    assert "DRIFTLINE_API_TOKEN=***" in CliRunner().invoke(main, ["config"],
                                                           env=secret_env()).output
