"""What only a real Apache Kafka can show: a broker restart under running workers (its
log dir persists), and a live SASL_SSL listener (SCRAM-SHA-512 over TLS, with a CA and a
broker certificate made here) that the worker, trainer, Publisher and CLI go through."""

from __future__ import annotations

import asyncio
import gc
import logging
import secrets
import subprocess
import sys
import time

import orjson
import pytest
from click.testing import CliRunner
from conftest import namespace
from kafka_io import create_topics, label, prediction, produce, read_all, wait_for_events
from pki import make_pki

from driftline import Publisher
from driftline.cli import main
from driftline.embedded import EmbeddedStack
from driftline.errors import PublishError
from driftline.kafka import wait_for_groups
from driftline.ports import free_port

pytestmark = [pytest.mark.integration, pytest.mark.kafka_only]


CLASSES = ["cat", "dog", "fox", "owl"]


def pairs(prefix: str, n: int) -> list[tuple[str, bytes, bytes]]:
    """``n`` pairs of the regression model ``m`` (ids ``<prefix><i>``), and ``n`` of the
    multiclass ``zoo`` (ids ``<prefix>z<i>``: a class with its probabilities, a class for
    a label), the two models' events interleaved."""
    msgs = []
    for i in range(n):
        guess = CLASSES[i % 4]
        probabilities = {c: 0.7 if c == guess else 0.1 for c in CLASSES}
        msgs += [("predictions", f"{prefix}{i}".encode(), prediction(f"{prefix}{i}", 2.0)),
                 ("predictions", f"{prefix}z{i}".encode(),
                  prediction(f"{prefix}z{i}", guess, model="zoo",
                             probabilities=probabilities))]
    for i in range(n):
        msgs += [("labels", f"{prefix}{i}".encode(), label(f"{prefix}{i}", 1.0)),
                 ("labels", f"{prefix}z{i}".encode(), label(f"{prefix}z{i}", CLASSES[i % 3]))]
    return msgs


def ids(prefix: str, n: int) -> list[str]:
    """The ids of ``pairs(prefix, n)``, both models'."""
    return [f"{prefix}{i}" for i in range(n)] + [f"{prefix}z{i}" for i in range(n)]


def with_multiclass_zoo(settings, tmp_path):
    """``settings`` whose monitor config (which the workers' join and monitor read) makes
    ``zoo`` a multiclass model."""
    config = tmp_path / "monitor.toml"
    config.write_text('[models.zoo]\ntask = "multiclass"\n')
    return settings.replace(monitor_config=str(config))


def counts(settings, model: str) -> tuple[int, int] | None:
    """(n_scored, n_predictions) of ``model``'s latest metrics record."""
    records = [orjson.loads(r.value) for r in read_all(settings, "metrics")]
    mine = [m for m in records if m["model"] == model]
    return (mine[-1]["n_scored"], mine[-1]["n_predictions"]) if mine else None


def scored_ids(settings, count: int, timeout: float = 120.0) -> list[str]:
    return [p["prediction_id"]
            for p in wait_for_events(settings, "scored", count, timeout=timeout, settle=3.0)]


@pytest.mark.reliability
def test_workers_ride_out_a_broker_restart_and_score_every_pair_once(own_stack,
                                                                     worker_factory,
                                                                     tmp_path):
    """Two workers keep running while the broker stops and starts on its own log dir:
    the pairs from before, during and after, of a regression and of a multiclass model,
    are each scored exactly once, and each model's monitor counts each once."""
    settings = with_multiclass_zoo(namespace(own_stack), tmp_path).replace(
        metrics_interval=0.5)
    create_topics(settings)
    workers = [worker_factory(settings, f"w{i}") for i in range(2)]
    asyncio.run(wait_for_groups(settings, [settings.group_id], timeout=90))
    produce(settings, pairs("before-", 300))
    assert len(scored_ids(settings, 600)) == 600
    pids = [w.proc.pid for w in workers]
    with own_stack.outage("kafka"):
        time.sleep(3)  # the workers' connections are refused for a while
    produce(settings, pairs("after-", 300))
    scored = scored_ids(settings, 1200, timeout=180)
    assert sorted(scored) == sorted(ids("before-", 300) + ids("after-", 300))
    deadline = time.monotonic() + 60
    while {counts(settings, m) for m in ("m", "zoo")} != {(600, 600)} and \
            time.monotonic() < deadline:
        time.sleep(0.5)
    assert (counts(settings, "m"), counts(settings, "zoo")) == ((600, 600), (600, 600))
    assert read_all(settings, "deadletter") == []  # the classes fit zoo's task
    assert all(w.alive() for w in workers), [w.log() for w in workers]
    assert [w.proc.pid for w in workers] == pids  # nobody was restarted


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    try:
        return make_pki(tmp_path_factory.mktemp("pki"))
    except RuntimeError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def secure(pki):
    """An Apache Kafka with a SASL_SSL listener (SCRAM-SHA-512) beside its PLAINTEXT one,
    and settings that reach it only through the SASL_SSL listener."""
    password = secrets.token_urlsafe(18)
    options = {"sasl_ssl_port": free_port(), "keystore": pki["keystore"],
               "scram_users": {"driftline": password}}
    with EmbeddedStack(kafka="apache", kafka_options=options) as st:
        plain = namespace(st)
        yield plain.replace(kafka_url=f"kafka://127.0.0.1:{st.kafka.sasl_ssl_port}",
                            kafka_security_protocol="SASL_SSL",
                            kafka_sasl_mechanism="SCRAM-SHA-512",
                            kafka_sasl_username="driftline", kafka_sasl_password=password,
                            kafka_ssl_cafile=str(pki["ca"]))


def cli_env(settings) -> dict[str, str]:
    return {k: v for k, v in settings.as_env().items() if v != ""}


def test_worker_trainer_publisher_and_cli_over_sasl_ssl(secure, worker_factory):
    worker_factory(secure, "worker")
    worker_factory(secure, "trainer", command="trainer")
    asyncio.run(wait_for_groups(secure, [secure.group_id, secure.trainer_group_id],
                                timeout=120))

    async def publish():
        async with Publisher(settings=secure) as pub:
            for i in range(50):
                await pub.log_prediction(f"s-{i}", model="m", prediction=2.0,
                                         features={"x": 1.0})
                await pub.log_label(f"s-{i}", label=1.0)

    asyncio.run(publish())
    assert sorted(scored_ids(secure, 50)) == sorted(f"s-{i}" for i in range(50))
    result = CliRunner().invoke(main, ["health", "--json"], env=cli_env(secure))
    report = orjson.loads(result.stdout)
    assert result.exit_code == 0, report
    assert report["checks"]["worker"]["state"] == report["checks"]["trainer"]["state"] \
        == "Stable"
    assert report["checks"]["kafka"]["url"] == secure.kafka_url  # the SASL_SSL listener


WRONG = [
    pytest.param({"kafka_sasl_password": "not-the-password"},
                 "DRIFTLINE_KAFKA_SASL_PASSWORD", id="wrong-password"),
    pytest.param({"kafka_ssl_cafile": "other_ca"}, "DRIFTLINE_KAFKA_SSL_CAFILE",
                 id="untrusted-ca"),
]


def misconfigured(secure, pki, change):
    change = {k: str(pki[v]) if v in pki else v for k, v in change.items()}
    return secure.replace(**change)


# A TLS handshake or SASL login that fails by design here can leave its asyncio transport
# for the garbage collector (CPython closes it in __del__, with a ResourceWarning): the
# test collects it itself, so that the warning is not pinned on whichever later test
# happens to run the collector.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.parametrize("change,setting", WRONG)
def test_a_wrong_password_or_untrusted_ca_fails_fast_naming_the_setting(
        secure, pki, change, setting, caplog):
    caplog.set_level(logging.CRITICAL, logger="aiokafka")
    bad = misconfigured(secure, pki, change)

    async def publish():
        async with Publisher(settings=bad):
            pass

    with pytest.raises(PublishError, match=setting):
        asyncio.run(publish())
    result = CliRunner().invoke(main, ["health", "--json"], env=cli_env(bad))
    assert result.exit_code == 1
    assert setting in orjson.loads(result.stdout)["checks"]["kafka"]["error"]
    # The worker stops with a configuration error (exit 2) instead of retrying for ever.
    for command in ("worker", "trainer"):
        done = subprocess.run([sys.executable, "-m", "driftline", command],
                              env={**_base_env(), **cli_env(bad)}, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 2, done.stderr[-2000:]
        assert setting in done.stderr
        assert bad.kafka_sasl_password not in done.stderr + done.stdout
    gc.collect()  # the failed handshakes' transports, here (see above)


def _base_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLINE_")}
