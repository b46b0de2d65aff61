"""The concept-drift test's false alarms on stationary streams, by threshold: its calibration.

    .venv/bin/python bench/glr_null.py [--pairs 20000000] [--thresholds 8,10,12,14]

:class:`~driftline.agents.monitor.changepoint.BinnedGLR` (the product's detector, as the
monitor calls it: batches of 500) on i.i.d. errors, at each threshold: a regression's
(squared errors of normal, Student t (2 degrees of freedom) and log-normal residuals: five
bins) and a classifier's (0/1 errors at rates 0.02, 0.1, 0.3 and 0.5: two bins). The count of
detections per million pairs at each threshold is what
``calibration.glr_threshold`` is fitted on (``log rate = a - b * threshold`` per bin count,
above the thresholds where the fit is checked); ``--check`` runs the detector at the
thresholds the default budget gives and counts its false alarms on ``--pairs`` pairs per
stream (and, on the classifiers' 0/1 errors, River's ``ADWIN(0.002)``'s).
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from driftline.agents.monitor.changepoint import BinnedGLR

BATCH = 500


def residuals(kind: str, rng: np.random.Generator, n: int) -> np.ndarray:
    if kind == "normal":
        return rng.standard_normal(n) ** 2
    if kind == "t2":
        return rng.standard_t(2, n) ** 2
    if kind == "lognormal":
        return (rng.lognormal(0.0, 1.0, n) - math.exp(0.5)) ** 2
    return (rng.random(n) < float(kind)).astype(float)  # a classifier's error rate


STREAMS = {5: ("normal", "t2", "lognormal"), 2: ("0.02", "0.1", "0.3", "0.5")}


def alarms(kind: str, threshold: float, pairs: int, seed: int) -> int:
    rng = np.random.default_rng(seed)
    detector = BinnedGLR(1e-8, kind[0].isdigit(), threshold)  # the threshold, not a rate
    chunk = 1_000_000
    for _ in range(0, pairs, chunk):
        errors = residuals(kind, rng, chunk)
        for start in range(0, chunk, BATCH):
            detector.update_many(errors[start:start + BATCH])
    return detector.detections


def adwin_alarms(kind: str, pairs: int, seed: int) -> int:
    """River's ADWIN(0.002) on the same stream (its bound holds for 0/1 errors)."""
    from river import drift

    rng = np.random.default_rng(seed)
    detector, found = drift.ADWIN(delta=0.002), 0
    for _ in range(0, pairs, 1_000_000):
        for e in residuals(kind, rng, 1_000_000).tolist():
            detector.update(e)
            found += detector.drift_detected
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--pairs", type=int, default=20_000_000, help="pairs per stream")
    ap.add_argument("--thresholds", default="8,9,10,11,12,13")
    ap.add_argument("--check", action="store_true",
                    help="count false alarms at the default budget's thresholds instead")
    args = ap.parse_args()
    started = time.perf_counter()
    if args.check:
        from driftline.agents.monitor import calibration
        rate = calibration.per_test_rate(1.0, calibration.count_tests(features=10))
        print(f"rate per test {rate:.3g} per pair (10 features, budget 1 per million)")
        print("| stream | bins | threshold | pairs | false alarms | allowed | ADWIN(0.002) |")
        print("|---|---|---|---|---|---|---|")
        for bins, kinds in STREAMS.items():
            h = calibration.glr_threshold(rate, bins)
            for kind in kinds:
                n = alarms(kind, h, args.pairs, seed=1)
                river = adwin_alarms(kind, args.pairs, seed=1) if bins == 2 else "-"
                print(f"| {kind} | {bins} | {h:.2f} | {args.pairs:,} | {n} | "
                      f"{rate * args.pairs:.2f} | {river} |", flush=True)
    else:
        thresholds = [float(h) for h in args.thresholds.split(",")]
        print("| stream | bins | " + " | ".join(f"h={h:g}" for h in thresholds) + " |")
        print("|---|---|" + "---|" * len(thresholds))
        for bins, kinds in STREAMS.items():
            for kind in kinds:
                cells = [alarms(kind, h, args.pairs, seed=1) / args.pairs * 1e6
                         for h in thresholds]
                print(f"| {kind} | {bins} | " + " | ".join(f"{c:.3g}" for c in cells) + " |",
                      flush=True)
    print(f"\n{time.perf_counter() - started:.0f} s, {args.pairs:,} pairs a stream")


if __name__ == "__main__":
    main()
