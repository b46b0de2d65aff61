"""Per-pair cost of the monitor class beside River's bare rolling MSE, in one run.

    .venv/bin/python bench/monitor_speed.py [--pairs 200000] [--batch 500] [--repeat 5]

Rows (median of --repeat runs, pairs/s; higher is better):
  river Rolling(MSE)       river.utils.Rolling(metrics.MSE(), 1000).update per pair
  river ADWIN              drift.ADWIN().update per pair
  river KSWIN (1 feature)  drift.KSWIN().update per value (the data-drift option we rejected)
  monitor pairs            Monitor.process_pairs: rolling MSE, ADWIN, threshold rule
  monitor predictions      Monitor.process_predictions: PSI on 10 features + prediction
  monitor both             pairs + their predictions (what the issue asks to compare)

Issue #17, each detector alone on top of "monitor both" (its cost per event = the
difference of the per-event times), then everything on side by side with everything off:
  + estimation (DLE)       [estimation] (on by default; "both" above runs it)
  + multivariate (PCA)     [multivariate] enabled
  + segments (10)          segments = true, 10 segments of 10% each
  all off / all on         estimation off / estimation, multivariate, 10 segments on
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from river import drift, metrics, utils
from simulate import stream

from driftline.agents.monitor.config import MonitorConfig
from driftline.agents.monitor.core import Monitor


def rate(fn, n: int, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return n / statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    n, b = args.pairs, args.batch
    predictions, pairs = stream(n, seed=1)
    ys = [p["label"] for p in pairs]
    ps = [p["prediction"] for p in pairs]
    xs = [p["features"]["x0"] for p in predictions]
    # The input lists hold ~1M objects that a worker would never have alive at once;
    # keep the garbage collector from re-scanning them on every collection.
    gc.collect()
    gc.freeze()

    def river_rolling():
        m = utils.Rolling(metrics.MSE(), window_size=1000)
        for y, p in zip(ys, ps):
            m.update(y, p)

    def river_adwin():
        d = drift.ADWIN()
        for y, p in zip(ys, ps):
            d.update((y - p) ** 2)

    kswin_n = min(n, 20_000)

    def river_kswin():
        d = drift.KSWIN(seed=1)
        for x in xs[:kswin_n]:
            d.update(x)

    def monitor_pairs():
        mon = Monitor(MonitorConfig())
        for i in range(0, n, b):
            mon.process_pairs(pairs[i:i + b])

    def monitor_predictions():
        mon = Monitor(MonitorConfig())
        for i in range(0, n, b):
            mon.process_predictions(predictions[i:i + b])

    def both(config: MonitorConfig):
        def run():
            mon = Monitor(config)
            for i in range(0, n, b):
                mon.process_predictions(predictions[i:i + b])
                mon.process_pairs(pairs[i:i + b])
        return run

    monitor_both = both(MonitorConfig())
    for k, (p, pair) in enumerate(zip(predictions, pairs)):  # 10 segments, 10% each
        p["segment"] = pair["segment"] = f"s{k % 10}"

    def config(estimation: bool = False, multivariate: bool = False,
               segments: bool = False) -> MonitorConfig:
        return MonitorConfig.from_dict({"defaults": {
            "estimation": {"enabled": estimation}, "multivariate": {"enabled": multivariate},
            "segments": segments}})

    rows = [("river Rolling(MSE)", rate(river_rolling, n, args.repeat)),
            ("river ADWIN", rate(river_adwin, n, args.repeat)),
            ("river KSWIN (1 feature)", rate(river_kswin, kswin_n, args.repeat)),
            ("monitor pairs", rate(monitor_pairs, n, args.repeat)),
            ("monitor predictions", rate(monitor_predictions, n, args.repeat)),
            ("monitor both", rate(monitor_both, n, args.repeat))]
    off = rate(both(config()), n, args.repeat)
    added = [("+ estimation (DLE)", rate(both(config(estimation=True)), n, args.repeat)),
             ("+ multivariate (PCA)", rate(both(config(multivariate=True)), n, args.repeat)),
             ("+ segments (10)", rate(both(config(segments=True)), n, args.repeat))]
    on = rate(both(config(True, True, True)), n, args.repeat)
    base = rows[0][1]
    print(f"{n:,} pairs, batches of {b}, median of {args.repeat}")
    print(f"{'':26}{'per second':>14}{'us each':>10}{'cost vs Rolling(MSE)':>22}")
    for name, r in rows:
        print(f"{name:26}{r:14,.0f}{1e6 / r:10.2f}{base / r:21.2f}x")
    print(f"\nissue #17 detectors, pairs + predictions, 10 features{'':4}{'us per pair':>12}")
    print(f"{'all off':26}{off:14,.0f}{1e6 / off:10.2f}")
    for name, r in added:
        print(f"{name:26}{r:14,.0f}{1e6 / r:10.2f}{'':4}+{1e6 / r - 1e6 / off:.2f} us")
    print(f"{'all on':26}{on:14,.0f}{1e6 / on:10.2f}{'':4}throughput "
          f"{(on / off - 1) * 100:+.1f}% vs all off")


if __name__ == "__main__":
    main()
