"""The join agent against the real embedded broker, run as `driftline worker` subprocesses."""

from __future__ import annotations

import random
import signal
import time
import uuid

import orjson
import pytest
from kafka_io import (
    create_topics,
    label,
    prediction,
    produce,
    read_all,
    read_events,
    wait_for_events,
)

from driftline.kafka import partition_for
from driftline.models.wire import unbatch

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def shared(stack, tmp_path_factory):
    """One worker for the scenario tests below; each test uses its own ids."""
    from conftest import WorkerProcess

    from driftline.settings import Settings

    tag = uuid.uuid4().hex[:10]
    settings = Settings(kafka_url=stack.kafka_url, redis_url=stack.redis_url,
                        topic_prefix=f"m{tag}.", group_id=f"g{tag}", partitions=4,
                        registry_prefix=f"m{tag}:", web_port=0)
    worker = WorkerProcess(settings, tmp_path_factory.mktemp("join") / "worker.log").start()
    yield settings, worker
    assert worker.stop(sig=signal.SIGINT) == 0, worker.log()  # Ctrl-C stops it cleanly


def scored_for(settings, prefix: str, count: int, timeout: float = 60.0) -> list[dict]:
    """Scored pairs whose prediction_id starts with ``prefix``, waiting for ``count``."""
    deadline = time.monotonic() + timeout
    while True:
        pairs = [p for p in read_events(settings, "scored")
                 if p["prediction_id"].startswith(prefix)]
        if len(pairs) >= count or time.monotonic() > deadline:
            time.sleep(1.0)  # room for a wrong extra pair to show up
            return [p for p in read_events(settings, "scored")
                    if p["prediction_id"].startswith(prefix)]
        time.sleep(0.3)



@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compressed_input_is_read_like_any_other(shared, codec):
    """What other clients compress with (franz-go sends snappy by default): the worker reads
    it (aiokafka decompresses with cramjam) instead of stopping on UnsupportedCodecError."""
    settings, worker = shared
    ids = [f"{codec}-{i}" for i in range(20)]
    produce(settings, [("predictions", i.encode(), prediction(i, value=2.0)) for i in ids]
            + [("labels", i.encode(), label(i, value=1.0)) for i in ids], compression=codec)
    pairs = scored_for(settings, f"{codec}-", 20)
    assert sorted(p["prediction_id"] for p in pairs) == sorted(ids)
    assert worker.alive(), worker.log()


def test_in_order_pairs_carry_both_sides(shared):
    settings, _ = shared
    ids = [f"inorder-{i}" for i in range(50)]
    produce(settings, [("predictions", i.encode(),
                        prediction(i, value=10.0 + n, features={"x": float(n)}, ts=1000.0 + n))
                       for n, i in enumerate(ids)])
    produce(settings, [("labels", i.encode(), label(i, value=float(n), ts=2000.0 + n))
                       for n, i in enumerate(ids)])
    pairs = {p["prediction_id"]: p for p in scored_for(settings, "inorder-", 50)}
    assert len(pairs) == 50
    p = pairs["inorder-7"]
    assert p == {"prediction_id": "inorder-7", "model": "m", "version": 1, "prediction": 17.0,
                 "label": 7.0, "error": 10.0, "features": {"x": 7.0}, "ts": 1007.0,
                 "label_ts": 2007.0}


def test_label_before_prediction_is_paired(shared):
    settings, _ = shared
    ids = [f"labelfirst-{i}" for i in range(30)]
    produce(settings, [("labels", i.encode(), label(i, 2.0)) for i in ids])
    time.sleep(2.0)  # the labels are processed and waiting before any prediction exists
    produce(settings, [("predictions", i.encode(), prediction(i, 5.0)) for i in ids])
    pairs = scored_for(settings, "labelfirst-", 30)
    assert sorted(p["prediction_id"] for p in pairs) == sorted(ids)
    assert {p["error"] for p in pairs} == {3.0}


def test_duplicates_on_both_sides_make_one_pair(shared):
    settings, _ = shared
    ids = [f"dup-{i}" for i in range(40)]
    msgs = [("predictions", i.encode(), prediction(i)) for i in ids] * 2
    msgs += [("labels", i.encode(), label(i)) for i in ids] * 2
    random.Random(1).shuffle(msgs)
    produce(settings, msgs)
    assert len(scored_for(settings, "dup-", 40)) == 40
    # Re-sent long after the pair was scored: still no second pair.
    produce(settings, [("labels", i.encode(), label(i)) for i in ids[:10]]
            + [("predictions", i.encode(), prediction(i)) for i in ids[:10]])
    pairs = scored_for(settings, "dup-", 41, timeout=4)
    assert sorted(p["prediction_id"] for p in pairs) == sorted(ids)


def test_batch_messages_meet_their_labels_on_the_home_partition(shared):
    settings, _ = shared
    ids = [f"batch-{i}" for i in range(60)]
    # Arrays keyed by nothing, all written to partition 0: most ids belong elsewhere.
    batch = orjson.dumps([orjson.loads(prediction(i, 3.0)) for i in ids])
    produce(settings, [("predictions", None, batch)], partition=0)
    labels = orjson.dumps([orjson.loads(label(i, 1.0)) for i in ids[:30]])
    produce(settings, [("labels", None, labels)], partition=1)
    produce(settings, [("labels", i.encode(), label(i, 1.0)) for i in ids[30:]])
    assert len(scored_for(settings, "batch-", 60)) == 60
    placed = [(r.partition, pair["prediction_id"]) for r in read_all(settings, "scored")
              for pair in unbatch(r.value) if pair["prediction_id"].startswith("batch-")]
    assert len(placed) == 60
    assert all(p == partition_for(pid.encode(), settings.partitions) for p, pid in placed)


BAD_INPUTS = [
    pytest.param("predictions", b"{not json", "invalid_json", id="invalid-json"),
    pytest.param("predictions", orjson.dumps({"model": "m", "prediction": 1.0}),
                 "missing_field", id="missing-field"),
    pytest.param("predictions", orjson.dumps({"prediction_id": "x", "model": "m",
                                              "prediction": True}), "wrong_type",
                 id="wrong-type"),  # ("1.0", a string, is a class now)
    pytest.param("labels", b'{"prediction_id": "x", "label": NaN}', "not_finite", id="nan"),
    pytest.param("labels", b'{"prediction_id": "x", "label": 1e999}', "not_finite", id="inf"),
    pytest.param("predictions", orjson.dumps({"prediction_id": "x", "model": "m",
                                              "prediction": 1.0,
                                              "features": {"f": "x" * 2_000_000}}),
                 "oversized", id="oversized", marks=pytest.mark.reliability),
    pytest.param("predictions", orjson.dumps({"prediction_id": "x", "model": "bad model!",
                                              "prediction": 1.0}), "bad_model",
                 id="bad-model-name"),
    pytest.param("labels", orjson.dumps({"prediction_id": "", "label": 1.0}), "bad_id",
                 id="empty-id"),
    pytest.param("labels", b"[]", "empty", id="empty-batch"),
    pytest.param("labels", None, "empty", id="null-value"),
]


@pytest.mark.kafka
@pytest.mark.parametrize("topic,raw,kind", BAD_INPUTS)
def test_bad_input_is_dead_lettered_and_the_stream_goes_on(shared, topic, raw, kind):
    settings, worker = shared
    tag = uuid.uuid4().hex[:8]
    before, after = f"bad{tag}-a", f"bad{tag}-b"
    sent = produce(settings, [("predictions", before.encode(), prediction(before)),
                              (topic, b"bad-key", raw),
                              ("predictions", after.encode(), prediction(after)),
                              ("labels", before.encode(), label(before)),
                              ("labels", after.encode(), label(after))])
    assert len(scored_for(settings, f"bad{tag}-", 2)) == 2
    _, bad_partition, bad_offset = sent[1]
    letters = [orjson.loads(r.value) for r in read_all(settings, "deadletter")
               if r.key == b"bad-key"]
    mine = [d for d in letters if d["partition"] == bad_partition and d["offset"] == bad_offset
            and d["topic"] == settings.topic(topic)]
    assert len(mine) == 1, letters
    assert mine[0]["error"].startswith(kind + ": "), mine[0]
    if raw is not None and len(raw) < settings.max_message_bytes:
        assert mine[0]["raw"] == raw.decode()
    assert worker.alive()


@pytest.mark.kafka
def test_batch_mixing_good_and_bad_events(shared):
    settings, _ = shared
    good = [orjson.loads(prediction(f"mixed-{i}")) for i in range(5)]
    items = good[:2] + [{"prediction_id": "mixed-bad", "model": "m"}] + good[2:] + [7]
    sent = produce(settings, [("predictions", b"mixed-batch", orjson.dumps(items))])
    produce(settings, [("labels", f"mixed-{i}".encode(), label(f"mixed-{i}")) for i in range(5)])
    assert len(scored_for(settings, "mixed-", 5)) == 5
    letters = sorted((orjson.loads(r.value) for r in read_all(settings, "deadletter")
                      if r.key == b"mixed-batch"), key=lambda d: d["index"])
    assert [(d["index"], d["offset"], d["error"].split(":")[0]) for d in letters] == [
        (2, sent[0][2], "missing_field"), (6, sent[0][2], "wrong_type")]
    assert orjson.loads(letters[0]["raw"]) == items[2]


def test_unlabeled_predictions_expire_and_are_counted(settings, worker_factory):
    settings = settings.replace(join_ttl=1.0, expiry_interval=0.3)
    create_topics(settings)
    worker = worker_factory(settings)
    produce(settings, [("predictions", f"ttl-{i}".encode(), prediction(f"ttl-{i}", model=m))
                       for i, m in enumerate(["a", "a", "b"])])
    expired = wait_for_events(settings, "expired", 3, timeout=60)
    assert sorted((e["prediction_id"], e["model"]) for e in expired) == [
        ("ttl-0", "a"), ("ttl-1", "a"), ("ttl-2", "b")]
    # A label after expiry finds nothing to pair with.
    produce(settings, [("labels", b"ttl-0", label("ttl-0"))])
    time.sleep(3)
    assert read_all(settings, "scored") == []
    assert worker.alive()


def _stream(n: int, seed: int, dup_rate: float = 0.01, bad_rate: float = 0.01):
    """n predictions + n labels shuffled together, with re-sent duplicates and malformed
    messages; returns (messages, ids of malformed messages in send order)."""
    rng = random.Random(seed)
    msgs = []
    for i in range(n):
        pid = f"p{seed}-{i}"
        msgs.append(("predictions", pid.encode(), prediction(pid, rng.gauss(0, 1),
                                                            features={"a": rng.random()})))
        msgs.append(("labels", pid.encode(), label(pid, rng.gauss(0, 1))))
    rng.shuffle(msgs)
    msgs += [rng.choice(msgs) for _ in range(int(2 * n * dup_rate))]
    rng.shuffle(msgs)
    bad = []
    for j in range(int(2 * n * bad_rate)):
        kind = rng.choice([b"{broken", b'{"prediction_id": "x", "label": NaN}', b"[]",
                           orjson.dumps({"prediction_id": f"b{j}", "model": "m"})])
        position = rng.randrange(len(msgs))
        msgs.insert(position, (rng.choice(["predictions", "labels"]), f"bad-{j}".encode(), kind))
        bad.append(f"bad-{j}".encode())
    return msgs, bad


def test_ten_thousand_shuffled_with_duplicates_and_malformed(settings, worker_factory):
    n = 10_000
    create_topics(settings)
    msgs, bad = _stream(n, seed=7)
    worker = worker_factory(settings)
    sent = produce(settings, msgs)
    scored = wait_for_events(settings, "scored", n, timeout=120, settle=3)
    ids = [p["prediction_id"] for p in scored]
    assert len(ids) == n and len(set(ids)) == n
    where = {m[1]: s for m, s in zip(msgs, sent) if m[1].startswith(b"bad-")}
    letters = {r.key: orjson.loads(r.value) for r in read_all(settings, "deadletter")}
    assert sorted(letters) == sorted(bad)
    for key in bad:
        topic, partition, offset = where[key]
        assert (letters[key]["topic"], letters[key]["partition"], letters[key]["offset"]) == (
            topic, partition, offset)
    assert worker.stop() == 0


@pytest.mark.reliability
@pytest.mark.kafka
def test_kill_9_mid_stream_still_one_pair_per_labeled_prediction(settings, worker_factory):
    n = 20_000
    create_topics(settings)
    msgs, _ = _stream(n, seed=11, dup_rate=0.02, bad_rate=0.0)
    first = worker_factory(settings, "first")
    produce(settings, msgs[: len(msgs) // 2])
    # Kill while it is busy: after some pairs exist, before all of this half is done.
    deadline = time.monotonic() + 60
    while len(read_events(settings, "scored")) < 2_000 and time.monotonic() < deadline:
        time.sleep(0.2)
    first.kill()
    produced_at_kill = len(read_events(settings, "scored"))
    assert 0 < produced_at_kill < n
    produce(settings, msgs[len(msgs) // 2:])
    second = worker_factory(settings, "second")
    scored = wait_for_events(settings, "scored", n, timeout=120, settle=4)
    ids = [p["prediction_id"] for p in scored]
    assert len(set(ids)) == n, f"{n - len(set(ids))} labeled predictions never scored"
    assert len(ids) == n, f"{len(ids) - n} pairs scored twice"
    assert "recovered" in second.log()
    assert second.stop() == 0
