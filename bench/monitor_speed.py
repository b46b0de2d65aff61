"""Per-pair cost of the monitor class beside River's bare rolling MSE, in one run.

    .venv/bin/python bench/monitor_speed.py [--pairs 200000] [--batch 500] [--repeat 5]

Rows (median of --repeat runs, pairs/s; higher is better):
  river Rolling(MSE)       river.utils.Rolling(metrics.MSE(), 1000).update per pair
  river ADWIN              drift.ADWIN().update per pair
  river KSWIN (1 feature)  drift.KSWIN().update per value (the data-drift option we rejected)
  monitor pairs            Monitor.process_pairs: rolling MSE, the error's change-point
                           test, threshold rule
  monitor pairs, ADWIN     the same with ADWIN as the error's detector (before issue 35)
  monitor predictions      Monitor.process_predictions: PSI on 10 features + prediction
  monitor both             pairs + their predictions (what the issue asks to compare)

Issue #17, each detector alone on top of "monitor both" (its cost per event = the
difference of the per-event times), then everything on side by side with everything off:
  + estimation (DLE)       [estimation] (on by default; "both" above runs it)
  + multivariate (PCA)     [multivariate] enabled
  + segments (10)          segments = true, 10 segments of 10% each
  all off / all on         estimation off / estimation, multivariate, 10 segments on

Issue #33, the same "monitor both" for classifiers, beside the regression's:
  binary                   P(1) predictions, 0/1 labels (metrics with ROC and PR AUC)
  multiclass (10 classes)  class predictions with 10 probabilities each, class labels
                           (the dict path: a class is not a monitor-input column)

Then where "all off" goes and the floor of "all on" (no segments in the stream):
  build                    the events' dicts turned into columns (VersionMonitor.batch)
  detectors, all off       the rules on built batches: rolling MSE, the error test,
                           threshold, PSI
  detectors + est + mv     the same with estimation and multivariate drift on
With segments every event meets the detectors twice (model-wide, and in its segment); a
segment's pass can cost no less than one more pass over the whole batch, so "all on" is at
least build + (detectors + est + mv) + detectors, whatever the implementation.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import numpy as np
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

    def monitor_pairs(config: MonitorConfig | None = None):
        def run():
            mon = Monitor(config or MonitorConfig())
            for i in range(0, n, b):
                mon.process_pairs(pairs[i:i + b])
        return run

    adwin = MonitorConfig.from_dict({"defaults": {"concept_drift": {"detector": "adwin"}}})

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
            ("monitor pairs", rate(monitor_pairs(), n, args.repeat)),
            ("monitor pairs, ADWIN", rate(monitor_pairs(adwin), n, args.repeat)),
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

    classifier_rows(predictions, pairs, n, b, args.repeat, 1e6 / rows[-1][1])

    unsegmented = [{k: v for k, v in e.items() if k != "segment"} for e in predictions]
    plain_pairs = [{k: v for k, v in e.items() if k != "segment"} for e in pairs]

    def batches(config: MonitorConfig):
        vm = Monitor(config).version("m", 1, 10)
        return vm, [(vm.batch(unsegmented[i:i + b]), vm.batch(plain_pairs[i:i + b], True))
                    for i in range(0, n, b)]

    def build():
        batches(config())

    def detectors(config: MonitorConfig):
        def run():
            vm, built = batches(config)
            started = time.perf_counter()
            for p, q in built:
                vm.predictions(p)
                vm.pairs(q)
            return time.perf_counter() - started
        return run

    def timed(fn) -> float:  # median seconds of fn's own timing
        return statistics.median(fn() for _ in range(args.repeat))

    t_build = 1 / rate(build, 1, args.repeat) / n
    t_off = timed(detectors(config())) / n
    t_on = timed(detectors(config(True, True))) / n
    print(f"\nwhere all off goes, and the floor of all on{'':10}{'us per pair':>12}")
    print(f"{'build (dicts -> columns)':34}{t_build * 1e6:10.2f}")
    print(f"{'detectors, all off':34}{t_off * 1e6:10.2f}")
    print(f"{'detectors + est + mv':34}{t_on * 1e6:10.2f}")
    floor = t_build + t_on + t_off
    print(f"{'floor of all on (a 2nd pass)':34}{floor * 1e6:10.2f}    throughput "
          f"{((t_build + t_off) / floor - 1) * 100:+.1f}% vs all off at best; estimation and "
          f"multivariate alone {((t_build + t_off) / (t_build + t_on) - 1) * 100:+.1f}%")


def classifier_rows(predictions: list[dict], pairs: list[dict], n: int, b: int, repeat: int,
                    regression_us: float) -> None:
    """Issue #33: "monitor both" for a binary and a 10-class model, per pair."""
    rng = np.random.default_rng(2)
    classes = [f"c{k}" for k in range(10)]
    plain = [{k: v for k, v in e.items() if k != "segment"} for e in predictions]
    plain_pairs = [{k: v for k, v in e.items() if k != "segment"} for e in pairs]
    p1 = 1 / (1 + np.exp(-np.array([e["prediction"] for e in plain])))
    truth = (rng.random(n) < p1).astype(float)
    binary = ([{**e, "prediction": float(p)} for e, p in zip(plain, p1)],
              [{**e, "prediction": float(p), "label": y, "error": None}
               for e, p, y in zip(plain_pairs, p1, truth)])
    logits = rng.normal(0, 1.5, (n, 10))
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    guess = proba.argmax(axis=1)
    label = [classes[int(rng.choice(10, p=row))] for row in proba]
    multi = ([{**e, "prediction": classes[g], "probabilities": dict(zip(classes, row.tolist()))}
              for e, g, row in zip(plain, guess, proba)], [])
    multi[1].extend({**q, "prediction": p["prediction"], "label": y, "error": None,
                     "probabilities": p["probabilities"]}
                    for q, p, y in zip(plain_pairs, multi[0], label))

    def both(task: str, events: tuple[list[dict], list[dict]]):
        config = MonitorConfig.from_dict({"defaults": {"task": task}})

        def run():
            mon = Monitor(config)
            for i in range(0, n, b):
                mon.process_predictions(events[0][i:i + b])
                mon.process_pairs(events[1][i:i + b])
        return run

    print(f"\nissue #33 classifiers, pairs + predictions, 10 features{'':3}{'us per pair':>12}")
    print(f"{'regression (above)':26}{'':14}{regression_us:10.2f}")
    for name, task, events in (("binary", "binary", binary),
                               ("multiclass (10 classes)", "multiclass", multi)):
        r = rate(both(task, events), n, repeat)
        print(f"{name:26}{r:14,.0f}{1e6 / r:10.2f}    {1e6 / r / regression_us:.2f}x regression")


if __name__ == "__main__":
    main()
