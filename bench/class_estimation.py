"""How close CBPE's estimates come to the realised metrics of a classifier, per seed.

    .venv/bin/python bench/class_estimation.py [--seeds 5] [--pairs 6000]

Stationary streams through the real :class:`~driftline.agents.monitor.core.Monitor` as the
worker feeds it (batches of 500 predictions, then their scored pairs as the join makes
them), default config but the task. At the end, the version's report gives the estimate
(from the predictions' probabilities alone) and the realised metric over the same window,
the last 1,000 pairs:

  binary       a calibrated model (``tests/simulate.py``'s ``calibrated_binary``: P(1) =
               sigmoid(3 x), labels drawn from it), seeds 0, 1, ...; at ``decision_threshold``
               0.5 and 0.3: accuracy, precision, recall, F1
  multiclass   ``tests/simulate.py``'s overconfident softmax model (4 classes, probabilities
               at temperature 0.4), seeds 10, 11, ... (``tests/test_classifiers.py``'s);
               accuracy, macro F1, and the uncalibrated estimate of accuracy (the mean of
               the top probability) CBPE's calibration replaces

Each cell is ``estimated / realised (absolute error)``; the last column is the largest error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import msgspec
import numpy as np
from simulate import binary_events, calibrated_binary, softmax_pairs

from driftline.agents.join.state import make_scored
from driftline.agents.monitor.config import MonitorConfig
from driftline.agents.monitor.core import Monitor
from driftline.models.wire import LABEL, PREDICTION

BATCH = 500
THRESHOLDS = (0.5, 0.3)
BINARY_METRICS = ("accuracy", "precision", "recall", "f1")
Cell = tuple[float, float]  # (estimated, realised)


def monitored(config: MonitorConfig, model: str, predictions: list[dict],
              pairs: list[dict]) -> dict:
    """The stream through a Monitor, predictions then their pairs a batch at a time: the
    version's report."""
    monitor = Monitor(config)
    for start in range(0, len(pairs), BATCH):
        monitor.process_predictions(predictions[start:start + BATCH])
        monitor.process_pairs(pairs[start:start + BATCH])
    return monitor.versions[(model, 1)].report()


def binary(seed: int, pairs: int) -> dict[str, Cell]:
    predictions, scored = binary_events(*calibrated_binary(pairs, seed), seed)
    out = {}
    for threshold in THRESHOLDS:
        config = MonitorConfig.from_dict(
            {"models": {"churn": {"task": "binary", "decision_threshold": threshold}}})
        report = monitored(config, "churn", predictions, scored)
        for name in BINARY_METRICS:
            out[f"binary, threshold {threshold} | {name}"] = (
                report[f"estimated_{name}"], report[f"rolling_{name}"])
    return out


def multiclass(seed: int, pairs: int) -> dict[str, Cell]:
    predictions, labels = softmax_pairs(pairs, seed)
    scored = [msgspec.to_builtins(make_scored(PREDICTION.validate(p), LABEL.validate(lab),
                                              p["ts"], lab["ts"]))
              for p, lab in zip(predictions, labels)]
    config = MonitorConfig.from_dict({"models": {"zoo": {"task": "multiclass"}}})
    report = monitored(config, "zoo", predictions, scored)
    window = predictions[-config.for_model("zoo").window:]
    naive = float(np.mean([max(p["probabilities"].values()) for p in window]))
    return {"multiclass | accuracy": (report["estimated_accuracy"],
                                      report["rolling_accuracy"]),
            "multiclass | macro F1": (report["estimated_macro_f1"],
                                      report["rolling_macro_f1"]),
            "multiclass | accuracy, uncalibrated": (naive, report["rolling_accuracy"])}


def table(runs: list[dict[str, Cell]], seeds: list[int], label: str) -> list[str]:
    head = ["stream", "metric", *(f"{label} {s}" for s in seeds), "max error"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key in runs[0]:
        stream, metric = key.split(" | ")
        cells = [run[key] for run in runs]
        errors = [abs(est - real) for est, real in cells]
        lines.append("| " + " | ".join(
            [stream, metric, *(f"{est:.3f} / {real:.3f} ({err:.3f})"
                               for (est, real), err in zip(cells, errors)),
             f"{max(errors):.3f}"]) + " |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5, help="seeds per stream")
    ap.add_argument("--pairs", type=int, default=6_000,
                    help="pairs per stream (the first 1,000 fit the estimator)")
    args = ap.parse_args()
    if args.pairs < 2_000:
        ap.error("--pairs must be at least 2000: 1,000 fit the estimator, 1,000 are judged")
    seeds = list(range(args.seeds))
    print(f"CBPE's estimate against the realised metric over the last 1,000 of "
          f"{args.pairs:,} stationary pairs, {args.seeds} seeds")
    print("estimated / realised (absolute error)\n")
    for line in table([binary(s, args.pairs) for s in seeds], seeds, "seed"):
        print(line)
    print()
    mseeds = [10 + s for s in seeds]
    for line in table([multiclass(s, args.pairs) for s in mseeds], mseeds, "seed"):
        print(line)


if __name__ == "__main__":
    main()
