"""What each model kind costs: training, loading from its artifact, predicting, its size.

    .venv/bin/python bench/model_kinds.py [--rows 20000] [--features 10] [--classes 10]
                                          [--repeat 5]

For each built-in kind (``linear``, ``logistic``, ``softmax``) on a synthetic world of
``--rows`` rows and ``--features`` features (``--classes`` for the softmax); then the same
three tasks as the ``encoded`` kind, the rows given a 25-value ``city`` and 5 % of ``x0``
missing, encoded as the trainer encodes them (one-hot with ``_other``, imputation with an
indicator) around the same default function; then as the ``onnx`` kind: a scikit-learn
random forest (50 trees, depth 8) converted by skl2onnx (without zipmap) and served by
onnxruntime (rows skipped without them; "train s" is then scikit-learn's fit plus the
conversion). Every kind predicts the same 1,000 rows and one dict row of its world:
an ``encoded`` model's dict row carries the city (and numbers in array rows, its raw
features, the city as an index that is then one of its ``_other``).

  train s        the trainer's default function (feature selection, L2 by walk-forward CV,
                 fit): ``train_selected(X, y, names, task=...)``, once
  artifact B     ``to_bytes()``: the .npz with its JSON header
  load ms        ``kinds.load``: the kind's class found, then ``from_bytes`` (what every
                 registry load and ModelClient swap pays; the checksum is the registry's
                 and is not in it), median of --repeat
  predict 1k ms  ``predict`` of 1,000 rows as an array, median of --repeat
  predict 1 us   one dict row, as a service calls it per request, median of 1,000 calls
  holdout        the held-out loss the trainer judges by (MSE; log loss for classifiers)

Side by side in one run; quote ratios, not absolute figures (they swing ~3x between runs).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from driftline.models import kinds
from driftline.models.losses import metric_for, model_losses
from driftline.models.selection import train_selected
from driftline.models.training import time_holdout


def world(task: str, rows: int, features: int, classes: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, features))
    w = rng.normal(size=(max(classes, 1), features)) * (rng.random(features) < 0.6)
    if task == "regression":
        return X, X @ w[0] + rng.normal(size=rows)
    if task == "binary":
        return X, (rng.random(rows) < 1 / (1 + np.exp(-(X @ w[0])))).astype(float)
    scores = X @ w.T + rng.gumbel(size=(rows, classes))
    return X, np.array([f"class{k}" for k in range(classes)], dtype=object)[scores.argmax(1)]


def built_in(X, y, names, task):
    return train_selected(X, y, names, task=task).model


CITIES = [f"city{k}" for k in range(25)]


def encoded(X, y, names, task):
    """The default function on the trainer's encoding of rows with a category and missing
    values, wrapped as the trainer wraps it (:mod:`driftline.agents.retrain.prepare`)."""
    from driftline.models.encoded import EncodedModel, Encoding

    rows = dict_rows(X, names)
    encoding = Encoding.fit(rows, [*names, "city"])
    inner = train_selected(encoding.transform(rows), y, encoding.names(), task=task).model
    return EncodedModel(inner, encoding)


def dict_rows(X, names) -> list[dict]:
    """``X``'s rows as dicts, with a city (by row) and ``x0`` missing in 1 row of 20."""
    rows = [dict(zip(names, r)) for r in X.tolist()]
    for i, row in enumerate(rows):
        row["city"] = CITIES[i * 7 % len(CITIES)]
        if i % 20 == 0:
            row[names[0]] = None
    return rows


def onnx(X, y, names, task):
    """A scikit-learn random forest (50 trees, depth 8) as an ``onnx`` kind. (Not
    HistGradientBoosting: skl2onnx 1.20 cannot convert scikit-learn 1.9's.)"""
    from skl2onnx import to_onnx
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    from driftline.models.onnx import OnnxModel

    cls = RandomForestRegressor if task == "regression" else RandomForestClassifier
    est = cls(n_estimators=50, max_depth=8, random_state=0).fit(X, y)
    options = {} if task == "regression" else {id(est): {"zipmap": False}}
    data = to_onnx(est, X[:1].astype(np.float32), options=options).SerializeToString()
    return OnnxModel(data, task=task, feature_names=names)


def measure(task: str, args, fit=built_in) -> dict:
    X, y = world(task, args.rows, args.features, args.classes)
    names = [f"x{j}" for j in range(args.features)]
    train, holdout = time_holdout(len(y))
    started = time.perf_counter()
    model = fit(X[train], y[train], names, task)
    trained = time.perf_counter() - started
    data = model.to_bytes()
    loads, batches, singles = [], [], []
    if fit is encoded:  # what it takes: dict rows with the city and the missing values
        held = dict_rows(X, names)[holdout]
        rows, row = dict_rows(X[:1000], names), dict_rows(X[1:2], names)[0]
    else:
        held = X[holdout]
        rows, row = X[:1000], dict(zip(names, X[0].tolist()))
    for _ in range(args.repeat):
        t = time.perf_counter()
        kinds.load(model.kind, data)
        loads.append(time.perf_counter() - t)
        t = time.perf_counter()
        model.predict(rows)
        batches.append(time.perf_counter() - t)
        t = time.perf_counter()
        for _ in range(1000):
            model.predict(row)
        singles.append((time.perf_counter() - t) / 1000)
    metric = metric_for(task)
    loss = float(np.nanmean(model_losses(model, held, y[holdout], metric)))
    return {"kind": model.kind, "task": task, "train_s": trained, "bytes": len(data),
            "load_ms": statistics.median(loads) * 1e3,
            "predict_1k_ms": statistics.median(batches) * 1e3,
            "predict_1_us": statistics.median(singles) * 1e6, "metric": metric, "loss": loss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--features", type=int, default=10)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    tasks = ("regression", "binary", "multiclass")
    results = [measure(task, args) for task in tasks]
    results += [measure(task, args, encoded) for task in tasks]
    try:
        results += [measure(task, args, onnx) for task in tasks]
    except ImportError as exc:  # the onnx rows need scikit-learn, skl2onnx and onnxruntime
        print(f"(no onnx rows: {exc})")
    base = results[0]
    print(f"{args.rows:,} rows, {args.features} features, softmax of {args.classes} classes")
    print(f"{'kind':<10}{'task':<12}{'train s':>9}{'artifact B':>12}{'load ms':>9}"
          f"{'predict 1k ms':>15}{'predict 1 us':>14}{'x linear':>10}  holdout")
    for r in results:
        print(f"{r['kind']:<10}{r['task']:<12}{r['train_s']:>9.2f}{r['bytes']:>12,}{r['load_ms']:>9.3f}"
              f"{r['predict_1k_ms']:>15.3f}{r['predict_1_us']:>14.1f}"
              f"{r['predict_1_us'] / base['predict_1_us']:>9.2f}x  "
              f"{r['metric']} {r['loss']:.3f}")


if __name__ == "__main__":
    main()
