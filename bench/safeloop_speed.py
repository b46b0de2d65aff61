"""Per-pair cost of shadow scoring and the canary in the monitor (issue 19), in one run.

    .venv/bin/python bench/safeloop_speed.py [--pairs 100000] [--batch 500] [--features 10]

Rows (microseconds per pair, lower is better; the whole worker spends ~55 µs a pair,
README "Performance"):
  canary, nothing watched     every pair's version checked: no promotion in sight
  shadow, no challenger       the model has no ``challenger`` alias
  shadow, a challenger        the challenger predicts every pair from its features
  canary, in its window       the previous champion predicts every pair of the new one
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from driftline.agents.monitor.canary import Canary
from driftline.agents.monitor.shadow import Shadow
from driftline.models.linear import LinearModel


class Source:
    def __init__(self, features: int, challenger: tuple[int, float] | None = None) -> None:
        self.model = LinearModel(np.ones(features), 0.0, [f"x{j}" for j in range(features)])
        self.current = challenger

    def load(self, model: str, version: int) -> LinearModel:
        return self.model

    def holdout_mse(self, model: str, version: int) -> float:
        return 1.0

    def challenger(self, model: str) -> tuple[int, float] | None:
        return self.current


def per_pair(watcher: Any, pairs: list[dict[str, Any]], batch: int) -> float:
    started = time.perf_counter()
    for i in range(0, len(pairs), batch):
        watcher.observe(pairs[i:i + batch])
    return (time.perf_counter() - started) / len(pairs) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--features", type=int, default=10)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    pairs = [{"prediction_id": str(i), "model": "m", "version": 1, "prediction": 0.0,
              "label": 1.0, "error": -1.0,
              "features": {f"x{j}": float(v) for j, v in enumerate(rng.normal(size=args.features))},
              "ts": 1.0, "label_ts": 1.0} for i in range(args.pairs)]
    never = 10**12  # a window that never closes: the steady cost
    in_window = Canary(Source(args.features), pairs=never)
    in_window.observe([{**pairs[0], "version": 0}])  # v0 served before: v1 is in its canary
    rows = [("canary, nothing watched", Canary(Source(args.features), pairs=never)),
            ("shadow, no challenger", Shadow(Source(args.features), pairs=never)),
            (f"shadow, a challenger ({args.features} features)",
             Shadow(Source(args.features, (2, 0.0)), pairs=never)),
            (f"canary, in its window ({args.features} features)", in_window)]
    print(f"{args.pairs:,} pairs, batches of {args.batch}")
    for label, watcher in rows:
        print(f"  {label:<36} {per_pair(watcher, pairs, args.batch):6.2f} µs/pair")


if __name__ == "__main__":
    main()
