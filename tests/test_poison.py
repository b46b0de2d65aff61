"""No record can jam a partition (issue 29), on the real processes: every agent fails on
one record, every time (tests/inject/sitecustomize.py), and that record goes to the
dead-letter topic as ``internal_error`` while the records after it go on. And a dead
letter that could not be sent held the join's partition forever: it now always fits."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import numpy as np
import orjson
import pytest
from kafka_io import create_topics, produce, read_all, read_events
from receivers import Receiver
from test_delivery_agent import ReceiverThread, wait_for

from driftline import LinearModel, ModelRegistry
from driftline.kafka import partition_for
from driftline.models.wire import ALERT, encode
from driftline.ports import free_port

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

INJECT = Path(__file__).resolve().parent / "inject"
MARK = "POISON"


def by_home(settings, topic: str, events: list[dict]) -> None:
    """Single-event messages, each on its prediction id's home partition, in order."""
    for ev in events:
        p = partition_for(ev["prediction_id"].encode(), settings.partitions)
        produce(settings, [(topic, ev["prediction_id"].encode(), orjson.dumps(ev))],
                partition=p)


def pairs(prefix: str, n: int, model: str = "m") -> tuple[list[dict], list[dict]]:
    predictions = [{"prediction_id": f"{prefix}-{i}", "model": model, "version": 1,
                    "prediction": float(i), "features": {"x": float(i)}, "ts": 1_700_000_000.0 + i}
                   for i in range(n)]
    labels = [{"prediction_id": p["prediction_id"], "label": p["prediction"] + 0.5,
               "ts": p["ts"] + 1} for p in predictions]
    return predictions, labels


def alert(model: str, n: int = 1) -> bytes:
    return encode(ALERT.validate({
        "alert_id": f"{model}.v1.concept_drift.{n}.firing", "model": model, "version": 1,
        "kind": "concept_drift", "status": "firing", "severity": "critical",
        "detector": "adwin", "feature": None, "segment": None, "ts": 1_700_000_100.0,
        "metrics": {"rolling_mse": 2.0, "baseline_mse": 1.0, "n_scored": 30},
        "message": "Rolling MSE doubled.",
        "attribution": [{"feature": "x", "share": 1.0}]}))


def request(model: str) -> bytes:
    return orjson.dumps({"request_id": f"{model}.v1.concept_drift.1.retrain", "model": model,
                         "base_version": 1, "alert_id": f"{model}.v1.concept_drift.1.firing",
                         "reason": "test", "ts": 1_700_000_100.0})


def internal_errors(settings) -> dict[str, list[dict]]:
    """Dead letters of kind internal_error, by the agent named in their error."""
    found: dict[str, list[dict]] = {}
    for r in read_all(settings, "deadletter"):
        letter = orjson.loads(r.value)
        if letter["error"].startswith("internal_error: driftline."):
            agent = letter["error"].split(":")[1].strip()
            found.setdefault(agent, []).append(letter)
    return found


def metric(text: str, name: str, agent: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(f'{name}{{agent="{agent}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return None


@pytest.mark.slow
@pytest.mark.parametrize("batch_delivery", [True, False], ids=["batches", "faust-streams"])
def test_each_agent_dead_letters_the_record_it_fails_on_and_goes_on(
        settings, worker_factory, monkeypatch, batch_delivery):
    assert partition_for(b"m", settings.partitions) != partition_for(f"m-{MARK}".encode(),
                                                                     settings.partitions)
    monkeypatch.setenv("PYTHONPATH", str(INJECT))
    monkeypatch.setenv("POISON_MARK", MARK)
    create_topics(settings)
    registry = ModelRegistry.from_url(settings.redis_url, prefix=settings.registry_prefix)
    v1 = registry.register("m", LinearModel(np.array([1.0]), 0.0, ["x"]), metrics={"mse": 0.25})
    registry.promote("m", v1)
    web = free_port()
    with ReceiverThread(Receiver()) as hook:
        s = settings.replace(alert_webhooks=hook.url + "/hook", metrics_interval=0.5,
                             batch_delivery=batch_delivery)
        worker = worker_factory(s.replace(web_port=web), "worker")
        trainer = worker_factory(s.replace(group_id=s.trainer_group_id), "trainer", "trainer")
        delivery = worker_factory(s, "delivery", "delivery")
        before_p, before_l = pairs("a", 10)
        after_p, after_l = pairs("b", 20)
        poison_p, poison_l = pairs(f"a-{MARK}", 1)  # the join fails on its id
        other_p, other_l = pairs("q", 5, model=f"m-{MARK}")  # the monitor fails on its model
        by_home(s, "predictions", before_p + poison_p + after_p + other_p)
        by_home(s, "labels", before_l + poison_l + after_l + other_l)
        # The trigger and delivery fail on m-POISON's alert; an invalid one follows it.
        produce(s, [("alerts", f"m-{MARK}".encode(), alert(f"m-{MARK}")),
                    ("alerts", f"m-{MARK}".encode(), b"{not json"),
                    ("alerts", b"m", alert("m"))])
        produce(s, [("retrain", f"m-{MARK}".encode(), request(f"m-{MARK}")),
                    ("retrain", b"m", request("m"))])

        agents = ("driftline.join", "driftline.monitor", "driftline.trigger",
                  "driftline.delivery", "driftline.trainer")
        logs = lambda: "".join(f"\n--- {w.command}\n{w.log()}"  # noqa: E731
                               for w in (worker, trainer, delivery))
        assert wait_for(lambda: set(internal_errors(s)) >= set(agents)
                        and len(internal_errors(s)["driftline.join"]) >= 2, 120), \
            (internal_errors(s).keys(), logs())
        dead = internal_errors(s)
        # The join's are the poisoned prediction and its label, and only those.
        joined = dead["driftline.join"]
        assert sorted((d["topic"].rsplit(".", 1)[1], orjson.loads(d["raw"])["prediction_id"])
                      for d in joined) == [("labels", f"a-{MARK}-0"),
                                           ("predictions", f"a-{MARK}-0")]
        assert all("injected failure" in d["error"] for d in joined)
        # Every record after each poison went on: all 30 pairs of m scored once, ...
        assert wait_for(lambda: len(read_events(s, "scored")) >= 35, 60), logs()
        scored = [p["prediction_id"] for p in read_events(s, "scored")]
        good = [p["prediction_id"] for p in before_p + after_p + other_p]
        assert sorted(scored) == sorted(good)
        # ... the monitor counts them, ...
        def m_scored():
            records = [orjson.loads(r.value) for r in read_all(s, "metrics")]
            return max([r["n_scored"] for r in records if r["model"] == "m"], default=0)
        assert wait_for(lambda: m_scored() == 30, 60), logs()
        # ... delivery pushed m's alert, and with the trigger refused the invalid record ...
        assert wait_for(lambda: [r.json()["model"] for r in hook.received] == ["m"], 60)

        def refused_invalid() -> int:
            return sum(1 for r in read_all(s, "deadletter")
                       if orjson.loads(r.value)["error"].startswith("invalid_json"))
        assert wait_for(lambda: refused_invalid() == 2, 60), logs()
        # ... and the trainer handled m's request (a new version, or a reason it could not).
        rid = "m.v1.concept_drift.1.retrain"

        def trained() -> bool:
            events = [orjson.loads(r.value) for r in read_all(s, "models")]
            letters = [orjson.loads(r.value) for r in read_all(s, "deadletter")]
            return any(e.get("request_id") == rid for e in events) or any(
                d["error"].startswith("training_failed") and rid in d["raw"] for d in letters)
        assert wait_for(trained, 90), logs()
        # Counted where Prometheus looks, and every process still runs.
        def counted() -> bool:
            with urllib.request.urlopen(f"http://127.0.0.1:{web}/metrics", timeout=10) as r:
                text = r.read().decode()
            dead = internal_errors(s)
            return all(metric(text, "driftline_internal_errors_total", agent) == len(dead[agent])
                       for agent in ("driftline.join", "driftline.monitor", "driftline.trigger"))
        assert wait_for(counted, 30)
        dead = internal_errors(s)
        assert all(w.alive() for w in (worker, trainer, delivery)), logs()
        print("\ninternal_error dead letters:",
              {agent: len(letters) for agent, letters in sorted(dead.items())})
    registry.close()


def test_a_dead_letter_of_a_megabyte_field_name_fits_and_the_partition_goes_on(
        settings, worker_factory):
    """The review's input: a prediction of ~1 MB whose one unknown field name is ~1 MB.
    Its error text repeated the name: 1,131,428 bytes, over the producer's 1,114,112, so
    the join's batch was retried every 5 s forever and 0 of 20 pairs after it scored."""
    create_topics(settings)
    worker = worker_factory(settings)
    name = "f" * 1_000_000
    big = b'{"prediction_id":"big","model":"m","prediction":1.0,"%s":1}' % name.encode()
    assert len(big) <= settings.max_message_bytes
    p = partition_for(b"big", settings.partitions)
    produce(settings, [("predictions", b"big", big)], partition=p)
    predictions, labels = pairs("after", 20)
    by_home(settings, "predictions", predictions)
    by_home(settings, "labels", labels)
    assert wait_for(lambda: len(read_events(settings, "scored")) >= 20, 60), worker.log()
    [letter] = [r for r in read_all(settings, "deadletter")]
    assert len(letter.key) + len(letter.value) < settings.max_message_bytes + 65_536
    value = orjson.loads(letter.value)
    assert value["error"].startswith("unknown_field") and len(value["error"]) < 2_100
    assert value["raw"].encode() == big  # with the error cut, the input itself fits
    assert sorted(e["prediction_id"] for e in read_events(settings, "scored")) == sorted(
        e["prediction_id"] for e in predictions)
    time.sleep(1)
    assert worker.alive()
