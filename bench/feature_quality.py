"""Categorical drift and data quality through the monitor: false alarms on a stationary mixed
stream, the delays of four changes, and the memory of a producer's distinct strings.

    .venv/bin/python bench/feature_quality.py [--parts null,delays,memory]
        [--null-events 1000000] [--seeds 10] [--events 16000] [--distinct 1000000]

The monitor runs as the worker runs it (``Monitor.process_predictions``, batches of 500,
default config: budget 1 false alarm per 1,000,000 predictions). Streams: 5 numeric features
(normal) and 5 categorical ones (Zipf over 2, 5, 20, 50 and 200 categories), each value null
2 % of the time.

  null     every alert on ``--null-events`` stationary predictions (the budget allows 1
           expected false alarm per million predictions over all tests)
  delays   predictions from the change (at 8,000) to the first alert naming the feature,
           median / p90 over ``--seeds`` streams: a category's share 10 % -> 2 %, the
           missing share 2 % -> 20 %, a feature that vanishes, a new category at 5 %
  memory   a version fed ``--distinct`` distinct strings in one feature: its vocabulary,
           and the Python memory it holds (tracemalloc) against 1,000 repeated ones
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc

import numpy as np

from driftline.agents.monitor.config import MonitorConfig
from driftline.agents.monitor.core import Monitor

CARDINALITIES = (2, 5, 20, 50, 200)
BATCH = 500
CHANGE_AT = 8_000


def zipf(k: int) -> np.ndarray:
    p = 1.0 / np.arange(1, k + 1)
    return p / p.sum()


def mixed(n: int, seed: int, change=None, at: int = CHANGE_AT) -> list[dict]:
    """The stream above; ``change(i, features, rng)`` edits prediction i >= ``at``."""
    rng = np.random.default_rng(seed)
    numbers = rng.normal(size=(n, 5)).tolist()
    codes = [rng.choice(k, size=n, p=zipf(k)).tolist() for k in CARDINALITIES]
    null = (rng.random((n, 10)) < 0.02).tolist()
    events = []
    for i in range(n):
        row, gaps = numbers[i], null[i]
        features: dict = {f"n{j}": None if gaps[j] else row[j] for j in range(5)}
        features.update({f"c{j}": None if gaps[5 + j] else f"v{codes[j][i]}" for j in range(5)})
        if change is not None and i >= at:
            change(i, features, rng)
        events.append({"prediction_id": str(i), "model": "m", "version": 1,
                       "prediction": row[0], "features": features, "ts": float(i)})
    return events


def feed(monitor: Monitor, events: list[dict]) -> list[tuple[int, dict]]:
    out = []
    for start in range(0, len(events), BATCH):
        batch = events[start:start + BATCH]
        out += [(start + len(batch), a) for a in monitor.process_predictions(batch)]
    return out


def part_null(args) -> None:
    monitor, alerts, fed = Monitor(MonitorConfig()), [], 0
    started = time.perf_counter()
    chunk = 100_000
    for seed in range(0, args.null_events, chunk):  # one stream, made a chunk at a time
        events = mixed(min(chunk, args.null_events - seed), seed=1000 + seed // chunk)
        for e in events:
            e["ts"] += fed
            e["prediction_id"] = str(fed + int(e["prediction_id"]))
        alerts += [(fed + at, a) for at, a in feed(monitor, events)]
        fed += len(events)
    seconds = time.perf_counter() - started
    vm = monitor.versions[("m", 1)]
    firing = [(at, a["kind"], a["detector"], a["feature"]) for at, a in alerts
              if a["status"] == "firing"]
    print(f"## null: {fed:,} stationary predictions, {vm.tests} tests, budget "
          f"{vm.config.false_alarm_budget} per 1,000,000 -> allowed {fed / 1e6:.2f} expected")
    print(f"false alarms: {len(firing)} {firing}")
    print(f"({seconds:.0f} s with the stream's making)")


def share_down(i, features, rng):
    if features["c2"] == "v3" and rng.random() < 0.78:  # v3 of c2: ~9 % -> ~2 %
        features["c2"] = "v0"


def more_missing(i, features, rng):
    if rng.random() < 0.184:  # 2 % -> 20 %
        features["n2"] = None


def vanish(i, features, rng):
    del features["c0"]


def new_category(i, features, rng):
    if rng.random() < 0.05:
        features["c3"] = "brand-new"


CHANGES = {"c2: a category 9 % -> 2 %": (share_down, "c2"),
           "n2: missing 2 % -> 20 %": (more_missing, "n2"),
           "c0: vanishes": (vanish, "c0"),
           "c3: a new category at 5 %": (new_category, "c3")}


def part_delays(args) -> None:
    print(f"## delays: predictions from the change at {CHANGE_AT:,} to the first alert on the "
          f"feature ({args.seeds} seeds, batches of {BATCH}: a delay is a batch's end)")
    print("| change | median | p90 | fired | detectors | other alerts |")
    print("|---|---|---|---|---|---|")
    for name, (change, feature) in CHANGES.items():
        delays, detectors, others = [], set(), 0
        for seed in range(args.seeds):
            alerts = feed(Monitor(MonitorConfig()), mixed(args.events, seed, change))
            on = [(at, a) for at, a in alerts if a["status"] == "firing"
                  and a["feature"] == feature and at > CHANGE_AT]
            others += sum(1 for _, a in alerts if a["status"] == "firing"
                          and a["feature"] != feature)
            if on:
                delays.append(on[0][0] - CHANGE_AT)
                detectors.add(f"{on[0][1]['kind']}/{on[0][1]['detector']}")
        d = np.array(delays)
        print(f"| {name} | {np.median(d):,.0f} | {np.quantile(d, 0.9):,.0f} | "
              f"{len(d)}/{args.seeds} | {', '.join(sorted(detectors))} | {others} |"
              if len(d) else f"| {name} | - | - | 0/{args.seeds} | | {others} |")


def held(distinct: int, n: int) -> tuple[int, Monitor]:
    gc.collect()
    tracemalloc.start()
    monitor = Monitor(MonitorConfig())
    before = tracemalloc.get_traced_memory()[0]
    for start in range(0, n, 5_000):
        feed(monitor, [{"prediction_id": str(i), "model": "m", "version": 1, "prediction": 0.0,
                        "features": {"session": f"s-{i % distinct}", "x": float(i % 7)},
                        "ts": float(i)} for i in range(start, min(n, start + 5_000))])
    gc.collect()
    now = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return now, monitor


def part_memory(args) -> None:
    n = args.distinct
    repeated, _ = held(1_000, n)
    distinct, monitor = held(n, n)
    vm = monitor.versions[("m", 1)]
    [vocab] = vm.columns.vocabularies
    entry = vm.report()["features"]["session"]
    print(f"## memory: {n:,} predictions, a feature of {n:,} distinct strings vs 1,000 repeated")
    print(f"vocabulary: {len(vocab):,} kept (cap {vocab.cap:,}), overflowed {vocab.overflowed}, "
          f"identifier-like {entry.get('idlike', False)}")
    print(f"Python memory the monitor holds: {distinct / 2**20:.2f} MiB (distinct) vs "
          f"{repeated / 2**20:.2f} MiB (repeated)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", default="null,delays,memory")
    parser.add_argument("--null-events", type=int, default=1_000_000)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--events", type=int, default=16_000)
    parser.add_argument("--distinct", type=int, default=1_000_000)
    args = parser.parse_args()
    parts = {"null": part_null, "delays": part_delays, "memory": part_memory}
    for name in args.parts.split(","):
        if name not in parts:
            parser.error(f"--parts: {name!r} is not one of {', '.join(parts)}")
        parts[name](args)


if __name__ == "__main__":
    main()
