"""Settings: environment variables, CLI overrides, clear errors."""

from __future__ import annotations

import pytest

from driftline.errors import ConfigError
from driftline.settings import Settings


def test_defaults_point_at_the_embedded_stack():
    s = Settings.from_env({})
    assert s.bootstrap_servers == ["127.0.0.1:9092"]
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert s.topic("predictions") == "driftline.predictions"
    assert s.join_ttl == 86400.0


def test_environment_then_overrides():
    env = {"DRIFTLINE_KAFKA_URL": "kafka://k1:9093,k2:9094", "DRIFTLINE_TOPIC_PREFIX": "prod.",
           "DRIFTLINE_PARTITIONS": "12", "DRIFTLINE_JOIN_TTL": "3600",
           "DRIFTLINE_REDIS_URL": "rediss://:secret@r:6380/1"}
    s = Settings.from_env(env, partitions=6, topic_prefix=None)
    assert s.bootstrap_servers == ["k1:9093", "k2:9094"]
    assert s.faust_broker == "kafka://k1:9093;kafka://k2:9094"
    assert (s.partitions, s.topic_prefix, s.join_ttl) == (6, "prod.", 3600.0)
    assert Settings.from_env(s.as_env()) == s


@pytest.mark.parametrize("env,message", [
    ({"DRIFTLINE_PARTITIONS": "many"}, "DRIFTLINE_PARTITIONS='many' is not a valid int"),
    ({"DRIFTLINE_PARTITIONS": "0"}, "partitions must be at least 1"),
    ({"DRIFTLINE_KAFKA_URL": "http://x:1"}, "use kafka://host:port"),
    ({"DRIFTLINE_KAFKA_URL": "kafka://nohost"}, "use kafka://host:port"),
    ({"DRIFTLINE_REDIS_URL": "localhost:6379"}, "must start with redis://"),
    ({"DRIFTLINE_TOPIC_PREFIX": "bad prefix"}, "may only use letters"),
    ({"DRIFTLINE_JOIN_TTL": "-5"}, "join_ttl must be a positive number"),
    ({"DRIFTLINE_KAFKA_ULR": "kafka://x:1"}, "unknown setting(s) DRIFTLINE_KAFKA_ULR"),
])
def test_bad_settings_say_what_is_wrong(env, message):
    with pytest.raises(ConfigError) as err:
        Settings.from_env(env)
    assert message in str(err.value)


def test_every_setting_has_an_env_name_and_doc():
    from dataclasses import fields

    names = Settings.env_names()
    for f in fields(Settings):
        assert names[f.name] == "DRIFTLINE_" + f.name.upper()
        assert f.metadata.get("doc"), f.name
