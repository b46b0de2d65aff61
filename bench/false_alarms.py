"""False alarms against the budget on stationary streams, and detection delay, in one run.

    .venv/bin/python bench/false_alarms.py [--predictions 1000000] [--features 10,100,500]
                                           [--seeds 5] [--budget 1] [--streams 1]

Two tables, each with the thresholds of before the budget ("fixed": PSI 0.25 / 0.1, ADWIN
delta 2e-5, set explicitly, which is how they still win) beside the calibrated ones:

1. **Stationary streams** of ``--predictions`` predictions and their pairs, with
   ``--features`` features (a third normal, a third log-normal, a third Poisson(3) counts,
   which tie), each through one version's monitor: firing alerts (false alarms, all of
   them) against what the budget allows, and the PSI checks that breached against the
   expected number the calibration allows (the bound it sets). The PSI rules are fed
   arrays (the rows :class:`DataDriftRule` would build from the events' dicts); pairs
   go through ``VersionMonitor.process_pairs`` as dicts.
2. **Detection delay** on the ``abrupt`` and ``feature-shift`` scenarios of
   ``driftline.simulate.World`` (10 features, drift at row 20,000, labels at once), over
   ``--seeds`` seeds: rows after the drift until the first alert of the kind that
   should catch it (``concept_drift``/``metric_threshold``; ``data_drift`` on x1), median
   and worst, and their ratio calibrated / fixed.

``--delays-only`` runs only table 2 (it also runs on the code before the budget, where the
defaults are the fixed thresholds).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np

from driftline.agents.monitor.config import MonitorConfig
from driftline.agents.monitor.core import Monitor
from driftline.simulate import World, initial_model

FIXED = {"data_drift": {"psi_threshold": 0.25, "psi_resolve": 0.1},
         "concept_drift": {"detector": "adwin", "params": {"delta": 2e-5}}}
CHUNK = 250          # rows per monitor call (the replay's chunk)
START_TS = 1_767_225_600.0
RATE = 100.0         # rows per second of event time


def config(calibrated: bool, budget: float = 1.0) -> MonitorConfig:
    defaults: dict[str, Any] = {} if calibrated else dict(FIXED)
    if calibrated:
        defaults["false_alarm_budget"] = budget
    return MonitorConfig.from_dict({"defaults": defaults})


def features_block(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    kinds = np.arange(d) % 3
    out = np.empty((n, d))
    out[:, kinds == 0] = rng.normal(size=(n, int((kinds == 0).sum())))
    out[:, kinds == 1] = rng.lognormal(size=(n, int((kinds == 1).sum())))
    out[:, kinds == 2] = rng.poisson(3.0, size=(n, int((kinds == 2).sum())))
    return out


def stationary(d: int, n: int, calibrated: bool, budget: float, seed: int) -> dict[str, Any]:
    """One stationary stream through one version: alarms, and breaches vs their bound."""
    from driftline.agents.monitor import calibration
    from driftline.agents.monitor.rules import DataDriftRule

    mon = Monitor(config(calibrated, budget))
    vm = mon.version("m", 1, features=d)
    names = [f"f{j}" for j in range(d)]
    vm.data_drift = DataDriftRule(vm.subject, names, vm.config.data_drift, vm.rate)
    rng = np.random.default_rng([seed, d])
    alerts: list[dict[str, Any]] = []
    breaches = checks = 0
    block = max(CHUNK, (2_000_000 // d) // CHUNK * CHUNK)
    started = time.perf_counter()
    for first in range(0, n, block):
        m = min(block, n - first)
        X = features_block(rng, m, d)
        preds = 2 * X[:, 0]
        labels = preds + rng.normal(size=m)
        for s in range(0, m, CHUNK):
            e = min(m, s + CHUNK)
            ts = START_TS + (first + np.arange(s, e)) / RATE
            for rule, rows in ((vm.data_drift, X[s:e]), (vm.prediction_drift,
                                                         preds[s:e].reshape(-1, 1))):
                ran = rule.detector.extend
                seen: list[Any] = []
                rule.detector.extend = (lambda r, mismatch=None, ran=ran, seen=seen:
                                        seen.extend(ran(r, mismatch)) or seen)
                rule._check(rows, ts)  # what update() calls
                rule.detector.extend = ran
                alerts.extend(rule.alerts)
                for check in seen:
                    checks += len(check.psi)
                    breaches += int((check.psi > rule.limits).sum())
            pairs = [{"prediction_id": str(first + i), "model": "m", "version": 1,
                      "prediction": p, "label": y, "error": p - y, "features": {},
                      "ts": t, "label_ts": t}
                     for i, p, y, t in zip(range(s, e), preds[s:e].tolist(),
                                           labels[s:e].tolist(), ts.tolist())]
            alerts.extend(vm.process_pairs(pairs))
    seconds = time.perf_counter() - started
    cfg = vm.config.data_drift
    alpha = (calibration.check_alpha(vm.rate, cfg.check_every) if calibrated else None)
    return {"alarms": sum(a["status"] == "firing" for a in alerts),
            "kinds": sorted({a["kind"] for a in alerts if a["status"] == "firing"}),
            "allowed": budget * n / calibration.PER, "breaches": breaches, "checks": checks,
            "bound": alpha * checks if alpha is not None else None, "seconds": seconds,
            "limit": float(np.median(vm.data_drift.limits)) if vm.data_drift.limits is not None
            else None,  # the error test's: ADWIN's delta (fixed) or the G test's threshold
            "error_test": vm.concept.detector.params.get(
                "delta", vm.concept.detector.params.get("threshold"))}


def delays(scenario: str, calibrated: bool | None, seeds: int, drift_at: int = 20_000,
           rows: int = 40_000) -> list[int | None]:
    """Rows after the drift until the alert that should catch it, per seed (None: missed).
    ``calibrated`` None: the code's own defaults (on main: the fixed thresholds)."""
    out: list[int | None] = []
    for seed in range(seeds):
        world = World(scenario, drift_at=drift_at, features=10, seed=seed)
        model, _ = initial_model(world)
        cfg = MonitorConfig() if calibrated is None else config(calibrated)
        mon = Monitor(cfg)
        found = None
        for first in range(0, rows, CHUNK):
            X, y = world.rows(first, first + CHUNK)
            preds = model.predict(X).tolist()
            events = []
            for i, (row, p) in enumerate(zip(X.tolist(), preds)):
                ts = START_TS + (first + i) / RATE
                events.append({"prediction_id": f"{seed}-{first + i}", "model": "m",
                               "version": 1, "prediction": p,
                               "features": dict(zip(world.names, row)), "ts": ts})
            pairs = [{**ev, "label": float(label), "error": ev["prediction"] - float(label),
                      "label_ts": ev["ts"]} for ev, label in zip(events, y)]
            alerts = mon.process_predictions(events) + mon.process_pairs(pairs)
            for a in alerts:
                row_at = round((a["ts"] - START_TS) * RATE)
                wanted = (a["kind"] == "data_drift" and a["feature"] == "x1"
                          if scenario == "feature-shift"
                          else a["kind"] in ("concept_drift", "metric_threshold"))
                if a["status"] == "firing" and wanted and row_at >= drift_at:
                    found = row_at - drift_at
                    break
            if found is not None:
                break
        out.append(found)
    return out


def summary(values: list[int | None]) -> tuple[str, float | None]:
    hits = [v for v in values if v is not None]
    if not hits:
        return "missed", None
    med = statistics.median(hits)
    missed = f", {len(values) - len(hits)} missed" if len(hits) < len(values) else ""
    return f"{med:,.0f} (worst {max(hits):,}{missed})", med


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--predictions", type=int, default=1_000_000)
    ap.add_argument("--features", default="10,100,500")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--budget", type=float, default=1.0)
    ap.add_argument("--streams", type=int, default=1,
                    help="stationary streams (seeds) per row of table 1, counts summed")
    ap.add_argument("--delays-only", action="store_true")
    args = ap.parse_args()
    if not args.delays_only:
        n = args.predictions
        print(f"1. stationary streams, {n:,} predictions and pairs each (x{args.streams}, "
              f"summed), budget {args.budget:g} per 1M predictions")
        print(f"{'features':>8} {'thresholds':>11} {'alarms':>7} {'allowed':>8} "
              f"{'PSI breaches':>13} {'bound':>7} {'PSI limit':>10} {'error test':>12} "
              f"{'seconds':>8}")
        for d in [int(x) for x in args.features.split(",")]:
            for calibrated in (False, True):
                runs = [stationary(d, n, calibrated, args.budget, seed=1 + k)
                        for k in range(args.streams)]
                r = {**runs[0], **{f: sum(x[f] for x in runs) for f in (
                    "alarms", "allowed", "breaches", "checks", "seconds")},
                     "bound": None if runs[0]["bound"] is None else sum(
                         x["bound"] for x in runs),
                     "kinds": sorted({k for x in runs for k in x["kinds"]})}
                bound = f"{r['bound']:.2f}" if r["bound"] is not None else "-"
                limit = f"{r['limit']:.4f}" if r["limit"] is not None else "-"
                print(f"{d:>8} {'calibrated' if calibrated else 'fixed':>11} "
                      f"{r['alarms']:>7} {r['allowed']:>8.2f} {r['breaches']:>6}/"
                      f"{r['checks']:<7,} {bound:>6} {limit:>10} {r['error_test']:>12.3g} "
                      f"{r['seconds']:>8.1f}" + (f"  {', '.join(r['kinds'])}"
                                                 if r["kinds"] else ""), flush=True)
    print(f"2. detection delay, rows after the drift (median of {args.seeds} seeds)")
    modes: list[tuple[str, bool | None]] = (
        [("defaults", None)] if args.delays_only else [("fixed", False), ("calibrated", True)])
    print(f"{'scenario':>14} " + " ".join(f"{name:>24}" for name, _ in modes)
          + ("" if args.delays_only else f" {'ratio':>6}"))
    for scenario in ("abrupt", "feature-shift"):
        cells, medians = [], []
        for _, calibrated in modes:
            text, med = summary(delays(scenario, calibrated, args.seeds))
            cells.append(text)
            medians.append(med)
        ratio = ("" if args.delays_only or None in medians or not medians[0]
                 else f" {medians[1] / medians[0]:>6.2f}")  # type: ignore[operator]
        print(f"{scenario:>14} " + " ".join(f"{c:>24}" for c in cells) + ratio, flush=True)


if __name__ == "__main__":
    main()
