"""A simulated production service, for the demo and the end-to-end tests.

:class:`World` is the truth, row by row, seeded and deterministic: features
``x0 .. x{d-1}`` ~ N(0, 1) and

* ``abrupt``: y = 2 x0 + noise, and from row ``drift_at`` on y = 3 x0 + 1 + noise;
* ``gradual``: the same change, reached linearly over ``span`` rows;
* ``feature-shift``: y = 2 x0 + 0.5 x1^2 + noise throughout, and from ``drift_at``
  on x1 is shifted by +2: a linear model fitted where x1 was centred on 0 is wrong
  where it now lives (covariate shift that hurts, not only data drift);
* ``binary`` (a churn model: labels 0/1, predictions P(1)): y ~ Bernoulli(sigmoid(2 x0
  - x1)), and from ``drift_at`` on sigmoid(x0 + 2 x1 - 1);
* ``multiclass`` (an intent model, classes ``billing``, ``cancel``, ``support``): the
  class drawn from softmax(2 x0, 2 x1, 0), and from ``drift_at`` on softmax(2 x1,
  -2 x0, 0.5): what says "billing" then says "cancel".

A classifier's truth is drawn with the row's own noise (its normal quantile), so it is
as deterministic as a regression's.

:class:`ProductionService` serves it like a real service would: it predicts each
row with the registry's current champion (``ModelClient``, so a promotion is
picked up without a restart), publishes the prediction with the version that
made it, and publishes the label ``label_delay`` rows later.

>>> w = World("abrupt", drift_at=2, seed=1)
>>> X, y = w.rows(0, 4)
>>> X.shape, bool(np.allclose(X, w.rows(0, 4)[0])), bool(np.allclose(X[3], w.rows(3, 4)[0][0]))
((4, 3), True, True)
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import special

from driftline.models.classifier_training import train_logistic, train_softmax
from driftline.models.losses import BASELINE, model_losses
from driftline.models.registry import ModelRegistry
from driftline.models.training import time_holdout, train_ridge

SCENARIOS = ("abrupt", "gradual", "feature-shift", "binary", "multiclass")
CLASSES = ("billing", "cancel", "support")
TASKS = {"binary": "binary", "multiclass": "multiclass"}  # the others: regression
MODELS = {"binary": "churn", "multiclass": "intents"}    # the others: houses


def model_for(scenario: str) -> str:
    """The simulated service's model name in a scenario."""
    return MODELS.get(scenario, "houses")
_BLOCK = 1000


@dataclass(frozen=True)
class World:
    scenario: str = "abrupt"
    drift_at: int | None = 20_000
    features: int = 3
    noise: float = 1.0
    span: int = 5_000   # rows over which a gradual drift completes
    seed: int = 0

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise ValueError(f"scenario must be one of {', '.join(SCENARIOS)}, "
                             f"got {self.scenario!r}")
        if self.features < 2:
            raise ValueError("a world needs at least 2 features")

    @property
    def names(self) -> list[str]:
        return [f"x{j}" for j in range(self.features)]

    @property
    def task(self) -> str:
        return TASKS.get(self.scenario, "regression")

    def rows(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Features and truth of rows ``start .. stop - 1``; the same rows always get the
        same values, however the range is cut (blocks of 1,000 rows, each its own seed).
        A classifier's truth is 0.0/1.0 (binary) or class names (multiclass, objects)."""
        blocks = []
        for b in range(start // _BLOCK, (stop - 1) // _BLOCK + 1 if stop > start else 0):
            rng = np.random.default_rng([self.seed, b])
            Z = rng.normal(size=(_BLOCK, self.features + 1))
            lo, hi = max(start, b * _BLOCK), min(stop, (b + 1) * _BLOCK)
            blocks.append(Z[lo - b * _BLOCK:hi - b * _BLOCK])
        Z = np.vstack(blocks) if blocks else np.empty((0, self.features + 1))
        X, noise = Z[:, :-1].copy(), Z[:, -1] * self.noise
        index = np.arange(start, stop)
        after = np.zeros(len(index)) if self.drift_at is None else (
            np.clip((index - self.drift_at) / self.span, 0.0, 1.0) if self.scenario == "gradual"
            else (index >= self.drift_at).astype(float))
        if self.scenario == "feature-shift":
            X[:, 1] += 2.0 * after
            y = 2 * X[:, 0] + 0.5 * X[:, 1] ** 2 + noise
        elif self.task != "regression":
            return X, self._classes(X, Z[:, -1], after)
        else:
            y = (2 + after) * X[:, 0] + after + noise
        return X, y


    def _classes(self, X: np.ndarray, z: np.ndarray, after: np.ndarray) -> np.ndarray:
        u = np.asarray(special.ndtr(z))  # the row's noise as a uniform draw
        a = after[:, None]
        if self.task == "binary":
            logit = (1 - after) * (2 * X[:, 0] - X[:, 1]) + after * (X[:, 0] + 2 * X[:, 1] - 1)
            drawn: np.ndarray = (u < special.expit(logit)).astype(float)
            return drawn
        zero = np.zeros(len(X))
        scores = ((1 - a) * np.column_stack([2 * X[:, 0], 2 * X[:, 1], zero])
                  + a * np.column_stack([2 * X[:, 1], -2 * X[:, 0], zero + 0.5]))
        cumulative = special.softmax(scores, axis=1).cumsum(axis=1)
        index = np.minimum((u[:, None] > cumulative).sum(axis=1), len(CLASSES) - 1)
        classes: np.ndarray = np.array(CLASSES, dtype=object)[index]
        return classes


def initial_model(world: World, n: int = 2_000) -> tuple[Any, float]:
    """A model trained on ``n`` rows of the world before any drift (rows far from the
    stream's), and its holdout baseline: MSE (a binary model's Brier score, a multiclass
    one's error rate: what the monitor's rolling metric measures)."""
    before = World(world.scenario, None, world.features, world.noise, world.span, world.seed + 1)
    X, y = before.rows(0, n)
    train, holdout = time_holdout(n)
    task = world.task
    if task == "regression":
        model: Any = train_ridge(X[train], y[train], before.names).model
    elif task == "binary":
        model = train_logistic(X[train], y[train], before.names).model
    else:
        model = train_softmax(X[train], y[train], before.names).model
    return model, float(np.mean(model_losses(model, X[holdout], y[holdout], BASELINE[task])))


def bootstrap(registry: ModelRegistry, model: str, world: World, n: int = 2_000) -> int:
    """Register :func:`initial_model` with its holdout loss as the baseline and promote
    it; returns the version."""
    from driftline.models.explanation import explain

    trained, mse = initial_model(world, n)
    before = World(world.scenario, None, world.features, world.noise, world.span,
                   world.seed + 1)
    metric = BASELINE[world.task]
    version = registry.register(model, trained, metrics={metric: mse},
                                meta={"parent_version": None, "baseline_mse": mse,
                                      "trainer": "driftline.simulate.bootstrap",
                                      "data": {"rows": n, "scenario": "before drift"},
                                      "explanation": explain(trained, before.rows(0, n)[0])})
    registry.promote(model, version, reason="bootstrap")
    return version


def event_log(world: World, events: int, *, model: str = "houses", label_delay: int = 200,
              start_ts: float = 1_767_225_600.0, rows_per_second: float = 100.0):
    """The log a service serving :func:`initial_model` (as v1) would have produced: each
    prediction, and each label ``label_delay`` rows later, with event times, in order."""
    trained, _ = initial_model(world)
    labels: deque[tuple[str, float | str]] = deque()

    def label(pid: str, y: float | str, i: int) -> dict:
        return {"prediction_id": pid, "label": y, "ts": start_ts + i / rows_per_second}

    for start in range(0, events, _BLOCK):
        stop = min(events, start + _BLOCK)
        X, y = world.rows(start, stop)
        predictions, probabilities = served(trained, X)
        for i in range(start, stop):
            pid = f"{model}-{world.seed}-{i}"
            event = {"prediction_id": pid, "model": model, "version": 1,
                     "prediction": predictions[i - start],
                     "features": dict(zip(world.names, X[i - start].tolist())),
                     "ts": start_ts + i / rows_per_second}
            if probabilities is not None:
                event["probabilities"] = probabilities[i - start]
            yield event
            labels.append((pid, truth(y[i - start])))
            if len(labels) > label_delay:
                yield label(*labels.popleft(), i)
    for k, (pid, value) in enumerate(labels):
        yield label(pid, value, events + k)


def served(model: Any, X: np.ndarray) -> tuple[list[Any], list[dict[str, float]] | None]:
    """What a service sends for rows ``X``: the predictions (a regression's values, a
    binary model's P(1), a multiclass one's classes) and a multiclass model's
    ``probabilities`` (None for the others)."""
    if model.task != "multiclass":
        return np.asarray(model.predict(X), dtype=float).tolist(), None
    proba = model.predict_proba(X)
    return (model.predict(X).tolist(),
            [dict(zip(model.classes, row)) for row in proba.tolist()])


def truth(value: Any) -> float | str:
    """A label as the wire carries it: a class name stays one; numbers are floats."""
    return value if isinstance(value, str) else float(value)


@dataclass
class ServiceStats:
    predictions: int = 0
    labels: int = 0
    by_version: dict[int | None, int] = field(default_factory=dict)
    seconds: float = 0.0
    drift_ts: float | None = None  # when (its clock) the first post-drift label was published


class ProductionService:
    """Predict with ``current()`` (a ``ModelClient``'s model), publish through ``publisher``
    (a started :class:`~driftline.publisher.Publisher`), label ``label_delay`` rows later.
    Events are stamped with ``clock()`` (the wall clock; a test's clock can run hours of
    event time in seconds)."""

    def __init__(self, publisher, current: Callable[[], Any], world: World, *,
                 model: str = "houses", label_delay: int = 200, step: int = 100,
                 rate: float | None = None, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.publisher = publisher
        self.current = current
        self.world = world
        self.model = model
        self.label_delay = label_delay
        self.step = step
        self.rate = rate  # rows per second, None: as fast as the publisher takes them
        self.position = 0
        self.stats = ServiceStats()
        self._unlabelled: deque[tuple[str, float | str]] = deque()

    async def run(self, n: int, *, until: Callable[[], bool] | None = None,
                  finish: bool = True) -> ServiceStats:
        """Serve ``n`` more rows (or stop early when ``until()`` is true); then, with
        ``finish``, label the rest at once and flush (else they keep their delay)."""
        started = time.monotonic()
        first = self.position
        end = self.position + n
        while self.position < end and not (until and until()):
            stop = min(end, self.position + self.step)
            await self._serve(self.position, stop)
            self.position = stop
            if self.rate:
                ahead = (stop - first) / self.rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
        if finish:
            await self._label(0)
            await self.publisher.flush()
        self.stats.seconds += time.monotonic() - started
        return self.stats

    async def _serve(self, start: int, stop: int) -> None:
        X, y = self.world.rows(start, stop)
        model = self.current()  # one model for the whole step: never a mix
        columns = [self.world.names.index(name) for name in model.feature_names]
        predictions, probabilities = served(model, X[:, columns])
        now = self.clock()
        names = self.world.names
        for i, (row, y_hat) in enumerate(zip(X.tolist(), predictions)):
            pid = f"{self.model}-{self.world.seed}-{start + i}"
            await self.publisher.log_prediction(
                pid, model=self.model, version=model.version, prediction=y_hat,
                features=dict(zip(names, row)), ts=now,
                probabilities=probabilities[i] if probabilities is not None else None)
            self._unlabelled.append((pid, truth(y[i])))
        self.stats.predictions += stop - start
        self.stats.by_version[model.version] = (self.stats.by_version.get(model.version, 0)
                                                + stop - start)
        await self._label(self.label_delay)

    async def _label(self, keep: int) -> None:
        now = self.clock()
        drift_at = self.world.drift_at
        while len(self._unlabelled) > keep:
            pid, label = self._unlabelled.popleft()
            await self.publisher.log_label(pid, label=label, ts=now)
            if drift_at is not None and self.stats.labels == drift_at:
                self.stats.drift_ts = now
            self.stats.labels += 1
