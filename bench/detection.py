"""Detection delay and false alarms on River's drift generators, beside River's detectors.

    .venv/bin/python bench/detection.py [--seeds 5] [--pairs 25000] [--stationary-pairs 200000]
                                        [--train 2000] [--families NAME,...] [--json PATH] [--quick]

Measures the detector as it ships; changes nothing. For each stream family
(``bench/detection_streams.py``: FriedmanDrift gra/lea/gsg, Hyperplane, SEA, Agrawal,
STAGGER and Mixed switches, abrupt and gradual, and stationary streams with normal,
Student t and log-normal noise) and seed:

1. a numpy model is fitted on the first ``--train`` rows, before any change: ridge
   (``train_ridge``) for regression, logistic (``train_logistic``) for the binary ones;
2. the next ``--pairs`` rows (``--stationary-pairs`` for the stationary families) become
   prediction and label events (binary: prediction = P(1), label 0/1, task ``binary``),
   one pair a second of event time, run through ``driftline replay``'s
   ``Replay(config).feed(rows).finish()`` with the default config (default false-alarm
   budget, split over the features the events carry); the firing ``concept_drift`` and
   ``metric_threshold`` alerts are read back as pair positions;
3. the same per-pair errors (squared error; for a classifier the 0/1 error at 0.5, the
   monitor's) go through River's ``ADWIN(delta=0.002)`` (River's default), ``ADWIN(2e-5)``,
   ``PageHinkley()`` and, for classifiers, ``binary.DDM()`` and ``binary.HDDMA()``, all at
   River's defaults otherwise (so ADWIN and PageHinkley also flag a *fall* of the error,
   which driftline does not report).

A drifting stream changes after 40% of its monitored pairs (a gradual one begins there,
see ``detection_streams``). Rows of the output:

* **delay**: pairs from the start of the change to a detector's first detection at or after
  it, median and 90th percentile over the seeds that detected it (nearest rank), and how
  many did; ``ratio`` is driftline's ``concept_drift`` median over ADWIN(0.002)'s.
* **false alarms per million pairs**: detections before the change (every detection on a
  stationary stream), with their count. River's detectors reset and count every
  detection; driftline counts firing alerts, and its alert book keeps one episode open at
  a time, so a second rise during an open episode is not a second alert.

``--quick``: 2 seeds, 6,000 pairs a stream (a smoke run; its numbers mean little).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from detection_streams import DRIFTING, STATIONARY, Family  # bench/, the script's folder
from river import drift

from driftline.agents.monitor.config import ConceptDriftConfig, MonitorConfig
from driftline.agents.monitor.drift import ErrorDrift
from driftline.eventfile import Row
from driftline.models.classifier_training import train_logistic
from driftline.models.training import train_ridge
from driftline.replay import Replay

START_TS = 1_767_225_600.0  # pair i has event time START_TS + i seconds
DRIFTLINE = ("driftline concept_drift", "driftline metric_threshold")
RIVER: dict[str, Callable[[], Any]] = {
    "ADWIN(0.002)": lambda: drift.ADWIN(delta=0.002),
    "ADWIN(2e-5)": lambda: drift.ADWIN(delta=2e-5),
    "PageHinkley": drift.PageHinkley,
    "DDM": drift.binary.DDM,
    "HDDM_A": drift.binary.HDDMA,
}
BINARY_ONLY = {"DDM", "HDDM_A"}
BEFORE = "ADWIN(budget)"  # driftline's concept_drift before issue 35
DETECTORS = (*DRIFTLINE, BEFORE, *RIVER)


def detectors_for(task: str) -> list[str]:
    return [d for d in DETECTORS if task == "binary" or d not in BINARY_ONLY]


def events(predictions: np.ndarray, labels: np.ndarray, features: np.ndarray,
           names: list[str], seed: int) -> Iterator[Row]:
    """A prediction event and its label, one pair a second, in the file's order."""
    line = 0
    for i, (p, y, row) in enumerate(zip(predictions.tolist(), labels.tolist(),
                                        features.tolist())):
        ts = START_TS + i
        pid = f"{seed}-{i}"
        yield Row(line, "prediction", {"prediction_id": pid, "model": "m", "version": 1,
                                       "prediction": p, "features": dict(zip(names, row)),
                                       "ts": ts})
        yield Row(line + 1, "label", {"prediction_id": pid, "label": y, "ts": ts})
        line += 2


def river_detections(make: Callable[[], Any], errors: np.ndarray) -> list[int]:
    detector = make()
    hits = []
    for i, e in enumerate(errors.tolist()):
        detector.update(e)
        if detector.drift_detected:
            hits.append(i)
    return hits


def monitored(family: Family, seed: int, train: int, n: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """A stream's monitored part: its features, the model's predictions, the labels, the
    per-pair errors the monitor's error test reads, and the feature names."""
    X, y, names = family.draw(seed, train, n)
    if family.task == "regression":
        model: Any = train_ridge(X[:train], y[:train], names).model
    else:
        model = train_logistic(X[:train], y[:train], names).model
    predictions, labels = np.asarray(model.predict(X[train:]), float), y[train:]
    errors = ((np.abs(predictions - labels) >= 0.5).astype(float) if family.task == "binary"
              else (predictions - labels) ** 2)
    return X[train:], predictions, labels, errors, names


def run_stream(family: Family, seed: int, train: int, n: int) -> dict[str, Any]:
    """One stream: the positions (in its ``n`` monitored pairs) each detector detected at."""
    X, predictions, labels, errors, names = monitored(family, seed, train, n)
    config = MonitorConfig.from_dict({"models": {"m": {"task": family.task}}})
    replay = Replay(config)
    result = replay.feed(events(predictions, labels, X, names, seed)).finish()
    vm = replay.monitor.versions[("m", 1)]
    found: dict[str, list[int]] = {}
    for name in DRIFTLINE:
        kind = name.split()[1]
        found[name] = sorted(round(a["ts"] - START_TS) for a in result.alerts
                             if a["kind"] == kind and a["status"] == "firing")
    # driftline's detector before issue 35: ADWIN on the raw error, its delta from the budget
    before = ErrorDrift(ConceptDriftConfig(detector="adwin"), vm.rate)
    found[BEFORE] = sorted(start + i for start in range(0, len(errors), 500)
                           for i, _, _ in before.update_many(errors[start:start + 500]))
    for name in detectors_for(family.task)[len(DRIFTLINE) + 1:]:
        found[name] = river_detections(RIVER[name], errors)
    return {"family": family.name, "task": family.task, "seed": seed, "pairs": n,
            "start": family.change(n), "features": len(names),
            "threshold": vm.concept.detector.params["threshold"],
            "delta": before.params["delta"],
            "error_before": float(errors[:family.change(n) or n].mean()),
            "detections": found}


def nearest_rank(values: list[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per detector over one family's runs: delays, detected, false alarms and pairs."""
    out: dict[str, dict[str, Any]] = {}
    for name in detectors_for(runs[0]["task"]):
        delays: list[int] = []
        alarms = pairs = 0
        for run in runs:
            hits, start = run["detections"][name], run["start"]
            end = run["pairs"] if start is None else start
            alarms += sum(h < end for h in hits)
            pairs += end
            if start is not None:
                after = [h - start for h in hits if h >= start]
                if after:
                    delays.append(after[0])
        out[name] = {"delays": delays, "alarms": alarms, "pairs": pairs, "runs": len(runs),
                     "median": float(np.median(delays)) if delays else None,
                     "p90": nearest_rank(delays, 0.9) if delays else None,
                     "per_million": alarms / pairs * 1e6}
    return out


def delay_table(summaries: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    head = ["family", *DETECTORS, "ratio"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for family, per in summaries.items():
        cells = [family]
        for name in DETECTORS:
            s = per.get(name)
            if s is None:
                cells.append("-")
            elif s["median"] is None:
                cells.append(f"missed (0/{s['runs']})")
            else:
                cells.append(f"{s['median']:,.0f} / {s['p90']:,} ({len(s['delays'])}/"
                             f"{s['runs']})")
        ours, theirs = per[DRIFTLINE[0]]["median"], per["ADWIN(0.002)"]["median"]
        cells.append(f"{ours / theirs:.2f}" if ours is not None and theirs else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def alarm_table(summaries: dict[str, dict[str, dict[str, Any]]],
                runs: dict[str, list[dict[str, Any]]], label: str) -> list[str]:
    """``threshold``: driftline's test's, ``delta``: its ADWIN's before (each from the
    budget over the stream's features)."""
    head = [label, "pairs", "features: threshold, delta", *DETECTORS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for family, per in summaries.items():
        pairs = next(iter(per.values()))["pairs"]
        first = runs[family][0]
        cells = [family, f"{pairs:,}",
                 f"{first['features']}: {first['threshold']:.3g}, {first['delta']:.2g}"]
        for name in DETECTORS:
            s = per.get(name)
            cells.append("-" if s is None else f"{s['per_million']:,.0f} ({s['alarms']})")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--pairs", type=int, default=25_000, help="monitored pairs a drifting stream")
    ap.add_argument("--stationary-pairs", type=int, default=200_000)
    ap.add_argument("--train", type=int, default=2_000, help="rows the model is fitted on")
    ap.add_argument("--families", default="", help="comma-separated names (default: all)")
    ap.add_argument("--json", metavar="PATH",
                    help="also write the summaries and every run's detections there")
    ap.add_argument("--quick", action="store_true",
                    help="2 seeds, 6,000 pairs a stream (smoke run)")
    args = ap.parse_args()
    if args.quick:
        args.seeds, args.pairs, args.stationary_pairs, args.train = 2, 6_000, 6_000, 1_000
    wanted = set(filter(None, args.families.split(",")))
    started = time.perf_counter()
    runs: dict[str, list[dict[str, Any]]] = {}
    for family in DRIFTING + STATIONARY:
        if wanted and family.name not in wanted:
            continue
        n = args.pairs if family in DRIFTING else args.stationary_pairs
        runs[family.name] = [run_stream(family, seed, args.train, n)
                             for seed in range(1, args.seeds + 1)]
        print(f"# {family.name}: {time.perf_counter() - started:.0f} s", file=sys.stderr,
              flush=True)
    summaries = {name: summarise(r) for name, r in runs.items()}
    drifting = {f.name: summaries[f.name] for f in DRIFTING if f.name in summaries}
    stationary = {f.name: summaries[f.name] for f in STATIONARY if f.name in summaries}
    seconds = time.perf_counter() - started
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"args": vars(args), "seconds": seconds, "summaries": summaries,
                       "runs": runs}, f, indent=1)
    print(f"Detection delay (pairs after the change began; median / p90 (detected/seeds)), "
          f"{args.seeds} seeds, {args.pairs:,} pairs a stream, change after 40%")
    print("\n".join(delay_table(drifting)))
    print("\nFalse alarms per million pairs (count), before the change")
    print("\n".join(alarm_table(drifting, runs, "family (pre-change)")))
    print(f"\nFalse alarms per million pairs (count), stationary streams of "
          f"{args.stationary_pairs:,} pairs")
    print("\n".join(alarm_table(stationary, runs, "stationary family")))
    print(f"\n{seconds:.0f} s")


if __name__ == "__main__":
    main()
