"""Issue 9, item 7: Kafka SASL/TLS and Redis TLS settings reach every client driftline
builds. No TLS or SASL broker runs here, so each client is built (not connected) and
its configuration read back."""

from __future__ import annotations

import asyncio
import re
import ssl
from pathlib import Path

import pytest
import redis
from kafka_io import unstarted

from driftline import ModelRegistry
from driftline.app import broker_credentials, create_app
from driftline.errors import ConfigError
from driftline.kafka import client_options, reader
from driftline.redis_client import redis_client
from driftline.settings import Settings

pytestmark = pytest.mark.reliability

ROOT = Path(__file__).resolve().parent.parent
SASL = {"DRIFTLINE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "DRIFTLINE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "DRIFTLINE_KAFKA_SASL_USERNAME": "driftline", "DRIFTLINE_KAFKA_SASL_PASSWORD": "s3cret",
        "DRIFTLINE_WEB_PORT": "0"}


@pytest.mark.parametrize("env,message", [
    ({"DRIFTLINE_KAFKA_SECURITY_PROTOCOL": "TLS"}, "use one of PLAINTEXT, SSL, SASL_PLAINTEXT"),
    ({"DRIFTLINE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"},
     "SASL_SSL needs DRIFTLINE_KAFKA_SASL_USERNAME and DRIFTLINE_KAFKA_SASL_PASSWORD"),
    ({"DRIFTLINE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
      "DRIFTLINE_KAFKA_SASL_USERNAME": "u"}, "needs DRIFTLINE_KAFKA_SASL_PASSWORD"),
    ({**SASL, "DRIFTLINE_KAFKA_SASL_MECHANISM": "GSSAPI"}, "use one of PLAIN, SCRAM-SHA-256"),
    ({"DRIFTLINE_KAFKA_SASL_USERNAME": "u"}, "only used with DRIFTLINE_KAFKA_SECURITY_PROTOCOL"),
    ({"DRIFTLINE_KAFKA_SSL_CAFILE": "/ca.pem"}, "only apply to TLS: set"),
    ({"DRIFTLINE_KAFKA_SECURITY_PROTOCOL": "SSL", "DRIFTLINE_KAFKA_SSL_KEYFILE": "/k.pem"},
     "DRIFTLINE_KAFKA_SSL_KEYFILE needs DRIFTLINE_KAFKA_SSL_CERTFILE"),
    ({"DRIFTLINE_REDIS_SSL_CAFILE": "/ca.pem"}, "make DRIFTLINE_REDIS_URL a rediss:// URL"),
], ids=["protocol", "sasl-without-user", "sasl-without-password", "mechanism",
        "user-without-sasl", "tls-file-without-tls", "key-without-cert", "redis-ca-without-tls"])
def test_security_settings_are_checked_with_the_fix_in_the_message(env, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        Settings.from_env(env)


def test_the_password_is_not_in_the_settings_repr():
    assert "s3cret" not in repr(Settings.from_env(SASL))


def test_sasl_ssl_reaches_the_aiokafka_clients():
    settings = Settings.from_env(SASL)

    client = unstarted(lambda: reader(settings), lambda c: c._client)
    assert client._security_protocol == "SASL_SSL"
    assert (client._sasl_mechanism, client._sasl_plain_username,
            client._sasl_plain_password) == ("SCRAM-SHA-512", "driftline", "s3cret")
    assert isinstance(client._ssl_context, ssl.SSLContext)
    assert client._ssl_context.verify_mode == ssl.CERT_REQUIRED


def test_plaintext_is_the_default_and_sends_no_credentials():
    options = client_options(Settings.from_env({}))
    assert options == {"bootstrap_servers": ["127.0.0.1:9092"],
                       "security_protocol": "PLAINTEXT"}
    assert broker_credentials(Settings.from_env({})) is None


def test_mutual_tls_files_are_loaded_and_a_missing_one_is_a_config_error(tmp_path):
    settings = Settings.from_env({"DRIFTLINE_KAFKA_SECURITY_PROTOCOL": "SSL",
                                  "DRIFTLINE_KAFKA_SSL_CAFILE": str(tmp_path / "nope.pem")})
    with pytest.raises(ConfigError, match="cannot load the Kafka TLS files"):
        client_options(settings)
    ca = ssl.get_default_verify_paths().cafile
    if ca is None:
        pytest.skip("no system CA bundle to load")
    options = client_options(settings.replace(kafka_ssl_cafile=ca))
    assert options["security_protocol"] == "SSL"
    assert options["ssl_context"].cert_store_stats()["x509_ca"] > 0
    assert "sasl_plain_username" not in options


def test_the_faust_worker_connects_with_the_same_settings():
    settings = Settings.from_env(SASL)

    async def build():
        app = create_app(settings, agents=("join",))
        consumer = app.consumer._thread._create_worker_consumer(app.transport)
        producer = app.producer._new_producer()
        try:
            return app.conf.broker_credentials, consumer._client, producer.client
        finally:
            await consumer.stop()
            await producer.stop()

    credentials, consumer, producer = asyncio.run(build())
    assert (credentials.username, credentials.password) == ("driftline", "s3cret")
    assert credentials.protocol.value == "SASL_SSL"
    for client in (consumer, producer):
        assert client._security_protocol == "SASL_SSL"
        assert (client._sasl_mechanism, client._sasl_plain_username) == (
            "SCRAM-SHA-512", "driftline")
        assert isinstance(client._ssl_context, ssl.SSLContext)


CLIENT = re.compile(r"AIOKafka(Producer|Consumer|AdminClient)\(")


def test_every_kafka_client_in_the_package_is_built_with_client_options():
    """Each aiokafka client driftline builds takes ``**client_options(settings)``: the one
    place where the bootstrap servers and the security settings are put together."""
    built = []
    for folder in ("driftline", "agents", "models"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            text = path.read_text()
            for match in CLIENT.finditer(text):
                call = text[match.end():text.find(")", match.end())]
                built.append((f"{path.relative_to(ROOT)}", "**client_options(" in call))
            assert "bootstrap_servers=" not in text, path
    assert len(built) >= 6 and all(ok for _, ok in built), built


def test_redis_tls_ca_file_reaches_the_registry_clients(tmp_path):
    ca = str(tmp_path / "ca.pem")
    settings = Settings(redis_url="rediss://:pw@redis.example:6380/1", redis_ssl_cafile=ca)
    registry = ModelRegistry.from_settings(settings, on_event=None)
    by_url = ModelRegistry.from_url(settings.redis_url, ssl_ca_certs=ca)
    try:
        for reg in (registry, by_url):
            pool = reg.redis.connection_pool
            assert pool.connection_class is redis.SSLConnection
            assert pool.connection_kwargs["ssl_ca_certs"] == ca
            assert pool.connection_kwargs["password"] == "pw"
            # the certificate must name redis.example, whatever redis-py's default
            assert pool.connection_kwargs["ssl_check_hostname"] is True
            assert pool.connection_kwargs["ssl_cert_reqs"] == "required"
        assert registry.prefix == settings.registry_prefix
    finally:
        registry.close()
        by_url.close()
    assert settings.redis_options() == {"ssl_ca_certs": ca}
    plain = redis_client("redis://127.0.0.1:6379/0").connection_pool
    assert "ssl_check_hostname" not in plain.connection_kwargs  # not TLS: nothing to check


def test_the_redis_floor_checks_hostnames_by_default():
    """redis-py 5.x did not check a rediss:// server's hostname; pyproject.toml asks for 6+."""
    text = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'"redis>=(\d+)', text).group(1) == "6"
    assert int(redis.__version__.split(".")[0]) >= 6
