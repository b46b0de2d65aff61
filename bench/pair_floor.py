"""What a pair costs in each of the worker's steps, in one process, and the ceiling on b / a.

    .venv/bin/python bench/pair_floor.py [--pairs 20000] [--features 10] [--repeat 5]
                                         [--bare-rate EVENTS_PER_S] [--remembered N]

The stream is the harness's shape: 500-event arrays of predictions, each followed by the
array of their labels. Each step runs over the whole stream, from the previous step's
output, with no Kafka; the figure is the median of ``--repeat`` runs, in µs per pair
(a prediction and its label):

  read                 orjson.loads of the input arrays: the bare consumer's work, (a),
                       after its fetch
  validate             the same bytes decoded and validated (msgspec)
  join                 the ids hashed (partition and dedupe hash, as the intake's route
                       does), PartitionJoin.add_events and drain: the pairs, the done ids.
                       With ``--remembered N`` the join already remembers N scored ids,
                       frozen, as a long-running worker's does (a 24 h window at 1,000
                       pairs/s over 8 partitions: ~10 million each): each new id is
                       looked for among them
  scored               the public scored arrays, each encoded as one list
  join-state entries   the state records of both drains, as the join writes them
  monitor-input        the scored pairs' and the predictions' columns (format 2)
  monitor              those elements decoded and applied (PartitionMonitor, defaults)

"floor" = validate + join + scored + monitor: what produces what a user sees (validated
pairs, scored, metrics and alerts), with no durable join state, no hop to the monitor
and no Kafka I/O at all. "now" = the floor + join-state entries + monitor-input: what the
worker does in process today, still without Kafka I/O. With ``--bare-rate`` (the
harness's (a), events/s, measured in the same session) it prints the ceiling on b / a:
(a) spends 1e6 / rate µs an event, of which "read" / 2 decoding and the rest fetching,
and driftline fetches the same bytes, so at best b / a = (fetch + read) / (fetch +
floor), per event, on a whole core.
"""

from __future__ import annotations

import argparse
import random

import numpy as np
import orjson
from wire_speed import per_event  # the median of the runs, per item, in µs

from driftline.agents.join.arrays import filled
from driftline.agents.join.dedupe import hashes
from driftline.agents.join.state import PartitionJoin
from driftline.agents.join.statelog import item
from driftline.agents.monitor.config import MonitorConfig
from driftline.agents.monitor.partition import PartitionMonitor
from driftline.keyhash import key_hashes
from driftline.models.wire import LABEL, PREDICTION, encode
from driftline.models.wire.internal import PREDICTIONS, SCORED, columnar_element

ARRAY = 500


def stream(n: int, features: int) -> list[tuple[bytes, bytes]]:
    """(predictions array, labels array) of ``ARRAY`` events each, as JSON bytes."""
    rng = random.Random(1)
    out = []
    for first in range(0, n, ARRAY):
        preds, labels = [], []
        for i in range(first, min(n, first + ARRAY)):
            x = [rng.gauss(0, 1) for _ in range(features)]
            preds.append({"prediction_id": f"b{i}", "model": "m", "version": 1,
                          "prediction": 2 * x[0], "ts": 1.7e9 + i / 1000,
                          "features": {f"x{j}": x[j] for j in range(features)}})
            labels.append({"prediction_id": f"b{i}", "label": 2 * x[0] + rng.gauss(0, 1),
                           "ts": 1.7e9 + i / 1000 + 1})
        out.append((orjson.dumps(preds), orjson.dumps(labels)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=20_000)
    parser.add_argument("--features", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--bare-rate", type=float, metavar="EVENTS_PER_S",
                        help="the harness's (a) from the same session: print the ceiling")
    parser.add_argument("--remembered", type=int, default=0, metavar="N",
                        help="scored ids the join remembers (frozen) before the stream")
    args = parser.parse_args()
    if args.pairs < ARRAY or args.repeat < 1:
        parser.error(f"--pairs must be at least {ARRAY} and --repeat at least 1")
    n = args.pairs
    raw = stream(n, args.features)
    decoded = [(PREDICTION.decode(p)[0], LABEL.decode(lab)[0]) for p, lab in raw]

    remembered = hashes([f"old-{i:010d}" for i in range(args.remembered)])
    prepared = []  # a join each run, remembering them already (not timed)
    for _ in range(args.repeat + 1):
        prepared.append(PartitionJoin(ttl=3600, dedupe_window=86_400))
        if args.remembered:
            prepared[-1].done.add_frozen(remembered, np.zeros(args.remembered))
            prepared[-1].done.frozen_many(["warm"])  # its search structures built

    def join() -> list[tuple[list, dict, list, dict]]:
        part = prepared.pop()
        out = []
        for preds, labels in decoded:
            part.add_events(preds, 0.0, _hashed(preds))
            _, pending = part.drain()
            part.add_events(labels, 0.0, _hashed(labels))
            scored, done = part.drain()
            out.append((preds, pending, scored, done))
        return out

    drained = join()
    assert sum(len(scored) for _, _, scored, _ in drained) == n
    elements = [b"[" + columnar_element(PREDICTIONS, 0, k, "m", preds) + b"," +
                columnar_element(SCORED, 0, k, "m", scored) + b"]"
                for k, (preds, _, scored, _) in enumerate(drained)]

    def monitor() -> None:
        part = PartitionMonitor(MonitorConfig())
        _, failed = part.apply_records(list(enumerate(elements)))
        assert not failed

    steps = {
        "read": lambda: [(orjson.loads(p), orjson.loads(lab)) for p, lab in raw],
        "validate": lambda: [(PREDICTION.decode(p), LABEL.decode(lab)) for p, lab in raw],
        "join": join,
        "scored": lambda: [encode(s) for _, _, s, _ in drained],
        "join-state entries": lambda: [list(filled([item(pid, r) for pid, r in records.items()]))
                                       for _, pending, _, done in drained
                                       for records in (pending, done)],
        "monitor-input": lambda: [(columnar_element(PREDICTIONS, 0, k, "m", preds),
                                   columnar_element(SCORED, 0, k, "m", scored))
                                  for k, (preds, _, scored, _) in enumerate(drained)],
        "monitor": monitor,
    }
    cost = {name: per_event(fn, n, args.repeat) for name, fn in steps.items()}  # a pair
    floor = cost["validate"] + cost["join"] + cost["scored"] + cost["monitor"]
    now = floor + cost["join-state entries"] + cost["monitor-input"]
    print(f"{n:,} pairs in {ARRAY}-event arrays, {args.features} features, "
          f"{args.remembered:,} ids remembered, median of {args.repeat} (µs a pair)")
    for name, us in cost.items():
        print(f"  {name:<22}{us:7.2f}")
    print(f"  {'floor':<22}{floor:7.2f}   validate + join + scored + monitor")
    print(f"  {'now':<22}{now:7.2f}   floor + join-state entries + monitor-input")
    if args.bare_rate:
        bare_us = 1e6 / args.bare_rate
        fetch = max(0.0, bare_us - cost["read"] / 2)
        for name, us in (("floor", floor), ("now", now)):
            ceiling = bare_us / (fetch + us / 2)
            print(f"ceiling on b / a, {name}: {ceiling:.2f} ((a) {bare_us:.2f} µs an event: "
                  f"fetch {fetch:.2f} + read {cost['read'] / 2:.2f}; driftline: fetch + "
                  f"{us / 2:.2f})")


def _hashed(events: list) -> np.ndarray:
    """The events' id hashes, as the intake's route makes them with their partitions."""
    return key_hashes([ev.prediction_id.encode() for ev in events], 8)[1]


if __name__ == "__main__":
    main()
