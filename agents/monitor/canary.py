"""The canary: a newly promoted champion against the one it replaced, on live pairs.

Scored pairs carry the version that made each prediction. When a version of a model
first appears in its pairs after another one served, it was promoted (by the
trainer, the shadow verdict or by hand): its first ``pairs`` live pairs are its
canary. On the same pairs the *previous* version is shadow-scored from the pairs'
features (its model from the registry); if that model cannot be loaded, its holdout
MSE is the reference. When the new version's live MSE is above the reference by
more than ``margin`` (0.1 = 10 %), the verdict is ``rollback``, else ``passed``. A
classifier is judged by its promotion metric instead of MSE, as in shadow scoring
(:func:`~driftline.agents.monitor.shadow.run_metric`; a binary error rate at the
model's ``decision_threshold``); without a loaded reference
model, against its holdout baseline (``baseline_mse``: MSE, a binary model's Brier
score, a multiclass one's error rate).

Everything is derived from the order of the pairs, so a replay of the monitor's
input after a crash reaches the same verdicts on the same pairs.

>>> from driftline.models.linear import LinearModel
>>> class Source:
...     def load(self, model, version): return LinearModel([1.0], 0.0, ["x"])
...     def holdout_mse(self, model, version): return None
...     def challenger(self, model): return None
>>> canary = Canary(Source(), pairs=2, margin=0.1)
>>> def pair(v, err): return {"model": "m", "version": v, "features": {"x": 1.0},
...                            "label": 1.0, "error": err, "ts": 1.0, "label_ts": 1.0}
>>> canary.observe([pair(1, 0.0), pair(2, 3.0), pair(2, 3.0)])[0].action
'rollback'
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from driftline.agents.monitor.shadow import (
    ModelSource,
    Verdict,
    at_half,
    pair_losses,
    pair_time,
    run_metric,
)
from driftline.models.losses import BASELINE, NAMES, served_losses

log = logging.getLogger(__name__)


@dataclass
class CanaryRun:
    model: str
    version: int
    previous: int
    reference: Any | None             # the previous version, shadow-scored
    holdout_mse: float | None         # else its holdout MSE
    n: int = 0
    sse: float = 0.0
    reference_sse: float = 0.0
    verdict: Verdict | None = None
    last_ts: float = 0.0
    metric: str | None = None         # fixed at the first pairs scored

    def report(self) -> dict[str, Any]:
        ref = (self.reference_sse / self.n if self.reference is not None and self.n
               else self.holdout_mse)
        m = self.metric or "mse"
        return {"model": self.model, "version": self.version, "role": "canary",
                "previous": self.previous, "n": self.n, "metric": m,
                f"rolling_{m}": self.sse / self.n if self.n else None, f"reference_{m}": ref,
                "reference": "shadow" if self.reference is not None else "holdout",
                "verdict": self.verdict.action if self.verdict else None}


@dataclass
class Canary:
    """Canaries of every model's newly promoted versions; feed it scored pairs in order."""

    models: ModelSource
    pairs: int = 2000
    margin: float = 0.1
    metric: str = "auto"    # a classifier's (DRIFTLINE_PROMOTION_METRIC)
    thresholds: Callable[[str], float] = at_half  # model -> its decision_threshold
    serving: dict[str, int] = field(default_factory=dict)        # model -> last version seen
    seen: dict[str, set[int]] = field(default_factory=dict)
    runs: dict[tuple[str, int], CanaryRun] = field(default_factory=dict)

    def observe(self, pairs: Sequence[dict[str, Any]]) -> list[Verdict]:
        verdicts: list[Verdict] = []
        batch: list[dict[str, Any]] = []
        key: tuple[str, int] | None = None
        for pair in pairs:  # runs of consecutive pairs of one (model, version)
            version = pair.get("version")
            if version is None:
                continue
            k = (pair["model"], version)
            if k != key:
                if batch and key is not None:
                    verdicts.extend(self._score(key, batch))
                batch, key = [], k
                self._arrived(*k)
            batch.append(pair)
        if batch and key is not None:
            verdicts.extend(self._score(key, batch))
        return verdicts

    def watching(self, model: str, versions: Sequence[int | None]) -> bool:
        """Whether :meth:`observe` of pairs of ``model`` of these versions would do more
        than note the version serving it: a version not seen yet (it may start a canary),
        or one whose canary has no verdict yet."""
        seen = self.seen.get(model, set())
        for version in set(versions) - {None}:
            if version not in seen:
                return True
            run = self.runs.get((model, version))
            if run is not None and run.verdict is None:
                return True
        return False

    def arrived(self, model: str, versions: Sequence[int | None]) -> None:
        """Pairs of versions already seen, none of them in a canary (:meth:`watching` is
        False): what :meth:`observe` notes of them, that the last one serves."""
        last = next((v for v in reversed(versions) if v is not None), None)
        if last is not None:
            self._arrived(model, last)

    def _arrived(self, model: str, version: int) -> None:
        seen = self.seen.setdefault(model, set())
        previous = self.serving.get(model)
        self.serving[model] = version
        if version in seen:
            return
        seen.add(version)
        if previous is None or self.pairs <= 0:  # the first version; or the canary is off
            return
        reference = self.models.load(model, previous)
        holdout = None if reference is not None else self.models.holdout_mse(model, previous)
        if reference is None and holdout is None:
            log.error("%s v%d: no reference for its canary (v%d has no model and no holdout "
                      "MSE); not watched", model, version, previous)
            return
        self.runs[(model, version)] = CanaryRun(model, version, previous, reference, holdout)
        log.info("%s v%d: canary of %d pairs against v%d started", model, version,
                 self.pairs, previous)

    def _score(self, key: tuple[str, int], pairs: list[dict[str, Any]]) -> list[Verdict]:
        run = self.runs.get(key)
        if run is None or run.verdict is not None:
            return []
        if run.reference is not None:
            if run.metric is None:
                run.metric = run_metric(run.reference, pairs, self.metric)
            ref, live, index = pair_losses(run.reference, pairs, run.metric,
                                           self.thresholds(run.model))
        else:  # against its holdout baseline: MSE (binary: Brier; multiclass: error rate)
            task = _task(pairs)
            run.metric = BASELINE[task] if task == "multiclass" else "mse"
            live = served_losses(pairs, task, run.metric)
            index = np.flatnonzero(np.isfinite(live))
            live, ref = live[index], np.zeros(len(index))
        take = min(len(live), self.pairs - run.n)
        if take == 0:
            return []
        run.n += take
        run.sse += float(live[:take].sum())
        run.reference_sse += float(ref[:take].sum())
        run.last_ts = pair_time(pairs[int(index[take - 1])])
        if run.n < self.pairs:
            return []
        run.verdict = self._judge(run)
        return [run.verdict]

    def _judge(self, run: CanaryRun) -> Verdict:
        loss = run.sse / run.n
        m = run.metric or "mse"
        name = NAMES.get(m, m)
        if run.reference is not None:
            reference, how = run.reference_sse / run.n, f"shadow {name} on the same pairs"
        else:
            reference, how = float(run.holdout_mse or 0.0), f"holdout {name}"
        metrics = {f"canary_{m}": loss, f"reference_{m}": reference, "pairs": run.n,
                   "margin": self.margin, "rolled_back_from": run.version,
                   "restored": run.previous}  # numbers only: they go into the model event
        worse = loss / reference - 1.0 if reference > 0 else (0.0 if loss == 0 else np.inf)
        if worse > self.margin:
            action = "rollback"
            reason = (f"canary: v{run.version}'s live {name} {loss:.4g} over {run.n:,} pairs "
                      f"is {worse:.0%} above v{run.previous}'s {how} {reference:.4g} "
                      f"(margin {self.margin:.0%})")
        else:
            action = "passed"
            reason = (f"canary: v{run.version}'s live {name} {loss:.4g} over {run.n:,} pairs "
                      f"is within {self.margin:.0%} of v{run.previous}'s {how} "
                      f"{reference:.4g}")
        return Verdict(action, run.model, run.version, run.previous, metrics, reason,
                       run.last_ts)

    def reports(self) -> list[dict[str, Any]]:
        return [run.report() for run in self.runs.values()]


def _task(pairs: Sequence[dict[str, Any]]) -> str:
    """A pair's task as far as its served loss goes: a class prediction is a multiclass
    one; a number's squared error is the pair's ``error`` squared (binary: Brier)."""
    return "multiclass" if pairs and type(pairs[0]["prediction"]) is str else "regression"
