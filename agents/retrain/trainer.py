"""The training worker (``driftline trainer``): retrain requests in, registered versions out.

For each request on ``retrain``:

1. If the registry already has a version for the ``request_id``, the request was
   handled before (a re-delivery): nothing is trained again; a promotion that a
   crash interrupted is completed.
2. Otherwise the model's most recent scored pairs after the drift point are read
   back from Kafka (:mod:`driftline.agents.retrain.training_data`), the rows prepared
   (:mod:`driftline.agents.retrain.prepare`: the champion's features first, categories
   and missing values encoded), the oldest ``1 - DRIFTLINE_HOLDOUT_FRACTION`` given to
   the training function (``DRIFTLINE_TRAINER``; by default ridge, logistic or softmax
   regression by the model's task) with the task, and the challenger and the current
   champion scored on the same most recent rows (MSE; a classifier by
   ``DRIFTLINE_PROMOTION_METRIC``, a binary one's ``error_rate`` at the
   ``decision_threshold`` its monitor config gives it).
3. The challenger is registered - ``active`` if it beats the champion by
   ``DRIFTLINE_PROMOTION_MARGIN``, else ``rejected`` with the reason - with its
   lineage in the metadata and its training rows as its reference profile,
   atomically together with its ``request_id`` (so a
   request can never register twice), then promoted if it won. The registry
   publishes the model events.

Redis or Kafka being unreachable is retried with backoff, forever: the request's
offset is committed only after it is handled. A request that cannot be trained
(too few pairs, the training function failed) goes to the dead-letter topic with
the reason; the agent goes on.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import faust
import numpy as np
from aiokafka.errors import KafkaError

from driftline.agents.outbox import Outbox
from driftline.agents.retrain.prepare import prepare
from driftline.agents.retrain.training_data import TrainingWindow, recent_pairs
from driftline.agents.wiring import batch_agent, raw_topic, sender
from driftline.errors import (
    ArtifactError,
    ConfigError,
    RegistryError,
    RegistryUnavailable,
    TopicError,
)
from driftline.models import kinds
from driftline.models.encoded import EncodedModel
from driftline.models.explanation import explain
from driftline.models.losses import BASELINE, metric_for, model_losses
from driftline.models.reference import MAX_ROWS, profile, with_predictions
from driftline.models.registry import CHALLENGER, ModelRegistry
from driftline.models.training import decide
from driftline.models.wire import RETRAIN_REQUEST, Rejection
from driftline.models.wire.events import as_dict
from driftline.settings import Settings

log = logging.getLogger(__name__)

MIN_ROWS = 20
TrainFn = Callable[..., Any]  # (X, y, feature_names[, task=]) -> a model kind, or .model


class TrainingFailed(Exception):
    """The request cannot be trained; the message says why."""


def load_train_fn(path: str) -> TrainFn:
    """``package.module:function`` (or ``package.module.function``) -> the function."""
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"DRIFTLINE_TRAINER={path!r} cannot be imported ({exc}); use "
                          f"'package.module:function'") from None
    if not callable(fn):
        raise ConfigError(f"DRIFTLINE_TRAINER={path!r} is not a function")
    return fn  # type: ignore[no-any-return]  # checked callable; its signature is the user's


@dataclass
class Outcome:
    version: int
    promoted: bool
    reason: str
    trained: bool  # False: the request had been handled before


class Trainer:
    """``tasks`` maps a model's name to the task its monitor config gives it
    (``regression`` when it gives none), ``thresholds`` to its ``decision_threshold``
    (what a binary model's holdout ``error_rate`` counts a 1 from, as the monitor does)."""

    def __init__(self, settings: Settings, registry: ModelRegistry, train_fn: TrainFn,
                 send=None, *, max_delay: float = 15.0,
                 tasks: Callable[[str], str] = lambda model: "regression",
                 thresholds: Callable[[str], float] = lambda model: 0.5) -> None:
        self.settings = settings
        self.registry = registry
        self.train_fn = train_fn
        self.takes_task = _takes_task(train_fn)
        self.send = send
        self.max_delay = max_delay
        self.tasks = tasks
        self.thresholds = thresholds

    def close(self) -> None:
        self.registry.close()

    async def process(self, messages: Sequence[Any]) -> None:
        for event in messages:
            msg = event.message
            requests, bad = RETRAIN_REQUEST.decode(msg.value,
                                                   max_bytes=self.settings.max_message_bytes)
            rejections = list(bad)
            for request in map(as_dict, requests):
                try:
                    await self.handle(request)
                except TrainingFailed as exc:
                    log.error("retrain request %s not trained: %s", request["request_id"], exc)
                    rejections.append(Rejection("training_failed", str(exc),
                                                msg.value or b""))
                except Exception as exc:  # a bug must not stop the trainer on every restart
                    log.exception("retrain request %s failed", request["request_id"])
                    rejections.append(Rejection("training_failed", f"internal error: {exc!r}",
                                                msg.value or b""))
            if rejections and self.send is not None:
                out = Outbox()
                for rejection in rejections:
                    out.dead_letter(self.settings.topic("deadletter"), msg.key, msg.topic,
                                    msg.partition, msg.offset, rejection,
                                    limit=self.settings.max_message_bytes)
                await out.flush(self.send)

    async def handle(self, request: dict[str, Any]) -> Outcome:
        """Handle one request, retrying while Redis or Kafka is unreachable."""
        delay = 0.5
        while True:
            try:
                return await self._handle(request)
            except (RegistryUnavailable, KafkaError, TopicError, OSError) as exc:
                log.warning("retrain request %s: %s; retrying in %.1fs", request["request_id"],
                            exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_delay)

    async def _handle(self, request: dict[str, Any]) -> Outcome:
        model, rid = request["model"], request["request_id"]
        done = await asyncio.to_thread(self.registry.version_for_request, model, rid)
        if done is not None:
            return await asyncio.to_thread(self._finish, model, done)
        window = await recent_pairs(self.settings, model, since=request.get("since"))
        return await asyncio.to_thread(self._train, request, window)

    def _finish(self, model: str, version: int) -> Outcome:
        """A re-delivered request: complete the promotion a crash may have cut off."""
        info = self.registry.get(model, version)
        meta = info.meta
        if info.status == "active" and meta.get("decision") == "shadow":
            if self.registry.resolve(model) != version and \
                    self.registry.resolve(model, CHALLENGER) != version:
                self.registry.set_alias(model, CHALLENGER, version,
                                        reason=meta.get("decision_reason", ""))
            return Outcome(version, False, meta.get("decision_reason", ""), trained=False)
        promote = info.status == "active" and meta.get("decision") == "promote"
        if promote and self.registry.resolve(model) == meta.get("parent_version"):
            self.registry.promote(model, version, reason=meta.get("decision_reason", ""))
            log.warning("%s v%d: completed the promotion of request %s", model, version,
                        meta.get("request_id"))
        else:
            log.info("retrain request %s was handled before: v%d", meta.get("request_id"),
                     version)
        return Outcome(version, promote, meta.get("decision_reason", ""), trained=False)

    def _train(self, request: dict[str, Any], window: TrainingWindow) -> Outcome:
        model_name, rid = request["model"], request["request_id"]
        started = time.monotonic()
        champion_version = self.registry.resolve(model_name)
        try:
            champion = (self.registry.load(model_name, version=champion_version)
                        if champion_version is not None else None)
        except RegistryUnavailable:
            raise
        except (RegistryError, ArtifactError) as exc:
            raise TrainingFailed(f"the champion v{champion_version} cannot be loaded: {exc}") \
                from None
        # The monitor config's task, unless it gives none (regression): then the
        # champion's own (a classifier kind registered by hand says what it is).
        task = self.tasks(model_name)
        if task == "regression" and champion is not None:
            task = champion.task
        data = prepare(window.pairs, champion, task,
                       holdout_fraction=self.settings.holdout_fraction)
        X, y, names, train, holdout = data.X, data.y, data.columns, data.train, data.holdout
        if len(y) < MIN_ROWS:
            raise TrainingFailed(
                f"{len(y)} usable pairs of {model_name} since {request.get('since')} "
                f"({len(window.pairs)} read, {data.dropped} dropped as incomplete, non-finite "
                f"or with a label that is not a {task} one); need at least {MIN_ROWS}")
        fit_started = time.monotonic()
        try:
            result = (self.train_fn(X[train], y[train], names, task=task) if self.takes_task
                      else self.train_fn(X[train], y[train], names))
        except Exception as exc:
            raise TrainingFailed(f"{self.settings.trainer} raised {exc!r}") from exc
        fit_seconds = time.monotonic() - fit_started
        trained: Any = getattr(result, "model", result)
        try:
            kinds.kind_of(trained)
        except ArtifactError as exc:
            raise TrainingFailed(f"{self.settings.trainer} returned {type(result).__name__}: "
                                 f"{exc}") from None
        if trained.task != task:
            raise TrainingFailed(f"{self.settings.trainer} returned a {trained.task} model "
                                 f"({trained.kind}) for {model_name}, a {task} model")
        if list(trained.feature_names) != names:
            raise TrainingFailed(f"{self.settings.trainer} returned a model of features "
                                 f"{trained.feature_names}, not the {names} it was given")
        # Categories or missing values: the version is the encoding around the model, and
        # takes raw rows (agents/retrain/prepare.py).
        challenger = (EncodedModel(trained, data.encoding) if data.encoding is not None
                      else trained)
        metric = metric_for(task, self.settings.promotion_metric)
        decision = decide(challenger, champion, data.inputs(holdout), y[holdout],
                          self.settings.promotion_margin, metric,
                          self.thresholds(model_name))
        # The monitor's rolling metric of the version (MSE; Brier for a binary model, the
        # error rate for a multiclass one) starts from this baseline.
        baseline = (decision.challenger_loss if BASELINE[task] == metric else float(np.mean(
            model_losses(challenger, data.inputs(holdout), y[holdout], BASELINE[task]))))
        # DRIFTLINE_PROMOTION=shadow: a holdout winner is scored on live pairs before it
        # serves (agents/monitor/shadow.py); the first version has no champion to shadow.
        shadow = self.settings.promotion == "shadow" and champion is not None
        metrics = {metric: _finite(decision.challenger_loss),
                   f"champion_{metric}": _finite(decision.champion_loss),
                   "train_rows": train.stop - train.start,
                   "holdout_rows": holdout.stop - holdout.start}
        meta = {
            "parent_version": champion_version,
            "base_version": request.get("base_version"),
            "alert_id": request.get("alert_id"),
            "request_reason": request.get("reason"),
            "data": {**window.describe(self.settings.topic("monitor_input")),
                     "since": request.get("since"), "dropped_rows": data.dropped,
                     "older_skipped": window.older_skipped},
            "features": data.names,
            # how categories and missing values became the model's columns (also in the
            # artifact); None: the rows were all numbers
            "encoding": data.encoding.describe() if data.encoding is not None else None,
            "holdout": {"fraction": self.settings.holdout_fraction, "metric": metric,
                        f"challenger_{metric}": _finite(decision.challenger_loss),
                        f"champion_{metric}": _finite(decision.champion_loss)},
            "baseline_mse": _finite(baseline),
            "trainer": self.settings.trainer,
            "training": {key: value for key, value in (
                ("alpha", getattr(result, "alpha", None)),
                ("method", getattr(result, "method", None))) if value is not None},
            # Which features the training function kept and why (models/selection.py), and
            # what the model does with them on its training rows (models/explanation.py).
            "selection": _selection(result),
            # (a kind without linear coefficients, an ONNX graph say, has none)
            # (on the encoded columns when there is an encoding)
            "explanation": (explain(trained, X[train]) if hasattr(trained, "coef")
                            else None),
            "training_seconds": round(fit_seconds, 4),
            "decision": ("reject" if not decision.promote else
                         "shadow" if shadow else "promote"),
            "decision_reason": decision.reason,
        }
        version = self.registry.register(
            model_name, challenger, metrics=metrics, meta=meta, request_id=rid,
            rejected=None if decision.promote else decision.reason,
            reason=f"retrain request {rid}", reference=training_reference(challenger, data))
        if decision.promote and shadow:
            self.registry.set_alias(model_name, CHALLENGER, version,
                                    reason=f"{rid}: {decision.reason}; shadow-scored next")
        elif decision.promote:
            self.registry.promote(model_name, version, reason=f"{rid}: {decision.reason}")
        log.warning("%s v%d %s in %.2fs (%d train, %d holdout rows): %s", model_name, version,
                    "rejected" if not decision.promote else
                    "shadowing" if shadow else "promoted",
                    time.monotonic() - started, metrics["train_rows"], metrics["holdout_rows"],
                    decision.reason)
        return Outcome(version, decision.promote and not shadow, decision.reason, trained=True)


def training_reference(model: Any, data: Any) -> dict[str, Any] | None:
    """The new version's reference profile: its training rows (the most recent), their
    labels and what it predicts on them: the world it was trained for."""
    rows = data.rows[data.train] if data.rows is not None else []
    if not rows:
        return None
    labels = data.y[data.train].tolist()
    return profile(with_predictions([{"features": r, "label": y} for r, y in
                                     zip(rows[-MAX_ROWS:], labels[-MAX_ROWS:])], model),
                   source="training window")


def _takes_task(fn: TrainFn) -> bool:
    """Whether a training function takes ``task=`` (the built-in ones do; a user's
    ``(X, y, feature_names)`` function is called as before)."""
    try:
        parameters = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "task" in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())


def _selection(result: Any) -> dict[str, Any] | None:
    selection = getattr(result, "selection", None)
    return selection.describe() if selection is not None else None


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def install(app: faust.App, settings: Settings) -> Trainer:
    train_fn = load_train_fn(settings.trainer)
    from driftline.model_events import KafkaModelEvents

    registry = ModelRegistry.from_settings(settings, actor="driftline-trainer",
                                           on_event=KafkaModelEvents(settings=settings))
    from driftline.agents.monitor.config import MonitorConfig

    config = MonitorConfig.load(settings.monitor_config or None)
    trainer = Trainer(settings, registry, train_fn, sender(app),
                      tasks=lambda model: config.for_model(model).kind,
                      thresholds=config.decision_threshold)
    batch_agent(app, raw_topic(app, settings.topic("retrain")), "driftline.trainer",
                settings, trainer.process)
    return trainer
