"""The join's dedupe memory: bytes per remembered id, and the cost of joining with it.

    .venv/bin/python bench/dedupe_memory.py [--ids 1000000] [--repeat 3]

Rows, side by side in one run (median of --repeat):
  dict of ids         what the join kept before: {prediction_id: seen}, as a baseline
  DoneIds             the join's done ids now: the newest in a dict, the rest frozen as
                      64-bit hashes and seen times in numpy (16 bytes an id)
  join pairs/s        PartitionJoin.add_events + drain, 500 events a batch, once --ids ids
                      are remembered (the cost of looking a new id up among them)
Memory is what tracemalloc counts as still allocated once the structure is built from
ids handed to it one at a time (the id strings included: the dict keeps them), over the ids.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
import tracemalloc
from collections.abc import Iterable

from driftline.agents.join.dedupe import DoneIds
from driftline.agents.join.state import PartitionJoin
from driftline.models.wire import Label, Prediction


def ids(n: int, start: int = 0) -> list[str]:
    return [f"prediction-{i:012d}" for i in range(start, start + n)]


def footprint(build, n: int) -> float:
    """Bytes an id that ``build`` keeps of n ids it is handed one at a time (each a new
    string, as the join gets them from decoded events)."""
    gc.collect()
    tracemalloc.start()
    kept = build(f"prediction-{i:012d}" for i in range(n))
    size = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del kept
    return size / n


def as_dict(names: Iterable[str]) -> dict[str, float]:
    return {pid: float(i) for i, pid in enumerate(names)}


def as_done_ids(names: Iterable[str]) -> DoneIds:
    done = DoneIds()
    for i, pid in enumerate(names):
        done.add(pid, float(i))
        if i % 500 == 499:
            done.freeze()  # as the join does on each drain
    done.freeze()
    return done


def join_rate(remembered: int, pairs: int = 100_000, batch: int = 500) -> float:
    part = PartitionJoin(ttl=1e12, dedupe_window=1e12)
    for pid in ids(remembered, start=10**9):
        part.done.add(pid, 0.0)
        if len(part.done.recent) >= 500:
            part.drain()
    part.drain()
    events: list[Prediction | Label] = []
    for pid in ids(pairs):
        events.append(Prediction(pid, "m", 1.0, version=1, ts=0.0))
        events.append(Label(pid, 0.0, ts=0.0))
    started = time.perf_counter()
    for k in range(0, len(events), batch):
        part.add_events(events[k:k + batch], now=1.0)
        part.drain()
    return pairs / (time.perf_counter() - started)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ids", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    rows = {
        "dict of ids (B/id)": lambda: footprint(as_dict, args.ids),
        "DoneIds (B/id)": lambda: footprint(as_done_ids, args.ids),
        "join pairs/s, 0 remembered": lambda: join_rate(0),
        f"join pairs/s, {args.ids:,} remembered": lambda: join_rate(args.ids),
    }
    for name, run in rows.items():
        values = [run() for _ in range(args.repeat)]
        print(f"{name:<34} {statistics.median(values):>12,.1f}")


if __name__ == "__main__":
    main()
