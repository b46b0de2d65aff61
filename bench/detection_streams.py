"""The streams of ``bench/detection.py``: River's published drift generators, encoded as floats.

Each :class:`Family` draws a stream of ``train + n`` rows for a seed: the model is fitted on
the first ``train`` rows (all before the change), the monitor and the detectors see the next
``n``; ``start`` is where the change begins in those ``n`` (None: stationary).

Encoding of River's dict features: numbers stay numbers, booleans (``Mixed``) become 0/1,
categorical ones are one-hot (``Agrawal``'s ``elevel`` and ``zipcode``, every ``STAGGER``
attribute); ``Agrawal``'s ``car`` is skipped (none of its ten functions reads it). The
prediction events carry the same encoded columns the model reads, so the monitor's
false-alarm budget is split over that many features' tests.

Gradual changes (``ConceptDriftStream`` with ``width`` w, ``FriedmanDrift`` ``gsg``) begin
where the new concept's share passes ~12%: ``position - w / 2`` for ``ConceptDriftStream``
(its share is a logistic curve centred on ``position``), the change point for ``gsg`` (half
the rows come from the new concept from there, all after ``transition_window``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from river.datasets import synth

FAR = 10**9  # a change point past the end of any stream here


@dataclass(frozen=True)
class Family:
    name: str
    task: str                                   # "regression" or "binary"
    draw: Callable[[int, int, int], tuple[np.ndarray, np.ndarray, list[str]]]
    change: Callable[[int], int | None]         # n -> start of the change in the n rows
    what: str                                   # one line for the docs


def _river(rows: Iterable[tuple[dict[Any, Any], Any]], count: int,
           encode: Callable[[dict[Any, Any]], list[float]], names: list[str]
           ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    xs, ys = [], []
    for x, y in itertools.islice(rows, count):
        xs.append(encode(x))
        ys.append(float(y))
    return np.asarray(xs, float), np.asarray(ys, float), names


def _numbers(d: int) -> tuple[Callable[[dict[Any, Any]], list[float]], list[str]]:
    return (lambda x: [float(x[j]) for j in range(d)]), [f"x{j}" for j in range(d)]


def _one_hot(value: int, levels: range) -> list[float]:
    return [float(value == v) for v in levels]


AGRAWAL_NUMBERS = ("salary", "commission", "age", "hvalue", "hyears", "loan")
AGRAWAL_NAMES = ([*AGRAWAL_NUMBERS] + [f"elevel_{v}" for v in range(5)]
                 + [f"zipcode_{v}" for v in range(9)])


def _agrawal(x: dict[str, Any]) -> list[float]:
    return ([float(x[k]) for k in AGRAWAL_NUMBERS] + _one_hot(x["elevel"], range(5))
            + _one_hot(x["zipcode"], range(9)))


STAGGER_NAMES = [f"{a}_{v}" for a in ("size", "color", "shape") for v in range(3)]


def _stagger(x: dict[str, Any]) -> list[float]:
    return [v for a in ("size", "color", "shape") for v in _one_hot(x[a], range(3))]


def _drift_stream(make: Callable[[int, bool], Any], width: int, encode: Any, names: list[str]
                  ) -> Callable[[int, int, int], tuple[np.ndarray, np.ndarray, list[str]]]:
    """A ``ConceptDriftStream`` from ``make(seed, after)``'s before and after concepts,
    centred on the change (``start + width // 2`` of the monitored rows)."""
    def draw(seed: int, train: int, n: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
        centre = train + change_at(n) + width // 2
        before, after = make(seed, False), make(seed + 10_000, True)
        if width == 1:
            # What width=1 means, without ConceptDriftStream: River 0.26.1 computes
            # math.exp(4 * (position - i) / width), which overflows for a position more
            # than ~177 widths away (OverflowError: math range error).
            return _river(itertools.chain(itertools.islice(before, centre), after),
                          train + n, encode, names)
        stream = synth.ConceptDriftStream(before, after, position=centre, width=width,
                                          seed=seed)
        return _river(stream, train + n, encode, names)
    return draw


def change_at(n: int) -> int:
    """Where a drifting stream of ``n`` monitored rows changes: after 40% of them."""
    return int(n * 0.4)


def _friedman(kind: str) -> Callable[[int, int, int], tuple[np.ndarray, np.ndarray, list[str]]]:
    encode, names = _numbers(10)

    def draw(seed: int, train: int, n: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
        at = train + change_at(n)
        position: tuple[int, ...] = (at, FAR, FAR + 1) if kind == "lea" else (at, FAR)
        stream = synth.FriedmanDrift(drift_type=kind, position=position, seed=seed,
                                     transition_window=2_000 if kind == "gsg" else 0)
        return _river(stream, train + n, encode, names)
    return draw


def _noisy_friedman(noise: str) -> Callable[[int, int, int],
                                              tuple[np.ndarray, np.ndarray, list[str]]]:
    """Friedman #1's function of 10 uniform features (5 used), numpy, with heavy noise."""
    def draw(seed: int, train: int, n: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
        rng = np.random.default_rng([seed, 35])
        X = rng.uniform(size=(train + n, 10))
        f = (10 * np.sin(np.pi * X[:, 0] * X[:, 1]) + 20 * (X[:, 2] - 0.5) ** 2
             + 10 * X[:, 3] + 5 * X[:, 4])
        if noise.startswith("t"):
            eps = rng.standard_t(int(noise[1:]), size=len(f))
        else:
            eps = rng.lognormal(0.0, 1.0, size=len(f))
        return X, f + eps, [f"x{j}" for j in range(10)]
    return draw


def _stationary(make: Callable[[int], Any], encode: Any, names: list[str]
                ) -> Callable[[int, int, int], tuple[np.ndarray, np.ndarray, list[str]]]:
    def draw(seed: int, train: int, n: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
        return _river(make(seed), train + n, encode, names)
    return draw


def _never(n: int) -> int | None:
    return None


num4, names4 = _numbers(4)
num3, names3 = _numbers(3)
num10, names10 = _numbers(10)


def _sea(variant_after: int) -> Callable[[int, bool], Any]:
    return lambda seed, after: synth.SEA(variant=variant_after if after else 0, noise=0.1,
                                         seed=seed)


def _agrawal_switch(seed: int, after: bool) -> Any:
    return synth.Agrawal(classification_function=2 if after else 0, seed=seed)


def _hyperplane(seed: int, after: bool) -> Any:
    # The same hyperplane (seed) before and after; after the change its weights move
    # (incremental drift), before they stay.
    return synth.Hyperplane(seed=seed % 10_000, n_features=10, n_drift_features=5,
                            mag_change=0.001 if after else 0.0, noise_percentage=0.05)


DRIFTING = [
    Family("friedman-gra", "regression", _friedman("gra"), change_at,
           "FriedmanDrift gra: global abrupt (features swap roles)"),
    Family("friedman-lea", "regression", _friedman("lea"), change_at,
           "FriedmanDrift lea: local abrupt (one region of the space)"),
    Family("friedman-gsg", "regression", _friedman("gsg"), change_at,
           "FriedmanDrift gsg: global gradual, transition_window 2,000"),
    Family("hyperplane-incr", "binary",
           _drift_stream(_hyperplane, 1, num10, names10), change_at,
           "Hyperplane 10 features: static, then 5 weights move (mag_change 0.001)"),
    Family("sea-abrupt", "binary", _drift_stream(_sea(2), 1, num3, names3), change_at,
           "SEA variant 0 -> 2 (threshold 8 -> 7), 10% label noise, width 1"),
    Family("sea-gradual", "binary", _drift_stream(_sea(2), 2_000, num3, names3),
           change_at, "SEA variant 0 -> 2, 10% label noise, width 2,000"),
    Family("agrawal-abrupt", "binary",
           _drift_stream(_agrawal_switch, 1, _agrawal, AGRAWAL_NAMES), change_at,
           "Agrawal classification_function 0 -> 2, width 1"),
    Family("agrawal-gradual", "binary",
           _drift_stream(_agrawal_switch, 5_000, _agrawal, AGRAWAL_NAMES), change_at,
           "Agrawal classification_function 0 -> 2, width 5,000"),
    Family("stagger-abrupt", "binary",
           _drift_stream(lambda seed, after: synth.STAGGER(int(after), seed=seed), 1,
                         _stagger, STAGGER_NAMES), change_at,
           "STAGGER classification_function 0 -> 1, width 1"),
    Family("mixed-abrupt", "binary",
           _drift_stream(lambda seed, after: synth.Mixed(int(after), seed=seed), 1, num4,
                         names4), change_at, "Mixed classification_function 0 -> 1, width 1"),
]

STATIONARY = [
    Family("friedman-normal", "regression",
           _stationary(lambda seed: synth.Friedman(seed=seed), num10, names10), _never,
           "Friedman #1, N(0, 1) noise"),
    Family("friedman-t2", "regression", _noisy_friedman("t2"), _never,
           "Friedman #1's function, Student t (df 2) noise: infinite variance"),
    Family("friedman-t3", "regression", _noisy_friedman("t3"), _never,
           "Friedman #1's function, Student t (df 3) noise"),
    Family("friedman-lognormal", "regression", _noisy_friedman("lognormal"), _never,
           "Friedman #1's function, log-normal (0, 1) noise"),
    Family("sea-stationary", "binary",
           _stationary(lambda seed: synth.SEA(variant=0, noise=0.1, seed=seed), num3, names3),
           _never, "SEA variant 0, 10% label noise"),
    Family("agrawal-stationary", "binary",
           _stationary(lambda seed: synth.Agrawal(classification_function=0, seed=seed),
                       _agrawal, AGRAWAL_NAMES), _never, "Agrawal classification_function 0"),
]
