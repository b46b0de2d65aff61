"""Shadow scoring: a model that does not serve, scored on the live pairs of its model.

The version with the alias ``challenger`` is scored on every labelled pair of its
model that arrives after it got the alias, from the pair's features; the pair's own
error is what the serving version did on it. After ``pairs`` pairs the challenger
is judged: promoted when its MSE beats the live one on the same pairs by
``margin``, else rejected, with the numbers (a :class:`Verdict`). The agent acts on
verdicts (:mod:`driftline.agents.monitor.safeloop`); this module has no Kafka or
Redis in it, the models come from ``models`` (a :class:`ModelSource`).

>>> from driftline.models.linear import LinearModel
>>> class Source:
...     def load(self, model, version): return LinearModel([1.0], 0.0, ["x"])
...     def holdout_mse(self, model, version): return None
...     def challenger(self, model): return (2, 0.0)
>>> shadow = Shadow(Source(), pairs=3, margin=0.1)
>>> pairs = [{"model": "m", "version": 1, "features": {"x": float(i)}, "label": float(i),
...           "error": 1.0, "ts": 1.0, "label_ts": 1.0} for i in range(3)]
>>> [(v.action, v.version, v.metrics["shadow_mse"], v.metrics["live_mse"])
...  for v in shadow.observe(pairs)]
[('promote', 2, 0.0, 1.0)]
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from driftline.models.linear import LinearModel
from driftline.models.wire.features import number_or_nan

log = logging.getLogger(__name__)


class ModelSource(Protocol):
    """What shadow scoring and the canary need from the registry (cached by the agent)."""

    def load(self, model: str, version: int) -> LinearModel | None: ...

    def holdout_mse(self, model: str, version: int) -> float | None: ...

    def challenger(self, model: str) -> tuple[int, float] | None:
        """The version with the alias ``challenger`` and when it got it (epoch s)."""
        ...


@dataclass(frozen=True)
class Verdict:
    """A decision about a version: ``promote`` / ``reject`` (shadow), ``rollback`` /
    ``passed`` (canary). ``previous`` is the version it is compared with."""

    action: str
    model: str
    version: int
    previous: int | None
    metrics: dict[str, Any]
    reason: str
    ts: float


def squared_errors(model: LinearModel, pairs: Sequence[dict[str, Any]]
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``model``'s squared errors on the pairs that have all its features (finite numbers:
    a category or a null there, or a class for the label, leaves the pair out), those
    pairs' own (served) squared errors, and the pairs' indices, in the same order."""
    names = model.feature_names
    rows, served, labels, index = [], [], [], []
    for i, pair in enumerate(pairs):
        features = pair.get("features") or {}
        try:
            rows.append([number_or_nan(features[n]) for n in names])
        except KeyError:
            continue
        served.append(pair["error"])  # None (a class pair): NaN below
        labels.append(number_or_nan(pair["label"]))
        index.append(i)
    if not rows:
        return np.empty(0), np.empty(0), np.empty(0, dtype=int)
    predicted = model.predict(np.array(rows, dtype=float).reshape(len(rows), len(names)))
    mine = (predicted - np.array(labels, dtype=float)) ** 2
    theirs = np.array(served, dtype=float) ** 2
    keep = np.isfinite(mine) & np.isfinite(theirs)
    return mine[keep], theirs[keep], np.array(index)[keep]


@dataclass
class ShadowRun:
    """One challenger's scores so far."""

    model: str
    version: int
    since: float
    scorer: LinearModel | None
    n: int = 0
    sse: float = 0.0        # the challenger's
    live_sse: float = 0.0   # the served versions', same pairs
    verdict: Verdict | None = None
    last_ts: float = 0.0

    def report(self) -> dict[str, Any]:
        return {"model": self.model, "version": self.version, "role": "challenger",
                "since": self.since, "n": self.n,
                "rolling_mse": _mean(self.sse, self.n), "live_mse": _mean(self.live_sse, self.n),
                "verdict": self.verdict.action if self.verdict else None}


@dataclass
class Shadow:
    """Shadow scores of each model's ``challenger``; feed it scored pairs in order."""

    models: ModelSource
    pairs: int = 2000
    margin: float = 0.02
    runs: dict[str, ShadowRun] = field(default_factory=dict)

    def observe(self, pairs: Sequence[dict[str, Any]]) -> list[Verdict]:
        verdicts = []
        for model in {p["model"] for p in pairs}:
            run = self._run(model)
            if run is None or run.verdict is not None or run.scorer is None:
                continue
            mine = [p for p in pairs if p["model"] == model and _when(p) >= run.since]
            if not mine:
                continue
            ch, live, index = squared_errors(run.scorer, mine)
            take = min(len(ch), self.pairs - run.n)
            if take == 0:
                continue
            run.n += take
            run.sse += float(ch[:take].sum())
            run.live_sse += float(live[:take].sum())
            run.last_ts = pair_time(mine[index[take - 1]])
            if run.n >= self.pairs:
                run.verdict = self._judge(run)
                verdicts.append(run.verdict)
        return verdicts

    def watching(self, model: str) -> bool:
        """Whether :meth:`observe` would score ``model``'s pairs now (a challenger in
        shadow without a verdict yet)."""
        run = self._run(model)
        return run is not None and run.verdict is None and run.scorer is not None

    def _run(self, model: str) -> ShadowRun | None:
        current = self.models.challenger(model)
        run = self.runs.get(model)
        if current is None:
            self.runs.pop(model, None)
            return None
        version, since = current
        if run is None or run.version != version:
            run = ShadowRun(model, version, since, self.models.load(model, version))
            if run.scorer is None:
                log.error("%s v%d: challenger cannot be loaded; not shadow-scored", model,
                          version)
            self.runs[model] = run
        return run

    def _judge(self, run: ShadowRun) -> Verdict:
        mse, live = run.sse / run.n, run.live_sse / run.n
        metrics = {"shadow_mse": mse, "live_mse": live, "pairs": run.n, "margin": self.margin}
        if mse < live * (1.0 - self.margin):
            action = "promote"
            reason = (f"shadow: MSE {mse:.4g} over {run.n:,} live pairs beats the live "
                      f"{live:.4g} by more than {self.margin:.0%}")
        else:
            action = "reject"
            reason = (f"shadow: MSE {mse:.4g} over {run.n:,} live pairs is not "
                      f"{self.margin:.0%} below the live {live:.4g}")
        return Verdict(action, run.model, run.version, None, metrics, reason, run.last_ts)

    def reports(self) -> list[dict[str, Any]]:
        return [run.report() for run in self.runs.values()]


def pair_time(pair: dict[str, Any]) -> float:
    """When a pair was labelled (else predicted; else 0)."""
    ts = pair.get("label_ts")
    if ts is None:
        ts = pair.get("ts")
    return float(ts) if ts is not None else 0.0


def _when(pair: dict[str, Any]) -> float:
    ts = pair.get("label_ts")
    if ts is None:
        ts = pair.get("ts")
    return float(ts) if ts is not None else math.inf


def _mean(total: float, n: int) -> float | None:
    return total / n if n else None
