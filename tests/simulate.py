"""Synthetic production streams for monitor tests: y = 2x + noise, then a change."""

from __future__ import annotations

import numpy as np

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
