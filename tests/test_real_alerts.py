"""Issue 29: the alerts the real monitor makes, through every consumer.

tests/real_events.py runs the pure monitor (the code the monitor agent runs) over
drifting streams until it has made every alert kind, firing and resolved (``cleared``
and ``superseded``), per segment and model-wide, with ``attribution``, ``feature`` and
an unknown version, and with the names a producer may choose: a feature holding CR, LF
and ESC, an id of exactly 256 characters. Those alerts, as the agent writes them, and
its metrics records go through the same checks as the generated ones
(tests/test_alert_consumers.py): payloads, requests, ``alerts tail``, the trigger, the
Observatory and the API, the dashboard in Chromium; then, on the real broker and Valkey,
through ``DeliveryAgent.process`` to an Alertmanager stand-in and a webhook, through
``driftline alerts tail``, and beside the real registry's model events.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
from urllib.parse import unquote

import msgspec
import orjson
import pytest
import wire_strategies as ws
from click.testing import CliRunner
from hypothesis import given, settings
from kafka_io import agent_sender, as_messages, create_topics, produce, read_all
from real_events import HOSTILE_FEATURE, LONG_MODEL, monitor_output
from receivers import Receiver
from test_alert_consumers import (  # noqa: F401 - api is a fixture
    CORNERS,
    FIXED,
    Api,
    api,
    check_alertmanager,
    check_api,
    check_requests,
    check_tail,
    check_webhook,
    delivered,
    expected_open,
    fill,
)
from test_dashboard import BROWSER

from driftline import LinearModel, ModelRegistry
from driftline.agents.delivery import payload
from driftline.agents.delivery.agent import DeliveryAgent
from driftline.agents.delivery.inhibition import Inhibitor
from driftline.agents.delivery.silences import SilenceStore
from driftline.agents.monitor.config import MonitorConfig
from driftline.agents.retrain.policy import RetrainTrigger
from driftline.cli import main
from driftline.cli.ops import alert_line
from driftline.kafka import partition_for
from driftline.models.wire import ALERT, MODEL_EVENT, RETRAIN_REQUEST, encode, unbatch
from driftline.models.wire.events import MAX_ID_CHARS, Alert, as_dict
from driftline.observe import Observatory


@pytest.fixture(scope="module")
def real():
    return monitor_output()


def metrics_records(real) -> list[dict]:
    return [unbatch(raw)[0] for raw in real.metrics]


def test_the_monitor_makes_every_kind_status_reason_and_optional_field(real):
    alerts = real.structs()
    assert {a.kind for a in alerts} == ws.literal_values(Alert, "kind")
    assert {(a.status, a.reason) for a in alerts} == {
        ("firing", msgspec.UNSET), ("resolved", "cleared"), ("resolved", "superseded")}
    attributed = {a.kind for a in alerts if a.attribution}
    assert {"concept_drift", "metric_threshold"} <= attributed
    assert any(a.segment for a in alerts) and any(a.segment is None for a in alerts)
    assert any(a.feature == HOSTILE_FEATURE for a in alerts)
    assert any(HOSTILE_FEATURE == f.feature for a in alerts if a.attribution
               for f in a.attribution)
    assert any(a.version is None for a in alerts)
    # The long-named model and segment: ids at the wire's bound are hashed to fit, with
    # the firing and its resolve of one form (issue 30), so none is over it.
    assert 150 < max(len(a.alert_id) for a in alerts) <= MAX_ID_CHARS


def test_real_alerts_through_the_payloads_requests_and_alerts_tail(real):
    started: dict[str, float] = {}
    for alert in real.structs():
        episode = payload.episode_id(alert.alert_id)
        if alert.status == "firing":
            started[episode] = alert.ts
            fired = None
        else:
            fired = started.pop(episode)  # every resolve ends an episode that fired
        check_alertmanager(alert, now=alert.ts + 1.0, started=fired)
        check_webhook(alert)
        check_requests(alert, now=alert.ts + 1.0, started=fired)
        check_tail(alert)
    drifted = next(a for a in real.structs() if a.kind == "concept_drift" and a.attribution)
    body = orjson.loads(payload.webhook_body(delivered(drifted)))
    assert body["attribution"] == [{"feature": f.feature, "share": f.share}
                                   for f in drifted.attribution]
    hostile = next(a for a in real.structs() if a.feature == HOSTILE_FEATURE)
    assert "x0\\r\\nX-Injected: 1\\x1b[2J" in alert_line(delivered(hostile))
    assert payload.idempotency_key(hostile.alert_id) == \
        "shift.v1.data_drift.x0%0D%0AX-Injected: 1%1B[2J.1.firing"


def test_real_alerts_and_progress_through_the_trigger(real):
    """The trigger's policy with no cooldown: every firing concept_drift or
    metric_threshold alert whose episode does not resolve becomes a valid request once
    the monitor's progress records show 500 more pairs; a resolve drops it."""
    trig = RetrainTrigger(MonitorConfig.from_dict({"defaults": {"retrain": {
        "cooldown": 0.0, "max_per_hour": 100}}}), clock=lambda: 1.0)
    alerts = real.structs()
    requests = [r for a in alerts for r in trig.on_alert(delivered(a))]
    for record in metrics_records(real):
        requests += trig.on_metrics(record)
    valid = [RETRAIN_REQUEST.validate(r) for r in requests]
    resolved = {payload.episode_id(a.alert_id) for a in alerts if a.status == "resolved"}
    assert sorted(r.alert_id for r in valid) == sorted(
        a.alert_id for a in alerts if a.status == "firing"
        and a.kind in ("concept_drift", "metric_threshold")
        and payload.episode_id(a.alert_id) not in resolved)
    long_one = next(r for r in valid if r.model == LONG_MODEL)
    assert len(long_one.request_id) <= MAX_ID_CHARS
    assert all(r.since == next(a.ts for a in alerts if a.alert_id == r.alert_id)
               for r in valid)


def test_real_alerts_and_metrics_through_the_observatory_and_the_api(api, real):  # noqa: F811
    alerts = real.structs()
    check_api(api, alerts, metrics=metrics_records(real))
    obs = api.state.observatory
    assert {payload.episode_id(a["alert_id"]) for a in obs.open_alerts()} == set(
        expected_open(alerts))
    assert obs.series[("houses", 1)][-1][3] == 10_000  # n_scored, from the records


# --- the dashboard ---------------------------------------------------------------------------

async def dump_dom(url: str, profile) -> str:
    """The page's DOM after its scripts ran (flags of tests/test_dashboard.py); the
    server runs on this loop meanwhile."""
    process = await asyncio.create_subprocess_exec(
        BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={profile}", "--window-size=1280,1000",
        "--virtual-time-budget=6000", "--dump-dom", url,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    out, _ = await asyncio.wait_for(process.communicate(), 90)
    return out.decode()


def generated_alerts(n: int) -> list[Alert]:
    drawn: list[Alert] = []

    @settings(FIXED, max_examples=n)
    @given(ws.alert_streams())
    def draw(stream):
        drawn.extend(stream)

    draw()
    return drawn


@pytest.mark.skipif(BROWSER is None, reason="no Chromium here: .ci/run installs Debian's "
                                            "chromium package; apt-get install chromium")
def test_the_dashboard_renders_real_generated_and_corner_alerts(real, tmp_path):
    """Every alert is listed as text (never markup), every firing one marked on its
    model's chart; models "." and ".." (valid, but /api/models/. and /api/models/.. do
    not reach the API) are named in the status line and the other models still show."""
    api = Api()  # its own: the dashboard polls while the page lives  # noqa: F811
    dots = [msgspec.structs.replace(CORNERS[0], model=m, alert_id=f"{m}.1.firing")
            for m in (".", "..")]
    try:
        alerts = real.structs() + CORNERS + generated_alerts(15) + dots
        api.state.observatory = obs = Observatory()
        fill(obs, alerts, [], [])
        for record in metrics_records(real):
            obs.apply("metrics", record, ts=4000.0, partition=0)
        url = str(api.client.make_url("/"))
        pages = []  # the monitor view shows 10 models a page: every page, by its links
        while not pages or 'class="next"' in pages[-1]:
            assert len(pages) < 10, "the pager never ends"
            address = url + (f"#page={len(pages) + 1}" if pages else "")
            pages.append(api.loop.run_until_complete(dump_dom(address, tmp_path / "profile")))
    finally:
        api.close()
    dom = "".join(pages)
    (tmp_path / "dashboard.html").write_text(dom)
    status = re.search(r'<span class="status" id="status">([^<]*)</span>', pages[0])
    assert status and status.group(1).startswith("updated"), dom[-3000:]
    assert status.group(1).endswith(' · cannot read model ".", ".."'), status.group(1)
    models = [m for m in obs.models() if m not in (".", "..")]
    assert len(pages) == -(-len(obs.models()) // 10)  # the dot models take places too
    assert dom.count('<section class="model"') == len(models)
    shown = {m: [a for a in obs.recent_alerts(m, limit=50)] for m in models}
    items = re.findall(r'<li class="(firing|resolved)">', dom)
    assert len(items) == sum(min(12, len(a)) for a in shown.values())
    charted = {m for m, _ in obs.series}
    markers = dom.count('class="alert-marker"')
    assert markers == sum(a["status"] == "firing" for m in charted for a in shown[m])
    assert "</script><b>" not in dom and "&lt;/script&gt;&lt;b&gt;" in dom  # text, not markup
    assert 'data-kind="concept_drift"' in dom and 'data-segment="dé"' in dom


# --- on the real broker and Valkey -----------------------------------------------------------

def alert_messages(settings, real, first_offset: int = 0):
    """The real alerts as Faust hands them to the delivery agent: keyed by model, on the
    model's partition."""
    out = []
    for i, raw in enumerate(real.alerts):
        key = orjson.loads(raw)["model"].encode()
        out += as_messages([raw], topic=settings.topic("alerts"), key=key,
                           partition=partition_for(key, settings.partitions),
                           first_offset=first_offset + i)
    return out


@pytest.mark.integration
def test_real_alerts_reach_alertmanager_and_the_webhook_with_their_attribution(settings, real):
    create_topics(settings)
    am, hook = Receiver(), Receiver()
    settings = settings.replace(alertmanager_url=am.url, alert_webhooks=hook.url + "/hook",
                                webhook_secret="k-9", dashboard_url="http://dash.example/")

    async def run():
        await am.start()
        await hook.start()
        try:
            async with agent_sender(settings) as send:
                store = SilenceStore.from_settings(settings)
                try:
                    agent = DeliveryAgent(settings, send, store)
                    await agent.process(alert_messages(settings, real))
                    await agent.drain()  # each target's lane delivers on its own
                    await agent.close()
                    return agent
                finally:
                    store.close()
        finally:
            await am.stop()
            await hook.stop()
    agent = asyncio.run(run())
    sent = [orjson.loads(raw) for raw in real.alerts]
    bodies = [r.json() for r in hook.received]
    for body in bodies:
        assert body.pop("text")
    # every alert, every field, attribution included
    assert sorted(bodies, key=orjson.dumps) == sorted(sent, key=orjson.dumps)
    with_attribution = [b for b in bodies if "attribution" in b]
    assert {b["kind"] for b in with_attribution} >= {"concept_drift", "metric_threshold"}
    assert all(f.keys() == {"feature", "share"} for b in with_attribution
               for f in b["attribution"])
    assert sorted(unquote(r.headers["Idempotency-Key"]) for r in hook.received) == sorted(
        a["alert_id"] for a in sent)
    pushed = [element for r in am.received for element in r.json()]
    assert len(pushed) == len(sent)
    assert {e["labels"]["alertname"] for e in pushed} == ws.literal_values(Alert, "kind")
    assert any(e["labels"].get("feature") == HOSTILE_FEATURE for e in pushed)
    records = [orjson.loads(r.value) for r in read_all(settings, "alert_deliveries")]
    assert len(records) == 2 * len(sent) and {r["outcome"] for r in records} == {"delivered"}
    assert agent.outcomes[("alertmanager", "delivered")] == len(sent)


@pytest.mark.integration
def test_alerts_tail_prints_every_real_and_corner_alert(settings, real):
    create_topics(settings)
    raws = real.alerts + [encode(c) for c in CORNERS]
    for raw in raws:
        key = orjson.loads(raw)["model"].encode()
        produce(settings, [("alerts", key, raw)],
                partition=partition_for(key, settings.partitions))
    env = {"DRIFTLINE_KAFKA_URL": settings.kafka_url,
           "DRIFTLINE_TOPIC_PREFIX": settings.topic_prefix,
           "DRIFTLINE_PARTITIONS": str(settings.partitions)}
    decoded = sorted((as_dict(ALERT.decode_one(raw)) for raw in raws), key=lambda a: a["ts"])
    text = CliRunner().invoke(main, ["alerts", "tail", "-n", "1000"], env=env)
    assert text.exit_code == 0, text.output
    assert sorted(text.stdout.removesuffix("\n").split("\n")) == sorted(
        alert_line(a) for a in decoded)
    as_json = CliRunner().invoke(main, ["alerts", "tail", "-n", "1000", "--json"], env=env)
    assert as_json.exit_code == 0, as_json.output
    # JSON lines end with "\n" only: U+2028 may stand unescaped in a JSON string.
    assert sorted(as_json.stdout.removesuffix("\n").split("\n")) == sorted(
        orjson.dumps(a).decode() for a in decoded)


@pytest.mark.integration
def test_the_registrys_model_events_and_the_triggers_requests_beside_real_alerts(
        settings, real, api):  # noqa: F811
    """The real registry (Valkey) records a retrain's outcome; its model events close the
    trigger's requests in the delivery agent's inhibitor, and the API shows them."""
    events: list[dict] = []
    registry = ModelRegistry.from_url(settings.redis_url, prefix=settings.registry_prefix,
                                      on_event=events.append)
    trig = RetrainTrigger(MonitorConfig.from_dict({"defaults": {"retrain": {
        "min_pairs": 0, "cooldown": 0.0, "max_per_hour": 100}}}), clock=lambda: 1.0)
    alerts = real.structs()
    requests = [r for a in alerts for r in trig.on_alert(delivered(a))]
    assert requests
    model = LinearModel([2.0], 0.0, ["x0"])
    try:
        for request in requests:
            name = request["model"]
            if not registry.versions(name):
                registry.promote(name, registry.register(name, model, metrics={"mse": 1.0}))
            made = registry.register(name, model, metrics={"mse": 0.5},
                                     meta={"parent_version": request["base_version"]},
                                     request_id=request["request_id"])
            registry.promote(name, made)
        registry.rollback(requests[0]["model"], reason="canary")
        registry.register(requests[0]["model"], model, metrics={"mse": 9.0},
                          rejected="lost on the holdout", request_id="r-lost")
    finally:
        registry.close()
    model_events = [MODEL_EVENT.validate(e) for e in events]  # what the sink publishes
    assert {e.event for e in model_events} == {"registered", "promoted", "rolled_back",
                                               "rejected"}
    inhibitor = Inhibitor()
    for alert in alerts:
        inhibitor.on_alert(delivered(alert))
    for request in requests:
        inhibitor.on_request(as_dict(RETRAIN_REQUEST.validate(request)))
    assert set(inhibitor.open) == {r["request_id"] for r in requests}
    for event in model_events:
        inhibitor.on_model_event(as_dict(event))
    assert inhibitor.open == {}  # each request closed by its version's promotion
    later = msgspec.structs.replace(next(a for a in alerts if a.kind == "concept_drift"),
                                    alert_id="houses.v1.concept_drift.9.firing", ts=2e9)
    assert inhibitor.inhibited_by(delivered(later)) is None
    check_api(api, alerts, model_events, metrics=metrics_records(real))
