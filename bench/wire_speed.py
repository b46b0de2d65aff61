"""Micro-benchmark of the wire layer: µs per event to decode + validate and to encode.

    .venv/bin/python bench/wire_speed.py [--events 500] [--features 10] [--repeat 200]
                                         [--categorical 0]

One message is a JSON-array batch of ``--events`` predictions (or labels) with
``--features`` features each, as the Publisher writes them; ``--categorical N`` makes N of
them categories (a string of 20 per feature) and leaves a numeric one null in 2 % of
events. Each figure is the median over ``--repeat`` runs of the whole batch, divided by
the batch size; ``orjson.loads`` alone (no validation) is the floor. Issue 14's target:
decode + validate <= 1.5 µs per prediction with 10 features.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import orjson

from driftline.models.wire import LABEL, PREDICTION, encode


def batch(kind: str, n: int, features: int, categorical: int = 0) -> list[dict]:
    rnd = random.Random(7)
    if kind == "label":
        return [{"prediction_id": f"req-{i:08d}", "label": rnd.gauss(0, 1),
                 "ts": 1.7e9 + i} for i in range(n)]
    return [{"prediction_id": f"req-{i:08d}", "model": "houses", "version": 3,
             "prediction": rnd.gauss(0, 1), "ts": 1.7e9 + i,
             "features": _features(rnd, features, categorical)}
            for i in range(n)]


def _features(rnd: random.Random, features: int, categorical: int) -> dict:
    out: dict = {f"x{j}": rnd.gauss(0, 1) for j in range(features - categorical)}
    out.update({f"c{j}": f"cat-{rnd.randrange(20)}" for j in range(categorical)})
    if categorical and out and rnd.random() < 0.02:
        out["x0"] = None
    return out


def per_event(fn, n: int, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--features", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--categorical", type=int, default=0,
                        help="how many of the features are categories")
    args = parser.parse_args()
    print(f"{args.events}-event batches, {args.features} features ({args.categorical} "
          f"categorical), median of {args.repeat}")
    print(f"{'event':<12}{'orjson.loads':>14}{'decode+validate':>17}{'encode':>10}   (µs/event)")
    for name, kind in (("prediction", PREDICTION), ("label", LABEL)):
        events = batch(name, args.events, args.features, args.categorical)
        raw = orjson.dumps(events)
        good, bad = kind.decode(raw)
        assert len(good) == args.events and not bad
        floor = per_event(lambda raw=raw: orjson.loads(raw), args.events, args.repeat)
        dec = per_event(lambda kind=kind, raw=raw: kind.decode(raw), args.events, args.repeat)
        enc = per_event(lambda good=good: encode(good), args.events, args.repeat)
        print(f"{name:<12}{floor:>14.2f}{dec:>17.2f}{enc:>10.2f}")


if __name__ == "__main__":
    main()
