"""Synthetic production streams for monitor tests (and benches): y = 2x + noise, then a
change; a calibrated binary classifier; an overconfident multiclass one; the cut world."""

from __future__ import annotations

import math

import numpy as np

from driftline.models.classifiers import LogisticModel

FEATURES = [f"x{j}" for j in range(10)]


def stream(n: int, seed: int = 0, *, model: str = "m", version: int = 1,
           drift_at: int | None = None,
           kind: str = "abrupt", shift_feature: str | None = None, noise: float = 1.0,
           start_ts: float = 1_700_000_000.0):
    """Predictions and their scored pairs. The model predicts 2*x0 + (sum of the other
    features) * 0; the truth is 2*x0 + noise, and after ``drift_at``:
    abrupt -> 3*x0 + 1; gradual -> the same reached linearly over 5,000 pairs;
    feature-shift -> ``shift_feature`` moves by +2 standard deviations (truth unchanged)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, len(FEATURES)))
    y_hat = 2 * X[:, 0]
    y = 2 * X[:, 0] + rng.normal(scale=noise, size=n)
    if drift_at is not None:
        idx = np.arange(n)
        if kind == "abrupt":
            after = idx >= drift_at
            y[after] = 3 * X[after, 0] + 1 + rng.normal(scale=noise, size=after.sum())
        elif kind == "gradual":
            w = np.clip((idx - drift_at) / 5000, 0, 1)
            y = (2 + w) * X[:, 0] + w + rng.normal(scale=noise, size=n)
        elif kind == "feature-shift":
            j = FEATURES.index(shift_feature)
            X[drift_at:, j] += 2.0
        else:
            raise ValueError(kind)
    predictions, pairs = [], []
    for i in range(n):
        ts = start_ts + i * 0.01
        features = dict(zip(FEATURES, X[i].tolist()))
        pid = f"{model}-{version}-{seed}-{i}"
        p = float(y_hat[i])
        predictions.append({"prediction_id": pid, "model": model, "version": version,
                            "prediction": p, "features": features, "ts": ts})
        pairs.append({"prediction_id": pid, "model": model, "version": version, "prediction": p,
                      "label": float(y[i]), "error": p - float(y[i]), "features": features,
                      "ts": ts, "label_ts": ts + 1.0})
    return predictions, pairs


ANIMALS = ["cat", "dog", "fox", "owl"]


def calibrated_binary(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A calibrated binary classifier: P(1) = sigmoid(3 x), and labels drawn from it."""
    rng = np.random.default_rng(seed)
    p = 1 / (1 + np.exp(-3 * rng.normal(size=n)))
    return p, (rng.random(n) < p).astype(float)


def binary_events(p: np.ndarray, y: np.ndarray, seed: int = 0, *, model: str = "churn",
                  start_ts: float = 1_700_000_000.0) -> tuple[list[dict], list[dict]]:
    """Predictions P(1) = ``p`` with three features, and their pairs with labels ``y``."""
    x = np.random.default_rng(seed).normal(size=(len(p), 3))
    predictions, pairs = [], []
    for i in range(len(p)):
        ts = start_ts + i * 0.01
        event = {"prediction_id": f"b{i}", "model": model, "version": 1,
                 "prediction": float(p[i]), "ts": ts,
                 "features": {f"x{j}": float(x[i, j]) for j in range(3)}}
        predictions.append(event)
        pairs.append({**event, "label": float(y[i]), "error": float(p[i] - y[i]),
                      "label_ts": ts + 0.005})
    return predictions, pairs


def softmax_pairs(n: int, seed: int, shift_from: int | None = None
                  ) -> tuple[list[dict], list[dict]]:
    """A 4-class model (``zoo``, classes :data:`ANIMALS`) that reports overconfident
    probabilities (the softmax of its logits at temperature 0.4, where the true class
    follows their softmax at 1): CBPE has to calibrate them. Its inputs are clear (logits
    of spread 2.5) 80 % of the time; from ``shift_from`` on, 20 % (the rest: spread 0.5).
    A covariate shift: P(class | input) stays what it was."""
    rng = np.random.default_rng(seed)
    predictions, labels = [], []
    for i in range(n):
        clear = rng.random() < (0.8 if shift_from is None or i < shift_from else 0.2)
        logits = rng.normal(0, 2.5 if clear else 0.5, 4)
        truth = int(rng.choice(4, p=np.exp(logits) / np.exp(logits).sum()))
        p = np.exp(logits / 0.4)
        p /= p.sum()
        pid = f"s{i}"
        predictions.append({"prediction_id": pid, "model": "zoo", "version": 1,
                            "prediction": ANIMALS[int(p.argmax())],
                            "probabilities": {c: float(v) for c, v in zip(ANIMALS, p)},
                            "features": {"x": float(rng.normal())}, "ts": float(i)})
        labels.append({"prediction_id": pid, "label": ANIMALS[truth], "ts": float(i) + 0.5})
    return predictions, labels


# The cut world: the label is 1 exactly when x > 0. LOW_CUT's P(1) reaches 0.3 at x = 0,
# HALF_CUT's 0.5: at decision threshold 0.3 LOW_CUT makes no mistakes and HALF_CUT ~10 %
# (x in [-0.21, 0]); at 0.5 the other way round. Which is better by error rate depends on
# the threshold alone.
LOW_CUT = LogisticModel([4.0], math.log(0.3 / 0.7), ["x"])
HALF_CUT = LogisticModel([4.0], 0.0, ["x"])


def cut_world(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rows of x, uniform on [-1, 1], and their labels."""
    x = np.random.default_rng(seed).uniform(-1.0, 1.0, n)
    return x[:, None], (x > 0).astype(float)


def cut_pairs(served_by: LogisticModel, version: int, n: int, start: int = 0,
              model: str = "churn") -> list[dict]:
    """Scored pairs of the cut world served by ``served_by`` as ``version``, at times
    ``start``, ``start + 1``, ..."""
    X, y = cut_world(n, seed=start)
    p = served_by.predict(X)
    return [{"prediction_id": f"{model}-{start + i}", "model": model, "version": version,
             "prediction": float(pi), "label": float(t), "error": float(pi - t),
             "features": {"x": float(x)}, "ts": float(start + i), "label_ts": float(start + i)}
            for i, (x, pi, t) in enumerate(zip(X[:, 0], p, y))]
