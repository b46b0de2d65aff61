"""What every alert rule is to the monitor: fed one batch at a time, it says what it raised.

A :class:`Rule` watches some :class:`Kind` of batch (scored pairs, predictions,
expired predictions). :class:`~driftline.agents.monitor.version.VersionMonitor` turns
each batch of a version's events into one :class:`Seen` (its columns, and for scored
pairs what the version's metrics made of them) and feeds it to the rules that watch its
kind, in order; ``update(seen)`` returns the rule (River's shape) and its ``alerts``
hold what that batch raised, in the order of the events.

>>> from driftline.agents.monitor.rules import DataDriftRule, LabelStarvationRule
>>> Kind.EXPIRED in LabelStarvationRule.watches, Kind.PAIRS in DataDriftRule.watches
(True, False)
>>> Seen(Kind.EXPIRED, np.array([7.0])).squared.size   # what a kind lacks is empty
0
"""

from __future__ import annotations

import enum
from typing import NamedTuple, Protocol

import numpy as np

from driftline.agents.monitor.rules.subject import Alert

_EMPTY = np.empty(0)
_NO_ROWS = np.empty((0, 0))
_NO_CODES = np.empty((0, 0), np.int32)


class Kind(enum.StrEnum):
    """What the events of a batch are (a str: hashed in C, it keys the rules by kind)."""

    PAIRS = "pairs"              # scored pairs: a prediction joined with its label
    PREDICTIONS = "predictions"
    EXPIRED = "expired"          # predictions whose label never came


class Seen(NamedTuple):
    """One batch of one version's events, in order, as its rules see it: arrays they read
    and never write (the defaults are shared). What a kind does not have is empty."""

    kind: Kind
    when: np.ndarray  # each event's time: a pair's label's, a prediction's, an expiry's
    rows: np.ndarray = _NO_ROWS         # events x the version's columns, NaN = missing
    prediction: np.ndarray = _EMPTY
    label: np.ndarray = _EMPTY          # pairs only, as the next three
    squared: np.ndarray = _EMPTY        # (prediction - label) ** 2
    rolling: np.ndarray = _EMPTY        # the version's rolling MSE after each pair
    scored: int = 0                     # pairs the version scored before these
    expected: np.ndarray | None = None  # predictions: their expected squared errors, if
                                        # the version-wide monitor has them (segments)
    codes: np.ndarray = _NO_CODES       # events x categorical columns (categories.py)
    mismatch: np.ndarray | None = None  # events x columns: a category there (None: nowhere)
    proba: np.ndarray | None = None     # multiclass: events x classes sent (NaN rows: none)


class Rule(Protocol):
    """An alert rule of one version (or of one segment of it)."""

    watches: frozenset[Kind]  # the kinds of batch it is fed
    alerts: list[Alert]       # what the last update raised, in order

    def update(self, seen: Seen) -> Rule:
        """One batch of a kind it watches; :attr:`alerts` then holds what it raised."""
        ...
