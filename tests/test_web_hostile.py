"""Issue 30: the worker's HTTP server against other sites, rebound host names and
malformed records, on loopback without a token (the default), against a live worker;
and the access rules and /healthz's probe as units."""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.request
from types import SimpleNamespace

import orjson
import pytest
from conftest import WorkerProcess, namespace
from kafka_io import create_topics, produce
from test_delivery import alert
from test_web import get, wait_until

from driftline import LinearModel, ModelRegistry
from driftline.ports import free_port
from driftline.settings import Settings
from driftline.web import Health, health_checks
from driftline.web_access import Access

EVIL = "https://evil.example"
SILENCE = {"model": "houses", "duration": "366d", "reason": "x"}


def call(method: str, url: str, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, method=method, data=body, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture(scope="module")
def open_web(stack, tmp_path_factory):
    """A worker on loopback with no token, and a model named ``silence`` (version 1)."""
    settings = namespace(stack).replace(web_port=free_port(), metrics_interval=0.5)
    create_topics(settings)
    registry = ModelRegistry.from_url(settings.redis_url, prefix=settings.registry_prefix)
    registry.register("silence", LinearModel([1.0], 0.0, ["x"]))
    worker = WorkerProcess(settings, tmp_path_factory.mktemp("hostile") / "worker.log").start()
    base = f"http://127.0.0.1:{settings.web_port}"
    try:
        assert wait_until(lambda: get(f"{base}/healthz")[0] == 200), worker.log()
        yield base, settings, registry, worker
    finally:
        worker.stop()
        registry.close()


def silences(base: str) -> list[dict]:
    return call("GET", f"{base}/api/silences")[1]["silences"]


@pytest.mark.integration
def test_a_cross_site_form_cannot_make_a_silence(open_web):
    """What the review did: a form-shaped text/plain POST from another site made a
    366-day silence (201). A form cannot send application/json."""
    base, *_ = open_web
    for content_type in ("text/plain", "application/x-www-form-urlencoded",
                         "multipart/form-data; boundary=x"):
        status, answer = call("POST", f"{base}/api/silences", orjson.dumps(SILENCE),
                              {"Content-Type": content_type, "Origin": EVIL})
        assert status == 415 and "application/json" in answer["error"], content_type
    assert silences(base) == []


@pytest.mark.integration
def test_writes_from_another_origin_are_refused_and_same_origin_ones_work(open_web):
    base, settings, *_ = open_web
    json_type = {"Content-Type": "application/json"}
    for origin in (EVIL, "null", "http://127.0.0.1.evil.example", f"http://localhost:{free_port()}"):
        status, answer = call("POST", f"{base}/api/silences", orjson.dumps(SILENCE),
                              {**json_type, "Origin": origin})
        assert status == 403 and "forbidden" in answer["error"], origin
    assert silences(base) == []
    # the dashboard's own origin, and a client that sends none (curl, a script)
    status, mine = call("POST", f"{base}/api/silences", orjson.dumps(SILENCE),
                        {**json_type, "Origin": base})
    assert status == 201, mine
    status, theirs = call("POST", f"{base}/api/silences", orjson.dumps(SILENCE), json_type)
    assert status == 201, theirs
    one, other = mine["silence"]["id"], theirs["silence"]["id"]
    assert call("DELETE", f"{base}/api/silences/{one}", headers={"Origin": EVIL})[0] == 403
    assert call("DELETE", f"{base}/api/silences/{one}", b"{}",
                {"Content-Type": "text/plain"})[0] == 415
    assert call("DELETE", f"{base}/api/silences/{one}", headers={"Origin": base}) == (
        200, {"ended": one})
    assert call("DELETE", f"{base}/api/silences/{other}") == (200, {"ended": other})


@pytest.mark.integration
def test_a_rebound_host_name_gets_421(open_web):
    """DNS rebinding: evil.example's page, its name now pointing at 127.0.0.1, asks with
    its own Host. Nothing is answered but /healthz (which says only ok/unavailable)."""
    base, settings, *_ = open_web
    port = settings.web_port
    for method, path, body in (("GET", "/", None), ("GET", "/api/models", None),
                               ("GET", "/api/silences", None), ("GET", "/metrics", None),
                               ("POST", "/api/silences", orjson.dumps(SILENCE))):
        for host in (f"rebind.evil.example:{port}", "rebind.evil.example",
                     f"127.0.0.1:{port + 1}"):
            status, answer = call(method, base + path, body,
                                  {"Host": host, "Content-Type": "application/json"})
            assert status == 421 and "DRIFTLINE_WEB_ALLOWED_HOSTS" in answer["error"], \
                (path, host)
    assert silences(base) == []
    for host in (f"localhost:{port}", f"LOCALHOST:{port}", f"[::1]:{port}"):
        assert call("GET", f"{base}/api/models", headers={"Host": host})[0] == 200, host
    status, answer = call("GET", f"{base}/healthz", headers={"Host": "rebind.evil.example"})
    assert status == 200 and answer["checks"]["kafka"] == "ok"


@pytest.mark.integration
def test_a_silence_id_names_only_a_silence(open_web):
    """``DELETE /api/silences/v:1`` deleted version 1 of the model named ``silence``."""
    base, _, registry, _ = open_web
    for bad in ("v:1", "next", "versions", "0123456789AB"):
        status, answer = call("DELETE", f"{base}/api/silences/{bad}")
        assert status == 400 and "12 hex digits" in answer["error"], bad
    assert [v.version for v in registry.versions("silence")] == [1]
    assert call("DELETE", f"{base}/api/silences/0123456789ab")[0] == 404


@pytest.mark.integration
def test_malformed_records_are_skipped_and_counted_not_a_crash_loop(open_web):
    """One malformed alerts record restarted the dashboard's reader every 2 s, for ever:
    each restart read it again. Now each is skipped, counted, and what follows shows."""
    base, settings, _, worker = open_web
    good = alert("concept_drift", model="poisoned")
    bad = {"alerts": [orjson.dumps({"model": "poisoned", "status": "firing"}),
                      orjson.dumps({**good, "alert_id": 5}),
                      b"{not json", b"[1, 2]"],
           "metrics": [orjson.dumps({"model": "poisoned", "version": 1, "shadow": 5}),
                       orjson.dumps({"model": "poisoned", "version": "one"})],
           "models": [orjson.dumps({"model": "poisoned", "version": 0})],
           "alert_deliveries": [orjson.dumps({"alert_id": "a", "target": 7})]}
    produce(settings, [(kind, b"poisoned", value) for kind, values in bad.items()
                       for value in values] + [("alerts", b"poisoned", orjson.dumps(good))])

    def shown():
        status, answer = call("GET", f"{base}/api/alerts?model=poisoned")
        return status == 200 and [a["alert_id"] for a in answer["alerts"]] == [good["alert_id"]]
    assert wait_until(shown, 30), worker.log()
    counted = call("GET", f"{base}/api/models")[1]["bad_records"]
    assert counted == {settings.topic("alerts"): 5, settings.topic("metrics"): 2,
                       settings.topic("models"): 1, settings.topic("alert_deliveries"): 1}
    text = get(f"{base}/metrics")[1].decode()
    assert f'driftline_bad_records_total{{topic="{settings.topic("alerts")}"}} 5.0' in text
    assert "reader failed" not in worker.log()


# --- the rules as units ---------------------------------------------------------------

HEADERS = {"Host": "127.0.0.1:6066"}


def refusal(access: Access, method="GET", path="/api/models", headers=None, query=None,
            body=False, content_type="application/octet-stream"):
    answer = access.refusal(method, path, {**HEADERS, **(headers or {})}, query, body,
                            content_type)
    return answer and answer[0]


def test_the_token_in_a_header_any_case_and_in_the_query_only_for_the_page():
    access = Access(Settings(api_token="a-token-of-16-chars"))
    for header in ("Bearer a-token-of-16-chars", "bearer a-token-of-16-chars",
                   "BEARER  a-token-of-16-chars "):
        assert refusal(access, headers={"Authorization": header}) is None, header
    for header in ("Basic a-token-of-16-chars", "a-token-of-16-chars", "Bearer", "Bearer x"):
        assert refusal(access, headers={"Authorization": header}) == 401, header
    assert refusal(access, path="/", query="a-token-of-16-chars") is None
    for method, path in (("GET", "/api/models"), ("GET", "/metrics"),
                         ("POST", "/api/silences"), ("DELETE", "/api/silences/x")):
        assert refusal(access, method, path, query="a-token-of-16-chars") == 401, path


def test_with_a_token_writes_need_json_but_any_origin_may_carry_the_token():
    access = Access(Settings(api_token="a-token-of-16-chars"))
    auth = {"Authorization": "Bearer a-token-of-16-chars", "Origin": EVIL}
    assert refusal(access, "POST", "/api/silences", auth, body=True,
                   content_type="application/json") is None
    assert refusal(access, "POST", "/api/silences", auth, body=True,
                   content_type="text/plain") == 415
    assert refusal(access, "DELETE", "/api/silences/x", auth) is None


def test_allowed_hosts_are_configurable_and_star_is_any():
    named = Access(Settings(web_allowed_hosts="dash.example.com,10.0.0.5:80"))
    assert refusal(named, headers={"Host": "dash.example.com:8443"}) is None
    assert refusal(named, headers={"Host": "10.0.0.5:80"}) is None
    assert refusal(named, headers={"Host": "10.0.0.5:81"}) == 421
    assert refusal(named) == 421  # the defaults are replaced, not added to
    assert refusal(Access(Settings(web_allowed_hosts="*")),
                   headers={"Host": "anything"}) is None
    assert refusal(Access(Settings()), headers={"Host": ""}) == 421


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_healthz_says_unavailable_and_nothing_about_why():
    """/healthz sent the connection errors (hosts, ports, errno) to anyone who asked."""
    kafka, redis_port = closed_port(), closed_port()
    settings = Settings(kafka_url=f"kafka://127.0.0.1:{kafka}",
                        redis_url=f"redis://:pw@127.0.0.1:{redis_port}/0")
    app = SimpleNamespace(consumer=SimpleNamespace(assignment=lambda: set()))
    answer = asyncio.run(health_checks(app, settings))  # type: ignore[arg-type]
    assert answer == {"ok": False, "assigned_partitions": 0, "checks": {
        "kafka": "unavailable", "redis": "unavailable", "consumer": "unavailable"}}
    text = json.dumps(answer)
    assert str(kafka) not in text and str(redis_port) not in text


def test_healthz_probes_once_for_many_requests_and_again_after_its_ttl(monkeypatch):
    probes: list[float] = []

    async def probe(app, settings, client=None):
        probes.append(now[0])
        await asyncio.sleep(0.05)  # the other requests arrive meanwhile
        return {"ok": True, "checks": {}, "assigned_partitions": 1}

    monkeypatch.setattr("driftline.web.health_checks", probe)
    now = [100.0]
    health = Health(None, Settings(), ttl=3.0, clock=lambda: now[0])  # type: ignore[arg-type]

    async def bursts() -> None:
        async def burst() -> list[dict]:
            return await asyncio.gather(*(health.answer() for _ in range(50)))

        assert all(a["ok"] for a in await burst())
        assert probes == [100.0]
        now[0] = 102.5
        await burst()
        assert probes == [100.0]
        now[0] = 103.0
        await burst()
        assert probes == [100.0, 103.0] and health.probes == 2

    try:
        asyncio.run(bursts())
    finally:
        health.close()
