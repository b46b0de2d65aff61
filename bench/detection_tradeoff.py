"""Delay against false alarms: the change-point test and ADWIN at several settings.

    .venv/bin/python bench/detection_tradeoff.py [--seeds 5] [--pairs 25000]
                                                 [--stationary-pairs 200000]

Where ``bench/detection.py`` runs each detector at its one setting, this runs the
concept-drift test (:class:`~driftline.agents.monitor.changepoint.BinnedGLR`) at several
thresholds and River's ADWIN (rises and falls, as River reports them) at several deltas on
the same per-pair errors: ``bench/detection.py``'s streams and models, the error fed in
batches of 500 as the monitor feeds it. For each setting: false alarms per million pairs
on the stationary streams (regression: normal, Student t and log-normal noise together;
classifiers: SEA and Agrawal without a switch) and the median delay on each drifting
family (pairs after the change began; ``missed`` where no seed detected it).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
from detection import monitored, river_detections  # bench/, the script's folder
from detection_streams import DRIFTING, STATIONARY
from river import drift

from driftline.agents.monitor.changepoint import BinnedGLR

THRESHOLDS = (8.0, 10.0, 12.0, 14.0, 16.0, 19.2)
DELTAS = (0.002, 2e-4, 2e-5, 1e-6)


def glr_hits(threshold: float, errors: np.ndarray, bounded: bool) -> list[int]:
    detector = BinnedGLR(1e-8, bounded, threshold)
    return [start + i for start in range(0, len(errors), 500)
            for i, _, _ in detector.update_many(errors[start:start + 500])]


def settings() -> list[tuple[str, Any]]:
    return ([(f"glr {h:g}", h) for h in THRESHOLDS]
            + [(f"ADWIN({d:g})", d) for d in DELTAS])


def hits_of(name: str, value: Any, errors: np.ndarray, task: str) -> list[int]:
    if name.startswith("glr"):
        return glr_hits(value, errors, task == "binary")
    return river_detections(lambda: drift.ADWIN(delta=value), errors)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--pairs", type=int, default=25_000)
    ap.add_argument("--stationary-pairs", type=int, default=200_000)
    ap.add_argument("--train", type=int, default=2_000)
    args = ap.parse_args()
    started = time.perf_counter()
    rows: dict[str, dict[str, str]] = {name: {} for name, _ in settings()}
    alarms: dict[tuple[str, str], list[int]] = {}  # (setting, task) -> [alarms, pairs]
    for family in DRIFTING + STATIONARY:
        n = args.pairs if family in DRIFTING else args.stationary_pairs
        streams = [monitored(family, seed, args.train, n)[3]
                   for seed in range(1, args.seeds + 1)]
        start = family.change(n)
        for name, value in settings():
            delays = []
            for errors in streams:
                hits = hits_of(name, value, errors, family.task)
                end = n if start is None else start
                count = alarms.setdefault((name, family.task), [0, 0])
                count[0] += sum(h < end for h in hits)
                count[1] += end
                after = [h - start for h in hits if start is not None and h >= start]
                if after:
                    delays.append(after[0])
            if start is not None:
                rows[name][family.name] = (f"{np.median(delays):,.0f}" if delays else "missed")
        print(f"# {family.name}: {time.perf_counter() - started:.0f} s", flush=True)
    for task in ("regression", "binary"):
        families = [f.name for f in DRIFTING if f.task == task]
        print(f"\n{task}: false alarms per million pairs (stationary and pre-change parts "
              f"together), median delay per family")
        print("| setting | false alarms per million | " + " | ".join(families) + " |")
        print("|---|---|" + "---|" * len(families))
        for name, _ in settings():
            n_alarms, pairs = alarms[(name, task)]
            print(f"| {name} | {n_alarms / pairs * 1e6:,.1f} ({n_alarms}) | "
                  + " | ".join(rows[name].get(f, "-") for f in families) + " |")
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
