"""The join's dedupe memory: DoneIds against a plain dict, and a join across freezes."""

from __future__ import annotations

import base64
import random
from hashlib import blake2b

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driftline.agents.join import dedupe
from driftline.agents.join.dedupe import DoneIds
from driftline.agents.join.generations import DEAD, Generation, Merge
from driftline.agents.join.state import PartitionJoin
from driftline.agents.join.statelog import StateLogReplay
from driftline.keyhash import id_hash
from driftline.models.wire import Label, Prediction
from driftline.models.wire.joinstate import (
    FROZEN_PER_CHUNK,
    chunk_value,
    decode_chunk,
    frozen_chunk_values,
    head_value,
    snapshot_key,
)


def test_done_ids_behave_as_a_dict_of_id_to_seen_across_freezes_merges_and_expiry():
    rng = random.Random(7)
    done, model = DoneIds(), {}
    t = 0.0
    for step in range(20_000):
        t += rng.random()
        pid = f"id{rng.randrange(6_000)}"
        op = rng.random()
        if op < 0.6:
            if pid not in model:
                done.add(pid, t)
                model[pid] = t
        elif op < 0.75:
            done.discard_many([pid])
            model.pop(pid, None)
        elif op < 0.76:
            cutoff = t - 300
            named, frozen = done.expire(cutoff)
            gone = {p for p, seen in model.items() if seen <= cutoff}
            assert set(named) <= gone and len(named) + frozen == len(gone)
            model = {p: seen for p, seen in model.items() if seen > cutoff}
        if step % 37 == 0:
            done.freeze(min_size=rng.choice([1, 50, 400]))
        if step % 101 == 0:
            probe = [f"id{rng.randrange(6_000)}" for _ in range(64)]
            frozen_hits = done.frozen_many(probe)
            expected = [p in model for p in probe]
            got = [p in done.recent or bool(frozen_hits and frozen_hits[i])
                   for i, p in enumerate(probe)]
            assert got == expected
        assert (pid in done) == (pid in model)
        assert done.seen(pid) == model.get(pid)
    assert len(done) == len(model)
    assert done.generations <= 12  # merged as they grow: O(log n) of them to search


def test_frozen_ids_cost_16_bytes_each_and_round_trip_through_snapshot_chunks():
    done = DoneIds()
    for i in range(50_000):
        done.add(f"prediction-{i:012d}", float(i))
    done.freeze(min_size=1)
    assert not done.recent and len(done) == 50_000
    assert done.nbytes() == 50_000 * 16
    restored = DoneIds()
    for h, t, legacy in done.frozen():
        values = frozen_chunk_values(h, t, legacy)
        assert len(values) == -(-len(h) // FROZEN_PER_CHUNK)
        for value in values:
            assert len(value) < 256 * 1024
            chunk = decode_chunk(value)
            assert not chunk.legacy
            restored.add_frozen(*chunk.frozen(), legacy=chunk.legacy)
    assert len(restored) == 50_000 and "prediction-000000031337" in restored
    assert restored.seen("prediction-000000031337") == 31337.0
    assert "prediction-000000050000" not in restored


def test_a_join_finds_duplicates_of_frozen_ids_one_by_one_and_in_batches(monkeypatch):
    monkeypatch.setattr(dedupe, "FREEZE", 100)
    j = PartitionJoin(ttl=1e9, dedupe_window=1e9)
    for i in range(1_000):
        j.add_events([Prediction(f"p{i}", "m", 1.0, version=1, ts=0.0),
                      Label(f"p{i}", 0.0, ts=0.0)], now=float(i))
        j.drain()
    assert j.done.generations >= 1 and len(j.done.recent) < 100
    j.add_label(Label("p3", 0.0, ts=0.0), now=2e3)                          # one by one
    j.add_events([Prediction("p5", "m", 1.0, version=1, ts=0.0),            # in a batch,
                  Label("new", 0.0, ts=0.0), Label("p999", 0.0, ts=0.0)],   # with new ids
                 now=2e3)
    scored, _ = j.drain()
    assert scored == [] and "new" in j.labels
    assert j.stats["duplicate_labels"] == 2 and j.stats["duplicate_predictions"] == 1
    assert j.stats["scored"] == 1_000


def test_a_snapshot_with_frozen_ids_rebuilds_the_same_join(monkeypatch):
    """What the agent's snapshot writes (named records, then frozen chunks) read back by
    the state log's replay gives the same dedupe memory, and sweeps forget the same."""
    monkeypatch.setattr(dedupe, "FREEZE", 64)
    live = PartitionJoin(ttl=50, dedupe_window=500)
    for i in range(2_000):
        live.add_events([Prediction(f"p{i}", "m", 1.0, version=1, ts=0.0)], now=float(i))
        if i % 3:
            live.add_events([Label(f"p{i}", 0.0, ts=0.0)], now=float(i))
        if i % 97 == 0:
            live.expire(now=float(i))
        live.drain()
    from driftline.agents.join.arrays import filled
    from driftline.agents.join.statelog import item
    values = [chunk_value(run) for _, _, run in filled([item(pid, record)
                                                       for pid, record in live.records()])]
    for frozen in live.done.frozen():
        values.extend(frozen_chunk_values(*frozen))
    replay = StateLogReplay(lambda: PartitionJoin(ttl=50, dedupe_window=500), partition=0)
    for k, value in enumerate(values):
        replay.apply(snapshot_key(9, k), value)
    replay.apply(b"h", head_value(9, len(values), 0))
    back = replay.part
    assert len(back.done) == len(live.done) and back.predictions == live.predictions
    for i in range(2_000):
        assert back.done.seen(f"p{i}") == live.done.seen(f"p{i}")
    assert back.expire(now=2_300).forgotten == live.expire(now=2_300).forgotten > 0


@pytest.mark.parametrize("n", [0, 1, FROZEN_PER_CHUNK + 1])
def test_frozen_chunks_hold_exactly_what_they_are_given(n):
    h = np.arange(n, dtype=np.uint64) * np.uint64(2**40 + 1)
    t = np.arange(n, dtype=float)
    back = [decode_chunk(v).frozen() for v in frozen_chunk_values(h, t)]
    got_h = np.concatenate([b[0] for b in back]) if back else np.array([], np.uint64)
    got_t = np.concatenate([b[1] for b in back]) if back else np.array([])
    assert np.array_equal(got_h, h) and np.array_equal(got_t, t)


def test_a_batch_of_ids_hashes_as_each_id_alone():
    """The batch hashes are the ones snapshots are written with: the same 64-bit value
    per id as the key-by-key one, for any text (MurmurHash64A; blake2b for the legacy
    generations of snapshots before format 3)."""
    rng = random.Random(4)
    pids = ["", "a", "é-ü-中", *("".join(rng.choice("ab-Z9é") for _ in range(rng.randint(1, 60)))
                                 for _ in range(500))]
    got = dedupe.hashes(pids)
    assert got.dtype == np.uint64 and got.flags.writeable
    assert got.tolist() == [id_hash(pid.encode()) for pid in pids]
    old = dedupe.legacy_hashes(pids)
    assert old.tolist() == [int.from_bytes(blake2b(pid.encode(), digest_size=8).digest(),
                                           "little") for pid in pids]
    assert len(dedupe.hashes([])) == 0 and len(dedupe.legacy_hashes([])) == 0


def test_a_snapshot_of_blake2b_hashes_still_dedupes_until_its_ids_age_out():
    """A snapshot written before format 3 (frozen ids as blake2b hashes, no ``k``): its
    ids stay duplicates, beside ids frozen since by MurmurHash64A, through a snapshot
    written now and a second restore, until the window forgets them."""
    old_ids = [f"old-{i}" for i in range(3_000)]
    h = dedupe.legacy_hashes(old_ids)
    chunk = orjson.dumps({"v": 2, "r": [], "h": base64.b64encode(h.astype("<u8").tobytes())
                          .decode(), "t": base64.b64encode(np.full(len(h), 10.0).tobytes())
                          .decode()})
    assert decode_chunk(chunk).legacy
    part = PartitionJoin(ttl=50, dedupe_window=100)
    part.done.add_frozen(*decode_chunk(chunk).frozen(), legacy=decode_chunk(chunk).legacy)
    for i in range(2_000):  # new pairs, frozen by the new hash
        part.add_events([Prediction(f"new-{i}", "m", 1.0), Label(f"new-{i}", 0.0)], now=20.0)
    part.drain()
    part.done.freeze(min_size=1)
    assert part.done.generations == 2 and not part.done.recent
    again = DoneIds()
    for h_, t_, legacy in part.done.frozen():
        for value in frozen_chunk_values(h_, t_, legacy):
            back = decode_chunk(value)
            again.add_frozen(*back.frozen(), legacy=back.legacy)
    for done in (part.done, again):
        probe = ["old-7", "old-2999", "new-5", "new-1999", "old-3000", "new-2000", "other"]
        assert done.frozen_many(probe) == [True, True, True, True, False, False, False]
        assert [pid in done for pid in probe] == [True, True, True, True, False, False, False]
        assert done.seen("old-7") == 10.0 and done.seen("new-5") == 20.0
    part.add_events([Prediction("old-7", "m", 1.0), Label("new-5", 0.0)], now=30.0)
    assert part.stats["duplicate_predictions"] == 1 and part.stats["duplicate_labels"] == 1
    part.done.discard_many(["old-8"])
    assert "old-8" not in part.done and len(part.done) == 3_000 - 1 + 2_000
    assert part.expire(now=115.0).forgotten == 2_999  # the old ones' window ends first
    assert part.done.generations == 1 and "old-9" not in part.done and "new-9" in part.done


# --- merges in bounded steps (issue 37) ---------------------------------------------

def _generation(entries: list[tuple[int, float | None]]) -> Generation:
    """A generation of (hash, seen) entries, None for a dead one, sorted stably."""
    h = np.array([e[0] for e in entries], np.uint64)
    t = np.array([DEAD if e[1] is None else e[1] for e in entries], float)
    return Generation(h, t)


def _re_sorted(*gens: Generation) -> tuple[list[int], list[float]]:
    """What the merge replaced: the live entries of all, concatenated and sorted stably."""
    h = np.concatenate([g.h[g.t != DEAD] for g in gens])
    t = np.concatenate([g.t[g.t != DEAD] for g in gens])
    order = np.argsort(h, kind="stable")
    return h[order].tolist(), t[order].tolist()


ENTRIES = st.lists(st.tuples(st.integers(0, 30) | st.integers(0, 2**64 - 1),
                             st.none() | st.floats(0, 100)), max_size=60)


@settings(max_examples=300, deadline=None)
@given(ENTRIES, ENTRIES | st.none(), st.integers(1, 9))
def test_a_merge_in_bounded_steps_equals_re_sorting_both_generations(a, b, budget):
    """Small hashes repeat, within a generation and across both; dead entries are dropped;
    b=None is a compaction. Every step reads at most ``budget`` source entries."""
    ga = _generation(a)
    gb = None if b is None else _generation(b)
    merge = Merge(ga, gb)
    steps = []
    while not merge.done:
        steps.append(merge.step(budget))
    assert all(0 < k <= budget for k in steps) and sum(steps) == len(a) + len(b or [])
    got = merge.result()
    expected = _re_sorted(ga, *([gb] if gb is not None else []))
    assert (got.h.tolist(), got.t.tolist()) == expected
    assert got.live == len(expected[0]) and got.busy is False
    assert got.oldest == min(expected[1], default=np.inf)


@settings(max_examples=300, deadline=None)
@given(ENTRIES, st.lists(st.integers(0, 31) | st.integers(0, 2**64 - 1), max_size=40))
def test_a_large_generation_searched_through_its_sample_finds_what_a_binary_search_does(
        entries, probe):
    """Every generation searched the sampled way (as one of a million entries or more is):
    the same first index at least each hash as numpy's binary search, repeats, dead
    entries, both ends and blocks across them included."""
    from driftline.agents.join import generations
    g = _generation(entries)
    probe_h = np.array(probe + g.h.tolist()[::3], np.uint64)
    plain_found, plain_at = g.find(probe_h)
    try:
        generations.SAMPLE_MIN, saved = 0, generations.SAMPLE_MIN
        sampled = _generation(entries)
        assert sampled.first_at_least(probe_h).tolist() == \
            np.searchsorted(g.h, probe_h).tolist()
        found, at = sampled.find(probe_h)
    finally:
        generations.SAMPLE_MIN = saved
    assert found.tolist() == plain_found.tolist() and at.tolist() == plain_at.tolist()


def test_a_dead_entry_does_not_hide_a_live_one_of_the_same_hash():
    g = _generation([(5, None), (5, 2.0), (7, None)])
    found, at = g.find(np.array([5, 7, 9], np.uint64))
    assert found.tolist() == [True, False, False] and at[0] == 1


def _model_check(done: DoneIds, model: dict[str, float], rng: random.Random) -> None:
    probe = [f"id{rng.randrange(3_000)}" for _ in range(40)]
    hits = done.frozen_many(probe)
    got = [p in done.recent or bool(hits and hits[i]) for i, p in enumerate(probe)]
    assert got == [p in model for p in probe]
    assert [done.seen(p) for p in probe] == [model.get(p) for p in probe]
    assert len(done) == len(model)


def test_lookups_discards_and_expiry_stay_exact_while_merges_are_in_progress(monkeypatch):
    """A dict of id -> seen as the model, with merges of 7 entries a step: ids are looked
    up, discarded and expired while their generations are half merged, and a snapshot
    taken then (each id once) restores the same ids."""
    monkeypatch.setattr(dedupe, "MERGE_STEP", 7)
    rng = random.Random(11)
    done, model = DoneIds(), {}
    t, mid_merge = 0.0, 0
    for step in range(6_000):
        t += rng.random()
        pid = f"id{rng.randrange(3_000)}"
        op = rng.random()
        if op < 0.6 and pid not in model:
            done.add(pid, t)
            model[pid] = t
        elif 0.6 <= op < 0.8:
            done.discard_many([pid])
            model.pop(pid, None)
        elif op > 0.995:
            cutoff = t - 400
            named, frozen = done.expire(cutoff)
            assert len(named) + frozen == sum(seen <= cutoff for seen in model.values())
            model = {p: seen for p, seen in model.items() if seen > cutoff}
        if step % 23 == 0:
            done.freeze(min_size=rng.choice([1, 20, 60]))
        elif step % 3 == 0:
            done.merge_step()
        if done.merging:
            mid_merge += 1
            if mid_merge % 4 == 0:
                _model_check(done, model, rng)
    assert mid_merge > 3_000  # most of the run had a merge half done
    restored = DoneIds()
    for h, seen, legacy in done.frozen():
        restored.add_frozen(h, seen, legacy)
    for pid, seen in done.recent.items():
        restored.add(pid, seen)
    _model_check(restored, model, rng)
    done.settle()
    assert not done.merging and done.generations <= 12
    _model_check(done, model, rng)


def test_no_merge_step_reads_more_than_its_budget(monkeypatch):
    """Freezing 40,000 ids 500 at a time with a budget of 1,000 entries a step: every
    call reads at most that, however large the generations being merged grow (the
    largest here is over 20 times the budget), and the merges keep up."""
    monkeypatch.setattr(dedupe, "MERGE_STEP", 1_000)
    reads: list[int] = []
    step = Merge.step

    def counted(self: Merge, budget: int = 0) -> int:
        reads.append(step(self, budget))
        return reads[-1]

    monkeypatch.setattr(Merge, "step", counted)
    done, per_call = DoneIds(), []
    for i in range(40_000):
        done.add(f"p{i}", float(i))
        if i % 500 == 499:
            before = len(reads)
            done.freeze(min_size=500)
            per_call.append(sum(reads[before:]))
            for _ in range(3):  # drains between freezes
                before = len(reads)
                done.merge_step()
                per_call.append(sum(reads[before:]))
    assert max(per_call) == 1_000 and max(reads) <= 1_000
    assert done.generations <= 12 and len(done) == 40_000
    largest = max(len(g.h) for g in done._generations)
    assert largest > 20 * 1_000 and "p31337" in done and done.seen("p39999") == 39_999.0


def test_expiry_reads_a_bounded_slice_a_sweep_and_never_forgets_early(monkeypatch):
    """Issue 37: a sweep reads a bounded slice of each generation (and of each merge's
    copy), so at 10 million ids it is no longer a whole pass of 60-280 ms. An id past the
    cutoff may be remembered some sweeps longer, never an id within it; and a generation
    is forgotten whole within len / EXPIRE_STEP sweeps, merges in progress or not."""
    monkeypatch.setattr(dedupe, "EXPIRE_STEP", 500)
    monkeypatch.setattr(dedupe, "expire_budget", lambda size, step: step)  # no share of size
    monkeypatch.setattr(dedupe, "MERGE_STEP", 700)
    reads: list[int] = []
    expire = Generation.expire

    def counted(self: Generation, cutoff: float, budget: int = 0) -> int:
        before = self.cursor
        killed = expire(self, cutoff, budget)
        reads.append((self.cursor or len(self.t)) - before)
        return killed

    monkeypatch.setattr(Generation, "expire", counted)
    rng = random.Random(5)
    done, model, t = DoneIds(), {}, 0.0
    for i in range(30_000):
        t += rng.random()
        done.add(f"p{i}", t)
        model[f"p{i}"] = t
        if i % 400 == 399:
            done.freeze(min_size=400)
        if i % 1_000 == 999:
            cutoff = t - 8_000
            done.expire(cutoff)
            model = {p: seen for p, seen in model.items() if seen > cutoff}
            probe = rng.sample(sorted(model), 50)  # within the window: all remembered
            assert all(p in done for p in probe)
            assert len(done) >= len(model)
    assert reads and max(reads) <= 500
    assert len(done) > len(model)  # some past the cutoff still remembered: the bound bit
    largest = max(len(g.h) for g in done._generations)
    for _ in range(-(-largest // 500) + 1):  # one whole pass of the largest, and one more
        done.expire(cutoff)
        done.merge_step()
    done.settle()
    done.expire(cutoff)  # the merged result's own pass (small now: expired ids are dead)
    for _ in range(-(-max(len(g.h) for g in done._generations) // 500)):
        done.expire(cutoff)
    assert len(done) == len(model)
    assert all(g.oldest > cutoff for g in done._generations)
