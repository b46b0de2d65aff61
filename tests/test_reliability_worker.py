"""A worker killed with SIGKILL three times, and partitions handed between two workers:
every labeled prediction scored exactly once, the monitor's numbers those of an
uninterrupted run, every alert published once, every refused pair dead-lettered."""

from __future__ import annotations

import asyncio
import random
import time

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from kafka_io import create_topics, produce, read_all, read_events
from simulate import stream
from test_classifiers import zoo_pairs
from test_monitor import latest_metrics

from driftline.agents.monitor.config import MonitorConfig
from driftline.agents.monitor.core import Monitor
from driftline.agents.monitor.partition import PartitionMonitor
from driftline.kafka import client_options, group_states, partition_for

pytestmark = [pytest.mark.integration, pytest.mark.reliability]


def batched(settings, events, topic, per_message=100):
    """Events as batch messages, each on its events' home partition (as the Publisher
    sends them); ``per_message=1``: single-event messages (JSON objects)."""
    homes: dict[int, list[bytes]] = {}
    for ev in events:
        homes.setdefault(partition_for(ev["prediction_id"].encode(), settings.partitions),
                         []).append(orjson.dumps(ev))
    out = []
    for p, encoded in sorted(homes.items()):
        for i in range(0, len(encoded), per_message):
            run = encoded[i:i + per_message]
            out.append((p, run[0] if per_message == 1 else b"[" + b",".join(run) + b"]"))
    return [(topic, None, value, p) for p, value in out]


def send(settings, messages):
    by_partition: dict[int, list] = {}
    for topic, key, value, p in messages:
        by_partition.setdefault(p, []).append((topic, key, value))
    for p, msgs in by_partition.items():
        produce(settings, msgs, partition=p)


def labels_of(pairs):
    return [{"prediction_id": p["prediction_id"], "label": p["label"], "ts": p["label_ts"]}
            for p in pairs]


def progress(settings) -> int:
    m = latest_metrics(settings)
    return m["n_predictions"] + m["n_scored"] if m else 0


def wait_until(condition, timeout=90.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def members(settings) -> int:
    """Members of the worker group once it is Stable (0 while it rebalances)."""
    async def ask():
        admin = AIOKafkaAdminClient(**client_options(settings))
        await admin.start()
        try:
            state, n = (await group_states(admin, [settings.group_id]))[settings.group_id]
        finally:
            await admin.close()
        return n if state == "Stable" else 0
    return asyncio.run(ask())


def assert_scored_once(settings, pairs):
    ids = [p["prediction_id"] for p in read_events(settings, "scored")]
    assert len(set(ids)) == len(pairs), f"{len(pairs) - len(set(ids))} labeled ids never scored"
    assert len(ids) == len(pairs), f"{len(ids) - len(set(ids))} pairs scored twice"
    assert set(ids) == {p["prediction_id"] for p in pairs}


START = 1_700_000_000.0  # simulate.stream's first prediction time


def two_models(n_m: int, n_zoo: int, n_bad: int, seed: int):
    """``stream``'s regression model ``m`` (its drift at 10,000) interleaved by time with
    ``zoo_pairs``' multiclass ``zoo`` over the same span, and ``n_bad`` pairs of each
    that do not fit their task (``zoo`` given a number for a label: ``number_label``;
    ``m`` a class: ``class_label``) at random places. Returns the predictions and labels
    in time order, and the ids of the refused pairs by model."""
    predictions, pairs = stream(n_m, seed=seed, drift_at=10_000)
    labels = labels_of(pairs)
    zoo_p, zoo_l = zoo_pairs(n_zoo, seed=seed)
    step = 0.01 * n_m / n_zoo
    for i, (p, lab) in enumerate(zip(zoo_p, zoo_l)):
        p["ts"], lab["ts"] = START + i * step, START + i * step + 1.0
    rng = random.Random(seed)
    bad: dict[str, list[str]] = {"m": [], "zoo": []}
    extra_p, extra_l = [], []
    for k in range(n_bad):
        for model, source, wrong in (("m", predictions, "cat"), ("zoo", zoo_p, 1.0)):
            base = source[rng.randrange(len(source))]
            pid = f"{model}-bad-{k}"
            bad[model].append(pid)
            extra_p.append({**base, "prediction_id": pid})
            extra_l.append({"prediction_id": pid, "label": wrong, "ts": base["ts"] + 1.0})

    def by_ts(events):
        return sorted(events, key=lambda e: e["ts"])  # stable: ties keep their order
    return (by_ts(predictions + zoo_p + extra_p), by_ts(labels + zoo_l + extra_l), bad)


MULTICLASS_TOML = '[models.zoo]\ntask = "multiclass"\n'
# The multiclass numbers a metrics record carries, each of which the offline run must match.
ZOO_KEYS = ["task", "n_scored", "n_predictions", "rolling_mse", "rolling_rmse", "rolling_mae",
            "rolling_r2", "rolling_accuracy", "rolling_log_loss", "rolling_macro_f1",
            "rolling_weighted_f1", "per_class", "baseline_mse", "drift_detections",
            "estimated_accuracy", "estimated_macro_f1", "estimated_mse",
            "estimated_baseline_mse", "refused_pairs"]


def latest_by_model(settings) -> dict[str, dict]:
    """Each model's latest metrics record, from one read of the topic."""
    return {m["model"]: m for m in (orjson.loads(r.value)
                                    for r in read_all(settings, "metrics"))}


def flat(record: dict, keys: list[str]) -> dict:
    """``record``'s ``keys``, nested dicts flattened (``per_class.cat.recall``), for
    pytest.approx, which compares no nested dict."""
    out = {}
    for k in keys:
        v = record[k]
        if isinstance(v, dict):
            out.update({f"{k}.{sub}": x for sub, x in flat(v, list(v)).items()})
        else:
            out[k] = v
    return out


@pytest.mark.kafka
@pytest.mark.parametrize("per_message", [100, 1], ids=["batches", "single-event"])
def test_kill_9_three_times_at_random_points_changes_nothing(settings, worker_factory,
                                                             per_message, tmp_path):
    """A regression model and a multiclass one (class predictions with probabilities,
    class labels: the monitor's other path), with pairs that fit neither model's task
    among them; the worker killed three times. Every pair of both scored once, each
    model's numbers those of an offline run over the same pairs, every alert published
    once, every refused pair counted once and dead-lettered."""
    # One partition: the order of the pairs is then fixed by the input, so the offline
    # run over the same order is the uninterrupted run. Single-event messages: a
    # re-delivered batch's predictions reach the monitor as one element of many source
    # offsets, which may overlap the last one it applied.
    config = tmp_path / "monitor.toml"
    config.write_text(MULTICLASS_TOML)
    settings = settings.replace(partitions=1, metrics_interval=0.3, monitor_config=str(config))
    create_topics(settings)
    # As many events as the regression-only stream of 50,000 pairs had: 45,000 of m,
    # 5,000 of zoo, 12 refused of each.
    n, n_zoo, n_bad = 45_000, 5_000, 12
    # The drift comes early enough that the first alert leaves tens of thousands of events
    # to go: the third kill, after it, still lands mid-stream on a fast worker.
    predictions, labels, bad = two_models(n, n_zoo, n_bad, seed=31)
    rng = random.Random(31)
    # Two kills at random points of the stream (m's progress), the third at a random point
    # after the first alert is out, so that a restart has alerts to replay and not repeat.
    points = [rng.uniform(0.1, 0.3) * 2 * n, rng.uniform(0.35, 0.6) * 2 * n]
    # The input goes in four parts, the next one after each kill, so a worker fast enough
    # to finish the stream between two looks at its progress is still killed before the
    # end of it (each part ends past the point its kill waits for).
    messages = (batched(settings, predictions, "predictions", per_message)
                + batched(settings, labels, "labels", per_message))
    cuts = [0, *(int(len(messages) * f) for f in (0.35, 0.65, 0.85)), len(messages)]
    parts = [messages[a:b] for a, b in zip(cuts, cuts[1:])]
    send(settings, parts[0])
    worker = worker_factory(settings, "w0")
    at_kill = []
    for k, point in enumerate(points):
        wait_until(lambda point=point: progress(settings) >= point, what=f"{point:.0f} events")
        worker.kill()
        at_kill.append(progress(settings))
        send(settings, parts[k + 1])
        worker = worker_factory(settings, f"w{k + 1}")
    wait_until(lambda: len(read_all(settings, "alerts")) >= 1, what="an alert")
    time.sleep(rng.uniform(0.0, 0.3))
    worker.kill()
    at_kill.append(progress(settings))
    send(settings, parts[3])
    worker = worker_factory(settings, "w3")

    def counts(record):
        return (record.get("n_scored"), record.get("n_predictions"),
                sum(record.get("refused_pairs", {}).values()))

    def done():
        records = latest_by_model(settings)
        return (counts(records.get("m", {})), counts(records.get("zoo", {}))) == (
            (n, n + n_bad, n_bad), (n_zoo, n_zoo + n_bad, n_bad))

    wait_until(done, timeout=120, what="every pair and prediction of both models")
    assert all(0 < c < 2 * n for c in at_kill), at_kill
    assert "monitor partition 0 recovered" in worker.log()
    assert_scored_once(settings, labels)

    time.sleep(1.0)  # room for a wrong extra alert (or dead letter) to show up
    records = latest_by_model(settings)
    final = records["m"]
    scored = read_events(settings, "scored")
    offline = Monitor(MonitorConfig.load(config))
    expected = offline.process_predictions(predictions) + offline.process_pairs(scored)
    report = offline.versions[("m", 1)].report()
    assert (final["n_scored"], final["n_predictions"]) == (n, n + n_bad)
    assert final["rolling_mse"] == pytest.approx(report["rolling_mse"], abs=1e-9)
    assert final["baseline_mse"] == pytest.approx(report["baseline_mse"], abs=1e-9)
    assert final["drift_detections"] == report["drift_detections"]
    assert final["refused_pairs"] == report["refused_pairs"] == {"class_label": n_bad}
    # The multiclass model: its record is the offline run's, number for number.
    zoo = records["zoo"]
    zoo_offline = offline.versions[("zoo", 1)].report()
    assert zoo["refused_pairs"] == {"number_label": n_bad}
    assert zoo["estimated_accuracy"] is not None and set(zoo["per_class"]) == {
        "cat", "dog", "fox", "owl"}
    assert flat(zoo, ZOO_KEYS) == pytest.approx(flat(zoo_offline, ZOO_KEYS), abs=1e-9)
    published = [orjson.loads(r.value)["alert_id"] for r in read_all(settings, "alerts")]
    assert len(published) == len(set(published)), "an alert was published twice"
    assert sorted(published) == sorted(a["alert_id"] for a in expected)
    assert "m.v1.concept_drift.1.firing" in published
    assert_refused_dead_lettered(settings, bad, scored)
    assert worker.stop() == 0


def assert_refused_dead_lettered(settings, bad, scored):
    """Each refused pair on the dead-letter topic, as the join scored it, and nothing else
    there. At least once, as the contract says of the join's dead letters: a kill with the
    pair on ``scored`` but before the join's checkpoint has the rebuilt partition send it
    again, since it cannot tell whether the first went out (the deterministic cases are in
    test_join_recovery.py); the copies are the same record."""
    task = {"m": "regression", "zoo": "multiclass"}
    reason = {"m": "class_label", "zoo": "number_label"}
    pairs = {p["prediction_id"]: p for p in scored}
    letters: dict[str, list[dict]] = {}
    for r in read_all(settings, "deadletter"):
        letter = orjson.loads(r.value)
        letters.setdefault(r.key.decode(), []).append(letter)
    assert sorted(letters) == sorted(pid for ids in bad.values() for pid in ids), letters
    for model, ids in bad.items():
        for pid in ids:
            first, *copies = letters[pid]
            assert first["error"] == (f"refused_pair: {reason[model]}: the pair does not "
                                       f"fit {model}'s task ({task[model]})")
            assert (first["topic"], first["partition"]) == (settings.topic("scored"), 0)
            assert orjson.loads(first["raw"]) == pairs[pid]
            assert all(c == first for c in copies), (pid, letters[pid])


@pytest.mark.kafka
def test_a_second_worker_joining_then_leaving_mid_stream(settings, worker_factory):
    """8 partitions; worker B joins while A is busy, takes half the partitions, and leaves
    again before the stream ends: each hand-off rebuilds the partitions it moves."""
    settings = settings.replace(partitions=8, metrics_interval=0.3)
    create_topics(settings)
    n = 15_000
    predictions, pairs = stream(n, seed=32, drift_at=7_500)
    thirds = [slice(0, n // 3), slice(n // 3, 2 * n // 3), slice(2 * n // 3, n)]

    def part(k):
        return (batched(settings, predictions[thirds[k]], "predictions")
                + batched(settings, labels_of(pairs[thirds[k]]), "labels"))

    a = worker_factory(settings, "a")
    send(settings, part(0))
    wait_until(lambda: progress(settings) >= n // 3, what="the first third")
    b = worker_factory(settings, "b")
    wait_until(lambda: members(settings) == 2, timeout=60, what="B to join the group")
    send(settings, part(1))
    wait_until(lambda: progress(settings) >= 4 * n // 3, what="the second third")
    assert b.stop() == 0  # leaves the group: A gets every partition back
    send(settings, part(2))
    wait_until(lambda: (latest_metrics(settings) or {}).get("n_scored") == n
               and latest_metrics(settings)["n_predictions"] == n, timeout=120,
               what="every pair and prediction")
    assert a.alive()
    assert_scored_once(settings, pairs)

    # The live numbers equal a clean replay of the monitor's input (each source message
    # applied once, whichever worker forwarded it, however often).
    time.sleep(1.0)
    final = latest_metrics(settings)
    q = partition_for(b"m", settings.partitions)
    replay = PartitionMonitor(MonitorConfig())
    for r in read_all(settings, "monitor_input"):
        if r.partition == q:
            replay.apply(r.offset, r.value)
    report = replay.monitor.versions[("m", 1)].report()
    assert (report["n_scored"], report["n_predictions"]) == (n, n)
    for key in ("rolling_mse", "baseline_mse", "drift_detections"):
        assert final[key] == pytest.approx(report[key], abs=1e-9), key
    published = [orjson.loads(r.value)["alert_id"] for r in read_all(settings, "alerts")]
    assert len(published) == len(set(published)), "an alert was published twice"
    assert "m.v1.concept_drift.1.firing" in published
    assert a.stop() == 0
