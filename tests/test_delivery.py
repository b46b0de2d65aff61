"""Alert delivery without Kafka: the Alertmanager and webhook payloads, the signature,
the retry rule against real HTTP servers, inhibition, silences in real Valkey, and
secrets kept out of text."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time

import aiohttp
import orjson
import pytest
from click.testing import CliRunner
from receivers import Receiver

from driftline.agents.delivery import payload
from driftline.agents.delivery.inhibition import Inhibitor
from driftline.agents.delivery.receivers import Target, push, targets
from driftline.agents.delivery.silences import SilenceError, SilenceStore, parse_duration
from driftline.cli import main
from driftline.errors import ConfigError
from driftline.redis_client import redis_client
from driftline.settings import Settings


def alert(kind="concept_drift", n=1, status="firing", ts=100.0, model="m", feature=None,
          version=1, segment=None, severity="critical"):
    tail = f".{feature}" if feature else ""
    return {"alert_id": f"{model}.v{version}.{kind}{tail}.{n}.{status}", "model": model,
            "version": version, "kind": kind, "status": status, "severity": severity,
            "detector": "adwin", "feature": feature, "segment": segment, "ts": ts,
            "metrics": {"rolling_mse": 2.0, "baseline_mse": 1.0, "n_scored": 1000},
            "message": "Rolling MSE doubled."}


# --- payloads ---------------------------------------------------------------------------

def test_alertmanager_alert_has_the_labels_and_times_of_the_issue():
    firing = payload.alertmanager_alert(alert("data_drift", feature="rooms", segment="fr",
                                              ts=1_700_000_000.5), "http://dash:6066/",
                                        now=1_700_000_100.0, resend_interval=60)
    assert firing["labels"] == {"alertname": "data_drift", "model": "m", "version": "1",
                                "severity": "critical", "alert_id": "m.v1.data_drift.rooms.1",
                                "feature": "rooms", "segment": "fr"}
    assert firing["annotations"]["summary"] == "Rolling MSE doubled."
    assert firing["startsAt"] == "2023-11-14T22:13:20.5Z"
    assert firing["endsAt"] == "2023-11-14T22:19:00Z"  # now + 4 re-send intervals
    assert firing["generatorURL"] == "http://dash:6066/?model=m"
    resolved = payload.alertmanager_alert(alert(status="resolved", ts=1_700_000_300.0,
                                                version=None), "http://d/", now=0.0,
                                          resend_interval=60, started=1_700_000_000.0)
    # Same labels as its firing (Alertmanager matches on them), ended at the resolve.
    assert resolved["labels"]["alert_id"] == "m.vNone.concept_drift.1"
    assert resolved["labels"]["version"] == "none" and "feature" not in resolved["labels"]
    assert (resolved["startsAt"], resolved["endsAt"]) == ("2023-11-14T22:13:20Z",
                                                          "2023-11-14T22:18:20Z")


def test_webhook_body_is_the_alert_with_slack_text_and_a_verifiable_signature():
    a = alert(severity="warning", feature="rooms", kind="data_drift")
    body = payload.webhook_body(a)
    decoded = orjson.loads(body)
    assert {k: v for k, v in decoded.items() if k != "text"} == a
    assert decoded["text"] == (":warning: *data_drift* firing for m v1 (feature rooms): "
                               "Rolling MSE doubled.")
    expected = "sha256=" + hmac.new(b"k3y", body, hashlib.sha256).hexdigest()
    assert payload.signature(body, "k3y") == expected
    assert payload.signature(body + b" ", "k3y") != expected


def test_a_decoded_alert_with_attribution_serialises_for_every_receiver():
    """Issue 29: the monitor's concept_drift alerts carry ``attribution`` (Structs);
    the decoded event must reach orjson as plain JSON types, not as Structs."""
    from driftline.models.wire import ALERT
    from driftline.models.wire.events import as_dict

    record = {**alert(), "attribution": [{"feature": "rooms", "share": 0.75}],
              "reason": "cleared", "status": "resolved", "segment": "fr"}
    [event], bad = ALERT.decode(orjson.dumps(record))
    assert bad == []
    decoded = as_dict(event)
    assert orjson.loads(payload.webhook_body(decoded))["attribution"] == [
        {"feature": "rooms", "share": 0.75}]
    am = payload.alertmanager_alert(decoded, "http://d/", now=0.0, resend_interval=60)
    assert orjson.loads(orjson.dumps(am))["labels"]["segment"] == "fr"


def test_targets_are_named_without_their_secret_paths():
    s = Settings(alertmanager_url="http://am:9093/", alert_webhooks=(
        "https://hooks.slack.com/services/T0/B0/SECRETPATH, http://ops:8080/hook"))
    assert [(t.name, t.url) for t in targets(s)] == [
        ("alertmanager", "http://am:9093/api/v2/alerts"),
        ("webhook-1:hooks.slack.com", "https://hooks.slack.com/services/T0/B0/SECRETPATH"),
        ("webhook-2:ops:8080", "http://ops:8080/hook")]
    assert "SECRETPATH" not in repr(targets(s))


def test_settings_never_print_the_webhook_secret_or_paths():
    s = Settings(alert_webhooks="https://hooks.slack.com/services/T0/B0/SECRETPATH",
                 webhook_secret="hmac-key-5d1", alertmanager_url="http://u:ampw@am:9093")
    for text in (repr(s), str(s), orjson.dumps(s.redacted()).decode()):
        assert "SECRETPATH" not in text and "hmac-key-5d1" not in text and "ampw" not in text
    assert s.redacted()["alert_webhooks"] == "https://hooks.slack.com/***"
    assert s.redacted()["webhook_secret"] == "***"
    result = CliRunner().invoke(main, ["config", "--json"], env={
        "DRIFTLINE_WEBHOOK_SECRET": "hmac-key-5d1",
        "DRIFTLINE_ALERT_WEBHOOKS": "https://hooks.slack.com/services/T0/B0/SECRETPATH"})
    assert result.exit_code == 0 and "webhook_secret" in result.output
    assert "SECRETPATH" not in result.output and "hmac-key-5d1" not in result.output
    with pytest.raises(ConfigError, match="DRIFTLINE_ALERT_WEBHOOKS") as info:
        Settings(alert_webhooks="ftp://h/SECRETPATH")
    assert "SECRETPATH" not in str(info.value)


@pytest.mark.parametrize("text,seconds", [("2h", 7200.0), ("90s", 90.0), ("15m", 900.0),
                                          ("1d", 86400.0), ("45", 45.0)], ids=str)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "0h", "-2h", "400d"], ids=repr)
def test_bad_durations_say_how(text):
    with pytest.raises(SilenceError, match="duration"):
        parse_duration(text)


# --- inhibition --------------------------------------------------------------------------

def test_an_open_request_inhibits_later_alerts_of_its_kind_until_it_closes():
    inh = Inhibitor()
    cause = alert(ts=100.0)
    inh.on_alert(cause)
    inh.on_request({"request_id": "r1", "model": "m", "alert_id": cause["alert_id"],
                    "since": 100.0, "ts": 105.0})
    assert inh.inhibited_by(cause) is None             # the alert that made it: pushed
    earlier = alert(n=0, ts=50.0)
    assert inh.inhibited_by(earlier) is None           # fired before the drift point
    same = alert(n=2, ts=200.0)
    assert inh.inhibited_by(same) == "r1"
    assert inh.inhibited_by(alert(n=2, ts=300.0, status="resolved")) == "r1"  # its resolve
    assert inh.inhibited_by(alert("metric_threshold", ts=200.0)) is None      # other kind
    assert inh.inhibited_by(alert(model="other", ts=200.0)) is None
    inh.on_model_event({"model": "m", "event": "rejected", "request_id": "r1"})
    assert inh.inhibited_by(alert(n=3, ts=400.0)) is None


def test_a_close_read_before_its_request_leaves_it_closed():
    inh = Inhibitor()
    inh.on_alert(alert())
    inh.on_model_event({"model": "m", "event": "promoted", "request_id": "r1"})
    inh.on_request({"request_id": "r1", "model": "m", "alert_id": alert()["alert_id"],
                    "since": 100.0, "ts": 105.0})
    assert inh.inhibited_by(alert(n=2, ts=200.0)) is None


# --- the retry rule, against real HTTP servers ---------------------------------------------

def run_push(receiver: Receiver | None, url: str, *, timeout=5.0, max_attempts=0,
             start_after: float | None = None):
    slept: list[float] = []

    async def sleep(delay):
        slept.append(delay)
        await asyncio.sleep(0.01)

    async def run():
        if receiver is not None and start_after is None:
            await receiver.start()
        try:
            async with aiohttp.ClientSession() as session:
                task = asyncio.ensure_future(push(
                    session, Target("webhook-1:t", "webhook", url), b'{"a":1}',
                    {"Content-Type": "application/json"}, timeout=timeout, max_delay=2.0,
                    max_attempts=max_attempts, sleep=sleep if start_after is None
                    else asyncio.sleep))
                if start_after is not None:
                    await asyncio.sleep(start_after)
                    await receiver.start()
                return await task
        finally:
            if receiver is not None:
                await receiver.stop()
    return asyncio.run(run()), slept


def test_5xx_is_retried_with_backoff_until_it_succeeds():
    receiver = Receiver(fail_first=4, fail_status=503)
    result, slept = run_push(receiver, receiver.url + "/hook")
    assert (result.outcome, result.attempts, result.status_code) == ("delivered", 5, 200)
    assert slept == [0.5, 1.0, 2.0, 2.0]
    assert len(receiver.received) == 1


@pytest.mark.parametrize("status", [408, 429], ids=str)
def test_throttling_4xx_is_retried(status):
    receiver = Receiver(fail_first=1, fail_status=status)
    result, _ = run_push(receiver, receiver.url + "/hook")
    assert (result.outcome, result.attempts) == ("delivered", 2)


def test_4xx_fails_at_once_with_the_receivers_answer():
    receiver = Receiver(status=400)
    result, slept = run_push(receiver, receiver.url + "/hook")
    assert (result.outcome, result.attempts, result.status_code) == ("failed", 1, 400)
    assert result.error == "HTTP 400: payload refused: unknown channel" and slept == []


def test_a_receiver_that_is_not_listening_yet_is_waited_for():
    receiver = Receiver()
    started = time.monotonic()
    result, _ = run_push(receiver, receiver.url + "/hook", start_after=2.0)
    assert result.outcome == "delivered" and result.attempts >= 3
    assert time.monotonic() - started >= 2.0 and len(receiver.received) == 1


def test_a_timeout_is_retried_and_bounded_attempts_give_up_saying_why():
    async def slow(request):
        await asyncio.sleep(1.0)
        return aiohttp.web.Response()

    async def run():
        app = aiohttp.web.Application()
        app.router.add_post("/hook", slow)
        runner = aiohttp.web.AppRunner(app)
        await runner.setup()
        site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        try:
            async with aiohttp.ClientSession() as session:
                return await push(session, Target("webhook-1:t", "webhook",
                                                  f"http://127.0.0.1:{port}/hook"),
                                  b"{}", {}, timeout=0.2, max_delay=0.1, max_attempts=2)
        finally:
            await runner.cleanup()
    result = asyncio.run(run())
    assert (result.outcome, result.attempts, result.status_code) == ("failed", 2, None)
    assert result.error.startswith("gave up after 2 attempts: TimeoutError")
    assert "/hook" not in result.error  # a webhook's path may be its secret


# --- silences in Valkey ----------------------------------------------------------------

@pytest.fixture
def store(settings):
    now = [time.time()]  # Redis expires keys by its own clock
    s = SilenceStore(redis_client(settings.redis_url), settings.registry_prefix,
                     clock=lambda: now[0])
    yield s, now
    s.close()


@pytest.mark.integration
def test_silences_are_stored_listed_matched_and_expire(store):
    s, now = store
    a = s.create("houses", 7200, "rebuilding the feature store", kind="data_drift",
                 created_by="ann")
    b = s.create("houses", 60, "deploy")
    assert [x.id for x in s.active()] == [b.id, a.id]  # soonest to end first
    assert a.matches({"model": "houses", "kind": "data_drift", "feature": "x"}, now[0])
    assert not a.matches({"model": "houses", "kind": "concept_drift"}, now[0])
    now[0] += 61
    assert [x.id for x in s.active()] == [a.id]
    # The Redis key expires with the silence (PXAT at its end).
    ttl_ms = s.client.pttl(f"{s.prefix}silence:{a.id}")
    assert 7_100_000 < ttl_ms <= 7_200_000
    assert s.delete(a.id) and not s.delete(a.id) and s.active() == []


@pytest.mark.integration
def test_bad_silences_are_refused(store):
    s, _ = store
    with pytest.raises(SilenceError, match="kind 'meltdown'"):
        s.create("houses", 60, "x", kind="meltdown")
    with pytest.raises(SilenceError, match="reason"):
        s.create("houses", 60, "  ")
    with pytest.raises(SilenceError, match="model"):
        s.create("no spaces", 60, "x")
    assert s.active() == []


@pytest.fixture
def model_named_silence(settings):
    """Version 1 of a model named ``silence``: its keys (``P silence:v:1``, ...) sit
    where a silence id of ``v:1`` would point."""
    from driftline import LinearModel, ModelRegistry

    registry = ModelRegistry.from_url(settings.redis_url, prefix=settings.registry_prefix)
    version = registry.register("silence", LinearModel([1.0], 0.0, ["x"]))
    yield registry, version
    registry.close()


@pytest.mark.integration
@pytest.mark.parametrize("bad_id", ["v:1", "next", "0123456789AB", "0123456789ab:x", ""],
                         ids=["registry-version", "registry-counter", "upper", "suffix", "empty"])
def test_a_silence_id_can_name_only_a_silence(store, model_named_silence, bad_id):
    s, _ = store
    registry, version = model_named_silence
    before = sorted(s.client.keys(f"{s.prefix}silence:*"))
    with pytest.raises(SilenceError, match="ids are 12 hex digits"):
        s.delete(bad_id)
    assert sorted(s.client.keys(f"{s.prefix}silence:*")) == before
    assert registry.versions("silence")[0].version == version


@pytest.mark.integration
def test_cli_unsilence_refuses_what_is_not_a_silence_id(settings, model_named_silence):
    registry, version = model_named_silence
    env = {"DRIFTLINE_REDIS_URL": settings.redis_url,
           "DRIFTLINE_REGISTRY_PREFIX": settings.registry_prefix}
    result = CliRunner().invoke(main, ["alerts", "unsilence", "v:1"], env=env)
    assert result.exit_code == 2 and "ids are 12 hex digits" in result.output
    assert [v.version for v in registry.versions("silence")] == [version]


@pytest.mark.integration
def test_cli_silence_list_and_unsilence(settings):
    env = {"DRIFTLINE_REDIS_URL": settings.redis_url,
           "DRIFTLINE_REGISTRY_PREFIX": settings.registry_prefix}
    runner = CliRunner()
    made = runner.invoke(main, ["alerts", "silence", "--model", "houses", "--kind",
                                "data_drift", "--feature", "rooms", "--for", "2h", "--reason",
                                "feature store rebuild", "--json"], env=env)
    assert made.exit_code == 0, made.output
    silence = orjson.loads(made.stdout)
    assert silence["model"] == "houses" and silence["feature"] == "rooms"
    assert silence["ends_at"] - silence["starts_at"] == 7200
    listed = runner.invoke(main, ["alerts", "silences"], env=env)
    assert listed.exit_code == 0
    assert f"{silence['id']}  houses kind=data_drift feature=rooms  until" in listed.output
    assert runner.invoke(main, ["alerts", "unsilence", silence["id"]], env=env).exit_code == 0
    again = runner.invoke(main, ["alerts", "unsilence", silence["id"]], env=env)
    assert again.exit_code == 2 and "no silence" in again.output
    assert orjson.loads(runner.invoke(main, ["alerts", "silences", "--json"],
                                      env=env).stdout) == []
    bad = runner.invoke(main, ["alerts", "silence", "--model", "houses", "--for", "soon",
                               "--reason", "x"], env=env)
    assert bad.exit_code == 2 and "duration 'soon'" in bad.output


def test_delivery_without_a_receiver_is_a_usage_error():
    result = CliRunner().invoke(main, ["delivery"], env={"DRIFTLINE_KAFKA_URL":
                                                         "kafka://127.0.0.1:1"})
    assert result.exit_code == 2
    assert "set DRIFTLINE_ALERTMANAGER_URL and/or DRIFTLINE_ALERT_WEBHOOKS" in result.output
