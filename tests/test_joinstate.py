"""The pure join state machine: arrival orders, duplicates, expiry, replay."""

from __future__ import annotations

import itertools
import random
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from driftline.agents.join.state import PartitionJoin
from driftline.models.wire import Label, Prediction, array, encode
from driftline.models.wire.joinstate import decode_delta, deleted_item, delta_value, state_item


def pred(pid, value=1.0, model="m"):
    return Prediction(pid, model, value, version=1, features={}, ts=10.0)


def lab(pid, value=0.0):
    return Label(pid, value, ts=20.0)


def test_every_arrival_order_gives_one_pair():
    for order in (["p", "l"], ["l", "p"], ["p", "p", "l", "l"], ["l", "l", "p", "p", "l"]):
        j = PartitionJoin(ttl=100, dedupe_window=100)
        for side in order:
            if side == "p":
                j.add_prediction(pred("a", 3.0), now=1)
            else:
                j.add_label(lab("a", 1.0), now=1)
        scored, _ = j.drain()
        assert [(s.prediction_id, s.error) for s in scored] == [("a", 2.0)], order


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("pl"), st.integers(0, 7), st.integers(0, 9)),
                max_size=80),
       st.lists(st.integers(1, 12), min_size=1, max_size=20))
def test_batches_of_events_join_as_one_event_at_a_time_would(events, cuts):
    """Any order of predictions, labels and their duplicates, cut into batches (several
    copies of one id in one batch among them), done ids frozen after a few: the pairs,
    the waiting maps and the counts are those of a plain model taking one event at a time
    (first prediction and first label of an id win; a later copy of either is a duplicate)."""
    import driftline.agents.join.dedupe as dedupe

    waiting_p: dict[str, float] = {}
    waiting_l: dict[str, float] = {}
    done: set[str] = set()
    expected_pairs, counts = [], Counter()
    for side, k, value in events:
        pid = f"id{k}"
        mine, other = (waiting_p, waiting_l) if side == "p" else (waiting_l, waiting_p)
        counts["predictions" if side == "p" else "labels"] += 1
        if pid in done or pid in mine:
            counts["duplicate_predictions" if side == "p" else "duplicate_labels"] += 1
        elif pid in other:
            y, truth = (value, other.pop(pid)) if side == "p" else (other.pop(pid), value)
            expected_pairs.append((pid, float(y), float(truth)))
            done.add(pid)
            counts["scored"] += 1
        else:
            mine[pid] = float(value)
    j = PartitionJoin(ttl=100, dedupe_window=100)
    got, first = [], 0
    saved, dedupe.FREEZE = dedupe.FREEZE, 2  # frozen generations early
    try:
        for n in itertools.cycle(cuts):
            batch = events[first:first + n]
            if not batch:
                break
            first += n
            j.add_events([pred(f"id{k}", float(v)) if side == "p" else lab(f"id{k}", float(v))
                          for side, k, v in batch], now=1)
            got.extend((p.prediction_id, p.prediction, p.label) for p in j.drain()[0])
    finally:
        dedupe.FREEZE = saved
    assert got == expected_pairs
    assert {pid: e.prediction for pid, (e, _) in j.predictions.items()} == waiting_p
    assert {pid: e.label for pid, (e, _) in j.labels.items()} == waiting_l
    assert +j.stats == +counts


def test_first_label_wins_when_labels_disagree():
    j = PartitionJoin(ttl=100, dedupe_window=100)
    j.add_label(lab("a", 1.0), now=1)
    j.add_label(lab("a", 5.0), now=2)
    j.add_prediction(pred("a", 3.0), now=3)
    scored, _ = j.drain()
    assert scored[0].label == 1.0 and j.stats["duplicate_labels"] == 1


def test_expiry_drops_old_entries_in_arrival_order():
    j = PartitionJoin(ttl=10, dedupe_window=30)
    j.add_prediction(pred("old", model="x"), now=0)
    j.add_label(lab("orphan"), now=1)
    j.add_prediction(pred("new"), now=8)
    j.add_prediction(pred("done"), now=2)
    j.add_label(lab("done"), now=2)
    j.drain()
    gone = j.expire(now=11.5)
    assert [e.prediction_id for e in gone.predictions] == ["old"]
    assert [e.prediction_id for e in gone.labels] == ["orphan"]
    assert gone.forgotten == 0 and "new" in j.predictions
    _, records = j.drain()
    assert records == {"old": None, "orphan": None}
    assert j.expire(now=40).forgotten == 1 and "done" not in j.done
    # A label for an expired prediction waits on its own; it never pairs with the old one.
    j.add_label(lab("old"), now=41)
    assert j.drain()[0] == [] and "old" in j.labels


def test_replaying_state_records_rebuilds_the_same_state():
    rng = random.Random(3)
    live = PartitionJoin(ttl=50, dedupe_window=200)
    log = []
    for t in range(2000):
        pid = f"id{rng.randrange(400)}"
        if rng.random() < 0.5:
            live.add_prediction(pred(pid), now=t)
        else:
            live.add_label(lab(pid), now=t)
        if t % 97 == 0:
            live.expire(now=t)
        log.extend(live.drain()[1].items())
    # Through the wire format of join-state deltas, as the agent writes and reads them.
    entries = [encode(deleted_item(pid) if r is None else state_item(pid, *r)) for pid, r in log]
    replayed = PartitionJoin(ttl=50, dedupe_window=200)
    for pid, record in decode_delta(delta_value(array(entries), 7)).r:
        replayed.restore_many([(pid, None if record is None else record.as_tuple())])
    assert replayed.predictions == live.predictions
    assert replayed.labels == live.labels
    assert list(replayed.done.recent.items()) == list(live.done.recent.items())  # same order
    # The log writes its deltas with one encode an array: the same entries, in order, with
    # the same bytes as entry by entry, in arrays under ARRAY_BYTES (an event of a third of
    # it among them).
    from driftline.agents.join.statelog import StateLog
    from driftline.models.wire.codec import ARRAY_BYTES
    records = dict(log)
    for i in range(4_000):
        big = {f"x{j}": rng.gauss(0, 1) for j in range(4_000 if i == 1_500 else 12)}
        records[f"w{i}"] = ("p", float(i), Prediction(f"w{i}", "m", 1.0, version=1,
                                                      features=big, ts=10.0))
    deltas = StateLog().deltas(records, 7)
    assert len(deltas) > 2 and all(len(value) <= ARRAY_BYTES + 20 for _, value in deltas)
    assert [decode_delta(v).c for _, v in deltas] == [None] * (len(deltas) - 1) + [7]
    entries = b",".join(value[len(b'{"v":1,"r":['):value.rindex(b"]")] for _, value in deltas)
    assert entries == b",".join(encode(deleted_item(pid) if r is None else state_item(pid, *r))
                                for pid, r in records.items())


def test_mark_done_turns_pending_into_done_and_records_it():
    j = PartitionJoin(ttl=10, dedupe_window=10)
    j.add_prediction(pred("a"), now=0)
    j.drain()
    j.mark_done("a", when=5)
    assert "a" not in j.predictions and j.done.seen("a") == 5
    assert j.drain()[1] == {"a": ("d", 5, None)}
    j.add_label(lab("a"), now=6)
    assert j.drain()[0] == [] and j.stats["duplicate_labels"] == 1


def test_internal_records_carry_their_format_and_old_ones_still_read():
    """Every join-state and monitor-input record says its format version (DESIGN.md);
    records written before versions existed read as version 1, and a version this code
    does not know is refused rather than guessed at."""
    import pytest

    from driftline.models.wire.internal import FormatError, decode_elements
    from driftline.models.wire.joinstate import chunk_value, decode_chunk, decode_head, head_value

    entry = encode(state_item("a", "p", 1.0, pred("a")))
    assert delta_value(array([entry]), 3).startswith(b'{"v":1,')
    # Snapshot chunks are format 3 (they may hold frozen done ids, and say their hash);
    # the rest is format 1.
    assert chunk_value(array([entry])).startswith(b'{"v":3,')
    assert head_value(4, 1, 9).endswith(b',"v":1}')
    assert decode_chunk(chunk_value(array([entry]))).r[0][1].as_tuple() == ("p", 1.0, pred("a"))
    # As written before versions: a delta and a head without "v", a chunk as a bare array;
    # and a format-1 chunk, before frozen ids.
    legacy_delta = b'{"r":[["a",{"s":"d","t":5}]],"c":2}'
    assert decode_delta(legacy_delta).r[0][1].as_tuple() == ("d", 5.0, None)
    assert decode_chunk(b"[" + entry + b"]").r[0][0] == "a"
    assert decode_chunk(b'{"v":1,"r":[' + entry + b"]}").r[0][0] == "a"
    assert decode_head(b'{"seq":4,"chunks":1,"c":9}').seq == 4
    assert decode_elements(b'[{"k":"s","s":[0,1],"e":[]}]')[0].v == 1
    for refused in (lambda: decode_delta(b'{"v":2,"r":[]}'),
                    lambda: decode_head(b'{"v":2,"seq":1,"chunks":1,"c":0}')):
        with pytest.raises(FormatError, match="format v2; this driftline reads v1"):
            refused()
    # Chunks are at format 3; monitor-input elements at 4 (2: columns, 3: columns of
    # several source messages, 4: with null and categorical features).
    assert decode_chunk(b'{"v":2,"r":[' + entry + b"]}").r[0][0] == "a"
    with pytest.raises(FormatError, match="format v4; this driftline reads v3"):
        decode_chunk(b'{"v":4,"r":[]}')
    with pytest.raises(FormatError, match="format v5; this driftline reads v4"):
        decode_elements(b'[{"v":5,"k":"s","s":[0,1],"e":[]}]')
    with pytest.raises(ValueError, match="a columnar element of no events"):
        decode_elements(b'[{"v":2,"k":"s","s":[0,1],"e":[]}]')[0].columns()


def test_small_messages_of_one_model_share_an_element_that_names_each_events_offset():
    """The predictions of single-event messages go to the monitor as one element of
    columns (format 3) with each event's source offset; a message of many events keeps
    its own, and a model change, the bytes of one array or features that differ end a
    run."""
    from driftline.agents.routing import predictions_elements
    from driftline.models.wire.codec import ARRAY_BYTES
    from driftline.models.wire.internal import decode_elements

    def single(offset, model="m", features=None):
        ev = Prediction(f"p{offset}", model, float(offset), version=1,
                        features={"a": float(offset)} if features is None else features,
                        ts=10.0)
        return (offset, 100, [ev])

    def shapes(messages):
        return [(e.v, e.s[1], None if e.offsets() is None else e.offsets().tolist(), len(e))
                for value in predictions_elements(3, messages)
                for e in decode_elements(b"[" + value + b"]")]

    assert shapes([single(o) for o in range(10, 30)]) == [(3, 29, list(range(10, 30)), 20)]
    many = (30, 1000, [single(30 + k)[2][0] for k in range(8)])
    assert shapes([single(o) for o in range(10)] + [many] + [single(o) for o in range(31, 41)]
                  ) == [(3, 9, list(range(10)), 10), (2, 30, None, 8),
                        (3, 40, list(range(31, 41)), 10)]
    assert [s[:2] for s in shapes([single(o) for o in range(8)]
                                  + [single(o, model="n") for o in range(8, 16)])
            ] == [(3, 7), (3, 15)]
    big = [(o, ARRAY_BYTES // 10, single(o)[2]) for o in range(25)]
    assert [s[3] for s in shapes(big)] == [10, 10, 1, 1, 1, 1, 1]
    # Too few for columns, or features that differ: an element per message, as before.
    assert [s[:2] for s in shapes([single(o) for o in range(3)])] == [(1, 0), (1, 1), (1, 2)]
    mixed = [single(o) for o in range(9)] + [single(9, features={"b": 1.0})]
    assert [s[:2] for s in shapes(mixed)] == [(1, o) for o in range(10)]


def _arrays_of(events):
    """by_model's arrays of ``events`` (payload: each event's index), checked: per model,
    every event once and in order, each array the bytes of its events encoded and joined,
    keyed by its first one's id."""
    from driftline.agents.join.arrays import by_model
    from driftline.models.wire import array, encode

    got = list(by_model((ev.model, ev.prediction_id, ev, i) for i, ev in enumerate(events)))
    for model in {ev.model for ev in events}:
        mine = [(key, value, payloads) for m, key, value, payloads in got if m == model]
        assert [i for _, _, payloads in mine for i in payloads] == [
            i for i, ev in enumerate(events) if ev.model == model]
        for key, value, payloads in mine:
            assert key == events[payloads[0]].prediction_id.encode()
            assert value == array([encode(events[i]) for i in payloads])
    return got


def test_scored_arrays_are_one_encode_of_each_models_pairs_with_the_same_bytes():
    """The join encodes a model's pairs as lists: arrays under ARRAY_BYTES, all but the
    last of a model nearly as full as ARRAY_FILL makes them, the same bytes as each pair
    encoded and joined."""
    from driftline.agents.join.arrays import ARRAY_FILL
    from driftline.models.wire import array, encode
    from driftline.models.wire.codec import ARRAY_BYTES

    events = [pred(f"p{i}", float(i), model="b" if i % 3 == 0 else "a") for i in range(9_000)]
    got = _arrays_of(events)
    for model in "ab":
        sizes = [len(value) for m, _, value, _ in got if m == model]
        assert len(sizes) > 1 and max(sizes) <= ARRAY_BYTES
        assert min(sizes[:-1]) >= 0.95 * ARRAY_FILL * ARRAY_BYTES
    assert _arrays_of(events[1:3]) == [
        ("a", b"p1", array([encode(events[1]), encode(events[2])]), [0, 1])]


def test_an_event_larger_than_an_array_gets_one_of_its_own():
    from driftline.models.wire.codec import ARRAY_BYTES

    events = [pred(f"p{i}", float(i)) for i in range(3_000)]
    events[1_000].features = {f"f{k}": float(k) for k in range(20_000)}  # ~300 KB alone
    got = _arrays_of(events)
    assert [payloads for _, _, _, payloads in got if 1_000 in payloads] == [[1_000]]
    assert all(len(value) <= ARRAY_BYTES for _, _, value, payloads in got
               if payloads != [1_000])


def test_runs_of_single_event_messages_decode_as_each_message_alone_would():
    """The join decodes consecutive single-event messages in one call; whatever the mix
    (bad events among good ones, two objects in one message, arrays, both topics, an
    oversized one), each message gets the events and rejections it gets alone."""
    from driftline.agents.join.intake import decode
    from driftline.models.wire import LABEL, PREDICTION
    from driftline.settings import Settings

    settings = Settings(topic_prefix="t.", max_message_bytes=2_000)
    good_p = b'{"prediction_id":"p%d","model":"m","prediction":1.5,"features":{"a":1}}'
    values = {
        "predictions": [good_p, b'{"prediction_id":"","model":"m","prediction":1}',
                        b'{"prediction_id":"x","model":"m","prediction":NaN}',
                        b'{"prediction_id":"a","model":"m","prediction":1},{"prediction_id":'
                        b'"b","model":"m","prediction":2}',
                        b'[{"prediction_id":"c","model":"m","prediction":3}]',
                        b'{"prediction_id":"big","model":"m","prediction":1,"segment":"'
                        + b"s" * 2_000 + b'"}', b" {}", b"{", None],
        "labels": [b'{"prediction_id":"p%d","label":0.5}', b'{"prediction_id":"q","label":"x"}',
                   b'{"prediction_id":"r","label":1,"extra":2}'],
    }

    class Msg:
        def __init__(self, topic, value):
            self.topic, self.value = f"t.{topic}", value

        @property
        def message(self):
            return self

    rng = random.Random(4)
    for trial in range(200):
        messages = []
        for i in range(rng.randint(1, 150)):
            topic = rng.choice(["predictions", "labels"])
            pool = values[topic]
            value = pool[0] if rng.random() < 0.8 else rng.choice(pool)
            messages.append(Msg(topic, value % i if value and b"%d" in value else value))
        got = decode(messages, settings.topic("labels"), max_bytes=settings.max_message_bytes,
                     max_batch=settings.max_batch_events)
        expected = [(m, m.topic == "t.labels", *(LABEL if m.topic == "t.labels" else PREDICTION)
                     .decode(m.value, max_bytes=2_000, max_batch=settings.max_batch_events))
                    for m in messages]
        assert got == expected, trial
