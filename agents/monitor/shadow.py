"""Shadow scoring: a model that does not serve, scored on the live pairs of its model.

The version with the alias ``challenger`` is scored on every labelled pair of its
model that arrives after it got the alias, from the pair's features; the pair's own
error is what the serving version did on it. After ``pairs`` pairs the challenger
is judged: promoted when its loss beats the live one on the same pairs by
``margin``, else rejected, with the numbers (a :class:`Verdict`). The loss is MSE for
a regression; a classifier's is ``DRIFTLINE_PROMOTION_METRIC``
(:mod:`driftline.models.losses`: log loss by default; a multiclass model that sends no
``probabilities`` is judged by its error rate; a binary model's error rate counts P(1) at
or above its ``decision_threshold`` as a 1, on both sides), and the numbers are named
after it (``shadow_log_loss``). The agent acts on verdicts
(:mod:`driftline.agents.monitor.safeloop`); this module has no Kafka or Redis in it,
the models come from ``models`` (a :class:`ModelSource`).

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from driftline.models.losses import (
    NAMES,
    metric_for,
    model_losses,
    needs_probabilities,
    served_losses,
)
from driftline.models.wire.features import number_or_nan

log = logging.getLogger(__name__)


class ModelSource(Protocol):
    """What shadow scoring and the canary need from the registry (cached by the agent)."""

    def load(self, model: str, version: int) -> Any | None: ...

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


def at_half(model: str) -> float:
    """The decision threshold of a model no monitor config gives one: P(1) >= 0.5 is 1."""
    return 0.5


def pair_losses(model: Any, pairs: Sequence[dict[str, Any]], metric: str = "mse",
                threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``model``'s losses (``metric``; a binary ``error_rate`` cut at ``threshold``, the
    model's ``decision_threshold``) on the pairs that have all its features (finite
    numbers: a category or a null there leaves the pair out), the losses of what was
    served on those pairs, and the pairs' indices, in the same order. A pair either loss
    is undefined on (a label that does not fit the model's task, a multiclass pair
    without probabilities for log loss) is left out. A model that ``takes_rows`` (kind
    ``encoded``; an ONNX graph with string inputs) is scored from the raw features: every
    pair when it imputes what is missing, else the pairs with all its features set."""
    if not pairs:
        return np.empty(0), np.empty(0), np.empty(0, dtype=int)
    names = model.feature_names
    if getattr(model, "takes_rows", False):
        imputes = getattr(model, "imputes", False)
        index = [i for i, p in enumerate(pairs) if imputes or all(
            (p.get("features") or {}).get(n) is not None for n in names)]
        if not index:
            return np.empty(0), np.empty(0), np.empty(0, dtype=int)
        return _losses(model, pairs, index, [pairs[i].get("features") or {} for i in index],
                       metric, threshold)
    rows, index = [], []
    for i, pair in enumerate(pairs):
        features = pair.get("features") or {}
        try:
            rows.append([number_or_nan(features[n]) for n in names])
        except KeyError:
            continue
        index.append(i)
    if not rows:
        return np.empty(0), np.empty(0), np.empty(0, dtype=int)
    X = np.array(rows, dtype=float).reshape(len(rows), len(names))
    return _losses(model, pairs, index, X, metric, threshold)


def _losses(model: Any, pairs: Sequence[dict[str, Any]], index: list[int], X: Any,
            metric: str, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    chosen = [pairs[i] for i in index]
    complete = (np.isfinite(X).all(axis=1) if isinstance(X, np.ndarray)
                else np.ones(len(chosen), dtype=bool))
    if isinstance(X, np.ndarray):
        X[~complete] = 0.0
    task = model.task
    labels = ([p["label"] for p in chosen] if task == "multiclass"
              else [number_or_nan(p["label"]) for p in chosen])
    mine = model_losses(model, X, labels, metric, threshold)
    mine[~complete] = np.nan
    theirs = served_losses(chosen, task, metric, threshold)
    keep = np.isfinite(mine) & np.isfinite(theirs)
    return mine[keep], theirs[keep], np.array(index, dtype=int)[keep]


def run_metric(model: Any, pairs: Sequence[dict[str, Any]], configured: str) -> str:
    """The metric a run judges ``model`` by, fixed at its first pairs: the setting's for a
    classifier, unless it needs probabilities a multiclass model's pairs do not carry."""
    metric = metric_for(model.task, configured)
    if (model.task == "multiclass" and needs_probabilities(metric)
            and not any(p.get("probabilities") for p in pairs)):
        log.warning("%s: pairs carry no probabilities; judged by the error rate instead of "
                    "%s", pairs[0]["model"] if pairs else "?", metric)
        return "error_rate"
    return metric


@dataclass
class ShadowRun:
    """One challenger's scores so far."""

    model: str
    version: int
    since: float
    scorer: Any | None
    n: int = 0
    sse: float = 0.0        # the challenger's summed loss
    live_sse: float = 0.0   # the served versions', same pairs
    verdict: Verdict | None = None
    last_ts: float = 0.0
    metric: str | None = None  # fixed at the first pairs scored

    def report(self) -> dict[str, Any]:
        m = self.metric or "mse"
        return {"model": self.model, "version": self.version, "role": "challenger",
                "since": self.since, "n": self.n, "metric": m,
                f"rolling_{m}": _mean(self.sse, self.n),
                f"live_{m}": _mean(self.live_sse, self.n),
                "verdict": self.verdict.action if self.verdict else None}


@dataclass
class Shadow:
    """Shadow scores of each model's ``challenger``; feed it scored pairs in order."""

    models: ModelSource
    pairs: int = 2000
    margin: float = 0.02
    metric: str = "auto"    # a classifier's (DRIFTLINE_PROMOTION_METRIC)
    thresholds: Callable[[str], float] = at_half  # model -> its decision_threshold
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
            if run.metric is None:
                run.metric = run_metric(run.scorer, mine, self.metric)
            ch, live, index = pair_losses(run.scorer, mine, run.metric,
                                          self.thresholds(model))
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
        loss, live = run.sse / run.n, run.live_sse / run.n
        m = run.metric or "mse"
        name = NAMES.get(m, m)
        # (numbers only: they go into the model event; the keys name the metric)
        metrics = {f"shadow_{m}": loss, f"live_{m}": live, "pairs": run.n,
                   "margin": self.margin}
        if loss < live * (1.0 - self.margin):
            action = "promote"
            reason = (f"shadow: {name} {loss:.4g} over {run.n:,} live pairs beats the live "
                      f"{live:.4g} by more than {self.margin:.0%}")
        else:
            action = "reject"
            reason = (f"shadow: {name} {loss:.4g} over {run.n:,} live pairs is not "
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
