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
from driftline.models.wire import ALERT
from driftline.models.wire.events import as_dict
from driftline.redis_client import redis_client
from driftline.settings import Settings


def alert(kind="concept_drift", n=1, status="firing", ts=100.0, model="m", feature=None,
          version=1, segment=None, severity="critical"):
    """An alert as the delivery agent reads it: shaped as the monitor makes them (a
    concept_drift or metric_threshold firing carries ``attribution``, a resolve its
    ``reason``), through the wire layer (issue 29: hand-made alerts without attribution
    hid a crash on every real one)."""
    tail = f".{feature}" if feature else ""
    record = {"alert_id": f"{model}.v{version}.{kind}{tail}.{n}.{status}", "model": model,
              "version": version, "kind": kind, "status": status, "severity": severity,
              "detector": "adwin", "feature": feature, "segment": segment, "ts": ts,
              "metrics": {"rolling_mse": 2.0, "baseline_mse": 1.0, "n_scored": 1000},
              "message": "Rolling MSE doubled."}
    if kind in ("concept_drift", "metric_threshold") and status == "firing":
        record["attribution"] = [{"feature": "rooms", "share": 0.75},
                                 {"feature": "area", "share": 0.25}]
    if status == "resolved":
        record["reason"] = "cleared"
    return as_dict(ALERT.validate(record))


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
    headers = payload.signed_headers(body, a["alert_id"], "k3y", now=1_700_000_000.9)
    signed = b"1700000000\n" + a["alert_id"].encode() + b"\n" + body
    assert headers == {"Idempotency-Key": a["alert_id"], "X-Driftline-Timestamp": "1700000000",
                       "X-Driftline-Signature": "v1=" + hmac.new(b"k3y", signed,
                                                                 hashlib.sha256).hexdigest()}
    assert "X-Driftline-Signature" not in payload.signed_headers(body, "k", "", now=0.0)


def readme_verify():
    """The docs' webhook verification recipe (docs/how-to/deliver-alerts.md), run as
    written, as doctest runs an example: our own page, not input."""
    from pathlib import Path

    page = Path(__file__).resolve().parent.parent / "docs" / "how-to" / "deliver-alerts.md"
    text = page.read_text()
    section = text[text.index("<!-- webhook-verify -->"):]
    start = section.index("```python\n") + len("```python\n")
    code = section[start:section.index("\n```", start)]
    namespace: dict = {}
    exec(compile(code, f"{page.name}#webhook-verify", "exec"), namespace)
    return namespace["verify"]


def test_the_readme_recipe_verifies_a_request_and_refuses_replays():
    """Issue 30: the HMAC covered only the body: a captured request replayed forever, under
    any Idempotency-Key and to every receiver (one secret for all)."""
    verify = readme_verify()
    a = alert()
    body = payload.webhook_body(a)
    now = time.time()
    headers = payload.signed_headers(body, a["alert_id"], "k-1", now=now)
    assert verify(headers, body, "k-1")
    assert not verify(headers, body + b" ", "k-1")                       # another body
    assert not verify({**headers, "Idempotency-Key": "m.v1.x.9.firing"}, body, "k-1")
    assert not verify(headers, body, "k-2")                              # another receiver
    old = payload.signed_headers(body, a["alert_id"], "k-1", now=now - 3600)
    assert not verify(old, body, "k-1")                                  # replayed an hour on
    assert not verify({**old, "X-Driftline-Timestamp": headers["X-Driftline-Timestamp"]},
                      body, "k-1")                                       # ...re-dated


def test_each_webhook_signs_with_its_own_secret_and_none_is_printed():
    s = Settings(alert_webhooks="http://a:1/h,http://b:2/h,http://c:3/h",
                 webhook_secret="default-5ec", webhook_secrets="1=only-a-7f1, 3 = only-c-2b9")
    assert [t.secret for t in targets(s)] == ["only-a-7f1", "default-5ec", "only-c-2b9"]
    for text in (repr(s), str(s), repr(targets(s)), orjson.dumps(s.redacted()).decode()):
        assert not any(k in text for k in ("only-a-7f1", "only-c-2b9", "default-5ec")), text
    assert s.redacted()["webhook_secrets"] == "***"
    result = CliRunner().invoke(main, ["config", "--json"], env={
        "DRIFTLINE_ALERT_WEBHOOKS": "http://a:1/h", "DRIFTLINE_WEBHOOK_SECRETS": "1=only-a-7f1"})
    assert result.exit_code == 0 and "only-a-7f1" not in result.output
    for bad, says in (("1only-a-7f1", "entry 1 must be N=secret"),
                      ("4=only-a-7f1", "there is no webhook 4"),
                      ("1=only-a-7f1,1=only-a-7f1", "webhook 1 is listed twice"),
                      ("x=only-a-7f1", "entry 1 must be N=secret")):
        with pytest.raises(ConfigError, match=says) as info:
            Settings(alert_webhooks="http://a:1/h", webhook_secrets=bad)
        assert "only-a-7f1" not in str(info.value)


def test_slack_text_escapes_what_producers_named():
    """Issue 30: feature and segment names went into Slack's text as they came, so a
    feature called ``<!channel>`` paged a whole channel and ``<https://x|y>`` was a link."""
    a = alert("data_drift", feature="<!channel>", segment="<https://evil.example|fr> & co")
    a["message"] = "Feature <!channel> drifted (<!here>)."
    text = payload.webhook_text(a)
    assert text == (":rotating_light: *data_drift* firing for m v1 (feature &lt;!channel&gt;) "
                    "(segment &lt;https://evil.example|fr&gt; &amp; co): "
                    "Feature &lt;!channel&gt; drifted (&lt;!here&gt;).")
    assert "<" not in text and ">" not in text
    # The event fields themselves stay as they came: only the chat text is escaped.
    assert orjson.loads(payload.webhook_body(a))["feature"] == "<!channel>"


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


def test_an_alert_id_with_control_characters_is_pushed_with_a_header_safe_key():
    """Issue 29: an id quoting a feature name with a newline (any producer may choose one)
    made aiohttp refuse the Idempotency-Key header with a ValueError, which push() does
    not catch: the delivery agent crashed on that alert at every restart."""
    from urllib.parse import unquote

    from driftline.agents.delivery.agent import DeliveryAgent

    a = alert("data_drift", feature="rooms\r\nX-Injected: 1\x00%")
    hook = Receiver()
    agent = DeliveryAgent(Settings(alert_webhooks=hook.url + "/hook"), None, None)
    [target] = agent.targets

    async def run():
        await hook.start()
        try:
            async with aiohttp.ClientSession() as session:
                return await agent._push(session, target, a, None)
        finally:
            await hook.stop()
    assert asyncio.run(run()).outcome == "delivered"
    [request] = hook.received
    assert request.headers["Idempotency-Key"] == \
        "m.v1.data_drift.rooms%0D%0AX-Injected: 1%00%25.1.firing"
    assert unquote(request.headers["Idempotency-Key"]) == a["alert_id"]
    assert "X-Injected" not in request.headers and request.json()["alert_id"] == a["alert_id"]


def long_episode(book=None, feature="f" * 300, segment="s" * 128):
    """A firing and its resolve from the monitor's own alert book (alerting.py)."""
    from driftline.agents.monitor.alerting import AlertBook, AlertKey

    book = book or AlertBook(cooldown=60)
    key = AlertKey("m", 1, "data_drift", feature, segment)
    firing = book.fire(key, ts=1_700_000_000.0, severity="critical", detector="psi",
                       metrics={"rolling_mse": 2.0, "baseline_mse": 1.0, "n_scored": 10},
                       message="x drifted.")
    resolved = book.resolve(key, ts=1_700_000_060.0, metrics={}, message="x is back.")
    return firing, resolved


def test_long_feature_and_segment_names_keep_one_episode_for_every_reader():
    """Issue 30: ids over 256 chars were hashed with their status, so the resolve named
    another episode than its firing: Alertmanager, delivery and the dashboard kept it open."""
    from driftline.agents.delivery.agent import DeliveryPartition
    from driftline.agents.monitor.alerting import AlertKey, alert_id
    from driftline.observe import Observatory, episode

    firing, resolved = long_episode()
    assert len(firing["alert_id"]) <= 256 and len(resolved["alert_id"]) <= 256
    assert firing["alert_id"] != resolved["alert_id"]
    assert payload.episode_id(firing["alert_id"]) == payload.episode_id(resolved["alert_id"])
    assert episode(firing["alert_id"]) == episode(resolved["alert_id"])
    # Alertmanager matches the resolve to the firing by their labels.
    am = [payload.alertmanager_alert(a, "http://d/", now=0.0, resend_interval=60)
          for a in (firing, resolved)]
    assert am[0]["labels"] == am[1]["labels"]
    # Delivery's partition state closes the episode and knows when it fired.
    part = DeliveryPartition()
    assert part.apply(firing) is None and part.apply(resolved) == firing["ts"]
    assert part.firing == {}
    # The resolve of an inhibited firing is inhibited too.
    inh = Inhibitor(inhibited={payload.episode_id(firing["alert_id"]): "r1"})
    assert inh.inhibited_by(resolved) == "r1"
    # The dashboard shows it closed.
    obs = Observatory()
    for a in (firing, resolved):
        obs.apply("alerts", a, ts=a["ts"])
    assert obs.open_alerts("m") == []
    # Deterministic (a replay gives the stream's ids), and short names keep their ids.
    assert long_episode() == (firing, resolved)
    assert alert_id(AlertKey("m", 1, "data_drift", "rooms", "fr"), 3, "resolved") == \
        "m.v1.s:fr.data_drift.rooms.3.resolved"
    # At the edge: a firing id that would fit while its resolve would not is hashed too.
    edge = AlertKey("m", 1, "data_drift", "f" * (256 - len("m.v1.data_drift..1.firing")))
    ids = [alert_id(edge, 1, s) for s in ("firing", "resolved")]
    assert all(len(i) <= 256 for i in ids)
    assert payload.episode_id(ids[0]) == payload.episode_id(ids[1])
    # The longest names the wire allows still fit.
    widest = AlertKey("M" * 128, 2**63, "estimated_degradation", "f" * 1000, "s" * 128)
    assert len(alert_id(widest, 10**9, "resolved")) <= 256


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


async def serve(handler, path="/hook"):
    """An aiohttp server on a free port answering POST ``path`` with ``handler``."""
    app = aiohttp.web.Application()
    app.router.add_post(path, handler)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}{path}"


def test_a_redirect_is_a_failure_and_never_followed():
    """Issue 30: a 307 re-POSTed the signed body and its signature to any origin, whose
    answer then showed in /api/deliveries and the logs."""
    elsewhere: list[bytes] = []

    async def other_origin(request):
        elsewhere.append(await request.read())
        return aiohttp.web.Response(status=500, text="the other origin's error text")

    async def run():
        other, other_url = await serve(other_origin, "/steal/SECRETPATH")

        async def redirect(request):
            raise aiohttp.web.HTTPTemporaryRedirect(other_url)
        hook, hook_url = await serve(redirect)
        try:
            async with aiohttp.ClientSession() as session:
                return await push(session, Target("webhook-1:t", "webhook", hook_url),
                                  b'{"a":1}', {"X-Driftline-Signature": "t=1,v1=x"},
                                  timeout=5, max_delay=0.1, max_attempts=3)
        finally:
            await hook.cleanup()
            await other.cleanup()
    result = asyncio.run(run())
    assert (result.outcome, result.attempts, result.status_code) == ("failed", 1, 307)
    assert result.error.startswith("HTTP 307: redirect to http://127.0.0.1:")
    assert result.error.endswith("/*** not followed (set the receiver's final URL)")
    assert "SECRETPATH" not in result.error and "other origin" not in result.error
    assert elsewhere == []


def test_only_the_head_of_a_huge_error_body_is_read():
    """Issue 30: a 50 MB error answer was read whole (~105 MB); now at most 4 KiB."""
    import tracemalloc

    chunk = b"x" * 65536

    async def huge(request):
        response = aiohttp.web.StreamResponse(status=500)
        response.content_length = 50 * 2**20
        await response.prepare(request)
        try:
            for _ in range(50 * 16):
                await response.write(chunk)
        except (ConnectionError, RuntimeError):  # the client stopped reading: expected
            pass
        return response

    async def run():
        hook, url = await serve(huge)
        try:
            async with aiohttp.ClientSession() as session:
                tracemalloc.start()
                try:
                    result = await push(session, Target("webhook-1:t", "webhook", url),
                                        b"{}", {}, timeout=30, max_delay=0.1, max_attempts=1)
                    peak = tracemalloc.get_traced_memory()[1]
                finally:
                    tracemalloc.stop()
                return result, peak
        finally:
            await hook.cleanup()
    result, peak = asyncio.run(run())
    assert result.outcome == "failed" and result.status_code == 500
    assert result.error == "gave up after 1 attempts: HTTP 500: " + "x" * 500
    assert peak < 8 * 2**20, f"{peak / 2**20:.1f} MB at peak"


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
