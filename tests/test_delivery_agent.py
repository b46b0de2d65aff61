"""The delivery agent on the real broker and Valkey, pushing to real HTTP receivers: an
Alertmanager API v2 stand-in, webhooks that are down, fail their first requests or
refuse with a 4xx; silences and inhibition; and ``driftline delivery`` as a process
that is killed and restarted."""

from __future__ import annotations

import asyncio
import threading
import time

import orjson
import pytest
from click.testing import CliRunner
from kafka_io import agent_sender, as_messages, create_topics, produce, read_all
from receivers import Receiver
from test_delivery import alert, readme_verify

from driftline.agents.delivery.agent import DeliveryAgent
from driftline.agents.delivery.silences import SilenceStore
from driftline.cli import main
from driftline.kafka import partition_for

pytestmark = pytest.mark.integration


def messages(settings, records, first_offset=0):
    """(logical topic, record) -> what Faust hands the agent, on model m's partition."""
    return [m for i, (topic, record) in enumerate(records) for m in as_messages(
        [orjson.dumps(record)], topic=settings.topic(topic), key=b"m",
        partition=partition_for(b"m", settings.partitions), first_offset=first_offset + i)]


async def drive(settings, batches, *, during=None, then=None):
    """A DeliveryAgent fed ``batches``; ``during(agent)`` runs beside the first batch,
    ``then(agent)`` after the last (its result is returned instead of the agent)."""
    async with agent_sender(settings) as send:
        store = SilenceStore.from_settings(settings)
        agent = DeliveryAgent(settings, send, store)
        try:
            for i, batch in enumerate(batches):
                work = asyncio.ensure_future(agent.process(batch))
                if i == 0 and during is not None:
                    await during(agent)
                await work
            await agent.drain()  # the lanes push after process() returns
            return agent if then is None else await then(agent)
        finally:
            await agent.close()
            store.close()


def deliveries(settings):
    return [dict(orjson.loads(r.value), key=r.key.decode())
            for r in read_all(settings, "alert_deliveries")]


def test_alertmanager_and_a_signed_webhook_get_every_alert(settings):
    create_topics(settings)
    am, hook = Receiver(), Receiver()
    settings = settings.replace(alertmanager_url=am.url, alert_webhooks=hook.url + "/hook",
                                webhook_secret="k-9", dashboard_url="http://dash.example/")
    firing = alert("data_drift", feature="rooms", ts=1_700_000_000.0)
    resolved = alert("data_drift", feature="rooms", status="resolved", ts=1_700_000_600.0)
    verify = readme_verify()

    async def run():
        await am.start()
        await hook.start()
        try:
            return await drive(settings, [messages(settings, [("alerts", firing)]),
                                          messages(settings, [("alerts", resolved)], 1)])
        finally:
            await am.stop()
            await hook.stop()
    asyncio.run(run())

    [[am_firing], [am_resolved]] = [r.json() for r in am.received]
    assert am_firing["labels"] == {"alertname": "data_drift", "model": "m", "version": "1",
                                   "severity": "critical", "feature": "rooms",
                                   "alert_id": "m.v1.data_drift.rooms.1"}
    assert am_firing["generatorURL"] == "http://dash.example/?model=m"
    assert am_resolved["labels"] == am_firing["labels"]
    assert (am_resolved["startsAt"], am_resolved["endsAt"]) == ("2023-11-14T22:13:20Z",
                                                                "2023-11-14T22:23:20Z")
    assert [r.path for r in am.received] == ["/api/v2/alerts"] * 2
    for request, sent in zip(hook.received, (firing, resolved)):
        body = request.json()
        assert body["alert_id"] == sent["alert_id"] and body["text"].startswith(":")
        assert verify(request.headers, request.body, "k-9")
        assert request.headers["Idempotency-Key"] == sent["alert_id"]
    records = deliveries(settings)
    assert sorted((d["alert_id"], d["target"], d["outcome"], d["attempts"], d["status_code"])
                  for d in records) == sorted(
        (a["alert_id"], t, "delivered", 1, 200) for a in (firing, resolved)
        for t in ("alertmanager", "webhook-1:127.0.0.1:" + str(hook.port)))
    assert all(d["key"] == d["alert_id"] and d["error"] is None for d in records)


@pytest.mark.reliability
def test_a_receiver_down_then_failing_loses_nothing(settings):
    """Down for 3 s, then 503 for its first 3 answers: every alert arrives, in order,
    and every record says delivered (retries never stop, never skip)."""
    create_topics(settings)
    hook = Receiver(fail_first=3, fail_status=503)
    settings = settings.replace(alert_webhooks=hook.url, alert_retry_max_delay=1.0)
    sent = [alert(n=n, ts=100.0 * n) for n in (1, 2, 3)]
    waited = []

    async def bring_up_later(agent):
        await asyncio.sleep(3.0)
        waited.append(agent.stats.retries.copy())
        await hook.start()

    async def run():
        try:
            return await drive(settings, [messages(settings, [("alerts", a) for a in sent])],
                               during=bring_up_later)
        finally:
            await hook.stop()
    agent = asyncio.run(run())
    assert [r.json()["alert_id"] for r in hook.received] == [a["alert_id"] for a in sent]
    records = sorted(deliveries(settings), key=lambda d: d["ts"])  # keyed by alert_id
    assert [(d["alert_id"], d["outcome"]) for d in records] == [
        (a["alert_id"], "delivered") for a in sent]
    assert records[0]["attempts"] >= 5  # >= 2 refused connections + 3 x 503 + the success
    assert waited[0][f"webhook-1:127.0.0.1:{hook.port}"] >= 2
    assert agent.outcomes == {(f"webhook-1:127.0.0.1:{hook.port}", "delivered"): 3}


def test_a_dead_webhook_holds_back_only_itself(settings):
    """Issue 30: each alert waited for every target, and a target is retried forever,
    so one dead webhook stopped Alertmanager's alerts too. Now Alertmanager gets each
    alert within a second while the webhook is down; the webhook gets them all, in
    order, once it is back."""
    create_topics(settings)
    am, hook = Receiver(), Receiver()
    settings = settings.replace(alertmanager_url=am.url, alert_webhooks=hook.url + "/hook",
                                alert_retry_max_delay=0.5)
    sent = [alert(n=n, ts=100.0 * n) for n in (1, 2, 3)]
    waits: list[float] = []

    async def run():
        await am.start()
        async with agent_sender(settings) as send:
            store = SilenceStore.from_settings(settings)
            agent = DeliveryAgent(settings, send, store)
            try:
                for i, a in enumerate(sent):
                    began = time.monotonic()
                    await asyncio.wait_for(agent.process(
                        messages(settings, [("alerts", a)], i)), 10)
                    while len(am.received) < i + 1:
                        await asyncio.wait_for(asyncio.sleep(0.02), 10)
                        assert time.monotonic() - began < 5, "Alertmanager waits for the hook"
                    waits.append(time.monotonic() - began)
                assert hook.received == []
                await hook.start()
                await asyncio.wait_for(agent.drain(), 30)
            finally:
                await agent.close()
                store.close()
                await am.stop()
                await hook.stop()
    asyncio.run(run())
    assert max(waits) < 1.0, waits
    assert [r.json()[0]["labels"]["alert_id"] for r in am.received] == [
        f"m.v1.concept_drift.{n}" for n in (1, 2, 3)]
    assert [r.json()["alert_id"] for r in hook.received] == [a["alert_id"] for a in sent]
    records = deliveries(settings)
    assert sorted((d["alert_id"], d["target"].split(":")[0], d["outcome"]) for d in records) == \
        sorted((a["alert_id"], t, "delivered") for a in sent for t in ("alertmanager", "webhook-1"))
    hook_records = [d for d in records if d["target"].startswith("webhook-1")]
    assert max(d["attempts"] for d in hook_records) >= 2  # refused while it was down


@pytest.mark.reliability
def test_a_restart_resumes_each_target_where_it_stood(settings):
    """Offsets are committed once alerts are in the lanes; what a dead target never got
    comes back from delivery-progress after a restart, and only to that target."""
    create_topics(settings)
    am, hook = Receiver(), Receiver()
    settings = settings.replace(alertmanager_url=am.url, alert_webhooks=hook.url + "/hook",
                                alert_retry_max_delay=0.5)
    q = partition_for(b"m", settings.partitions)
    sent = [alert(n=n, ts=100.0 * n) for n in (1, 2, 3, 4)]
    produce(settings, [("alerts", b"m", orjson.dumps(a)) for a in sent], partition=q)

    async def run():
        await am.start()
        async with agent_sender(settings) as send:
            store = SilenceStore.from_settings(settings)
            try:
                # The first process: the webhook is down; it "crashes" with 3 alerts
                # acknowledged, delivered to Alertmanager only.
                first = DeliveryAgent(settings, send, store)
                await first.process(messages(settings, [("alerts", a) for a in sent[:3]]))
                while len(am.received) < 3:
                    await asyncio.sleep(0.02)
                await first.close()
                assert hook.received == []
                # The next one starts at the committed offset (3), the webhook is up.
                await hook.start()
                second = DeliveryAgent(settings, send, store)
                await second.process(messages(settings, [("alerts", sent[3])], 3))
                await asyncio.wait_for(second.drain(), 30)
                await second.close()
            finally:
                store.close()
                await am.stop()
                await hook.stop()
    asyncio.run(run())
    assert [r.json()[0]["labels"]["alert_id"] for r in am.received] == [
        f"m.v1.concept_drift.{n}" for n in (1, 2, 3, 4)]          # nothing twice
    assert [r.json()["alert_id"] for r in hook.received] == [a["alert_id"] for a in sent]
    records = [(d["alert_id"], d["target"].split(":")[0], d["outcome"])
               for d in deliveries(settings)]
    assert sorted(records) == sorted((a["alert_id"], t, "delivered") for a in sent
                                     for t in ("alertmanager", "webhook-1"))


def test_a_4xx_is_dead_lettered_with_the_receivers_reason(settings):
    create_topics(settings)
    am, hook = Receiver(), Receiver(status=400)
    settings = settings.replace(alertmanager_url=am.url, alert_webhooks=hook.url)
    sent = alert()

    async def run():
        await am.start()
        await hook.start()
        try:
            await drive(settings, [messages(settings, [("alerts", sent)], 41)])
        finally:
            await am.stop()
            await hook.stop()
    asyncio.run(run())
    by_target = {d["target"]: d for d in deliveries(settings)}
    failed = by_target[f"webhook-1:127.0.0.1:{hook.port}"]
    assert (failed["outcome"], failed["status_code"], failed["attempts"]) == ("failed", 400, 1)
    assert failed["error"] == "HTTP 400: payload refused: unknown channel"
    assert by_target["alertmanager"]["outcome"] == "delivered"
    [dead] = [orjson.loads(r.value) for r in read_all(settings, "deadletter")]
    assert dead["topic"] == settings.topic("alerts") and dead["offset"] == 41
    assert dead["error"] == (f"receiver_refused: webhook-1:127.0.0.1:{hook.port}: "
                             "HTTP 400: payload refused: unknown channel")
    assert orjson.loads(dead["raw"])["alert_id"] == sent["alert_id"]


def test_silences_and_inhibition_hold_back_pushes_but_not_records(settings):
    create_topics(settings)
    hook = Receiver()
    settings = settings.replace(alert_webhooks=hook.url)
    target = f"webhook-1:127.0.0.1:{hook.port}"
    env = {"DRIFTLINE_REDIS_URL": settings.redis_url,
           "DRIFTLINE_REGISTRY_PREFIX": settings.registry_prefix}
    made = CliRunner().invoke(main, ["alerts", "silence", "--model", "m", "--kind",
                                     "data_drift", "--for", "1h", "--reason", "store rebuild",
                                     "--json"], env=env)
    assert made.exit_code == 0, made.output
    silence_id = orjson.loads(made.stdout)["id"]
    cause = alert("concept_drift", n=1, ts=100.0)
    request = {"request_id": "m.v1.concept_drift.1.retrain", "model": "m", "base_version": 1,
               "alert_id": cause["alert_id"], "reason": "drift", "ts": 150.0, "since": 100.0}
    silenced = alert("data_drift", feature="rooms", ts=120.0)
    inhibited = alert("concept_drift", n=2, ts=300.0)
    other_kind = alert("metric_threshold", ts=300.0)
    promoted = {"model": "m", "version": 2, "event": "promoted", "parent_version": 1,
                "request_id": request["request_id"], "metrics": {}, "ts": 400.0}
    after = alert("concept_drift", n=3, ts=900.0)

    async def run():
        await hook.start()
        try:
            await drive(settings, [
                messages(settings, [("alerts", cause), ("alerts", silenced)]),
                messages(settings, [("retrain", request), ("alerts", inhibited),
                                    ("alerts", other_kind)], 2),
                messages(settings, [("models", promoted), ("alerts", after)], 5)])
        finally:
            await hook.stop()
    asyncio.run(run())
    assert [r.json()["alert_id"] for r in hook.received] == [
        cause["alert_id"], other_kind["alert_id"], after["alert_id"]]
    records = {d["alert_id"]: d for d in deliveries(settings)}
    assert records[silenced["alert_id"]]["outcome"] == "silenced"
    assert records[silenced["alert_id"]]["error"].startswith(f"silence {silence_id} until ")
    assert records[silenced["alert_id"]]["error"].endswith(": store rebuild")
    assert (records[inhibited["alert_id"]]["outcome"],
            records[inhibited["alert_id"]]["error"]) == (
        "inhibited", "retrain request m.v1.concept_drift.1.retrain is open")
    assert all(records[a["alert_id"]]["outcome"] == "delivered" and
               records[a["alert_id"]]["target"] == target for a in (cause, other_kind, after))
    # The alerts themselves stay on the alerts topic: delivery writes none.
    assert read_all(settings, "alerts") == []


def test_firing_alerts_are_resent_to_alertmanager_until_they_resolve(settings):
    create_topics(settings)
    am = Receiver()
    settings = settings.replace(alertmanager_url=am.url, alert_resend_interval=30.0)
    firing, resolved = alert(ts=100.0), alert(status="resolved", ts=200.0)
    clock = [1_000.0]

    async def run():
        await am.start()
        try:
            async with agent_sender(settings) as send:
                store = SilenceStore.from_settings(settings)
                agent = DeliveryAgent(settings, send, store, clock=lambda: clock[0])
                await agent.process(messages(settings, [("alerts", firing)]))
                await agent.drain()
                clock[0] += 30
                first = await agent.resend()
                await agent.process(messages(settings, [("alerts", resolved)], 1))
                await agent.drain()
                second = await agent.resend()
                await agent.close()
                store.close()
                return first, second, agent.resends
        finally:
            await am.stop()
    first, second, resends = asyncio.run(run())
    assert (first, second, resends) == (1, 0, {"alertmanager": 1})
    pushes = [r.json() for r in am.received]
    assert [len(p) for p in pushes] == [1, 1, 1]  # firing, its re-send, the resolve
    assert pushes[1][0]["labels"] == pushes[0][0]["labels"]
    assert (pushes[0][0]["endsAt"], pushes[1][0]["endsAt"]) == ("1970-01-01T00:18:40Z",
                                                                "1970-01-01T00:19:10Z")
    # Only the real outcomes are records; re-sends are counted.
    assert len(deliveries(settings)) == 2


class ReceiverThread:
    """A Receiver on its own event loop, for a test that waits on a subprocess."""

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.receiver.start(), self.loop).result(10)
        return self.receiver

    def __exit__(self, *exc) -> None:
        asyncio.run_coroutine_threadsafe(self.receiver.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def wait_for(check, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.3)
    return check()


@pytest.mark.reliability
@pytest.mark.slow
@pytest.mark.kafka
def test_delivery_service_survives_kill_9_without_losing_an_alert(settings, worker_factory):
    create_topics(settings)
    with ReceiverThread(Receiver()) as hook:
        settings = settings.replace(alert_webhooks=hook.url)
        first = [alert(n=n, ts=100.0 * n) for n in (1, 2)]
        produce(settings, [("alerts", b"m", orjson.dumps(a)) for a in first])
        service = worker_factory(settings, "delivery", command="delivery")
        assert wait_for(lambda: len(hook.received) >= 2), service.log()
        service.kill()
        later = [alert(n=n, ts=100.0 * n) for n in (3, 4)]
        produce(settings, [("alerts", b"m", orjson.dumps(a)) for a in later])
        restarted = worker_factory(settings, "delivery", command="delivery")
        ids = [a["alert_id"] for a in first + later]
        assert wait_for(lambda: {r.json()["alert_id"] for r in hook.received} >= set(ids)), \
            restarted.log()
        assert wait_for(lambda: {d["alert_id"] for d in deliveries(settings)} >= set(ids))
        env = {"DRIFTLINE_KAFKA_URL": settings.kafka_url, "DRIFTLINE_REDIS_URL":
               settings.redis_url, "DRIFTLINE_GROUP_ID": settings.group_id}
        health = CliRunner().invoke(main, ["health", "--group", "delivery", "--json"], env=env)
        assert health.exit_code == 0, health.output
        assert orjson.loads(health.stdout)["checks"]["delivery"]["group"] == \
            f"{settings.group_id}-delivery"
        assert restarted.stop() == 0
    got = [r.json()["alert_id"] for r in hook.received]
    assert got[:2] == ids[:2] and set(got) == set(ids)  # at least once: a repeat may occur
    assert {d["outcome"] for d in deliveries(settings)} == {"delivered"}


@pytest.mark.reliability
def test_a_restarted_agent_rebuilds_open_requests_and_firing_alerts(settings):
    """State comes back from the partitions: a request opened before the restart still
    inhibits, and the alert that made it is re-sent to Alertmanager as firing."""
    create_topics(settings)
    am = Receiver()
    settings = settings.replace(alertmanager_url=am.url)
    q = partition_for(b"m", settings.partitions)
    cause = alert("concept_drift", n=1, ts=100.0)
    request = {"request_id": "m.v1.concept_drift.1.retrain", "model": "m", "base_version": 1,
               "alert_id": cause["alert_id"], "reason": "drift", "ts": 150.0, "since": 100.0}
    produce(settings, [("alerts", b"m", orjson.dumps(cause)),
                       ("retrain", b"m", orjson.dumps(request))], partition=q)
    later = alert("concept_drift", n=2, ts=300.0)

    async def run():
        await am.start()
        try:
            return await drive(settings, [messages(settings, [("alerts", later)], 1)],
                               then=lambda agent: agent.resend())
        finally:
            await am.stop()
    resent = asyncio.run(run())
    [record] = deliveries(settings)
    assert (record["alert_id"], record["outcome"]) == (later["alert_id"], "inhibited")
    assert resent == 1
    [[pushed]] = [r.json() for r in am.received]
    assert pushed["labels"]["alert_id"] == "m.v1.concept_drift.1"
