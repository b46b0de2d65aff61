"""Data quality: alerts of kind ``data_quality`` about a feature's values, not their drift.

Each feature's checks run model-wide, at the data-drift checks (every ``check_every``
predictions, on the same window and reference counts), and share one test's false-alarm
rate (:mod:`~driftline.agents.monitor.calibration`):

* ``missing_share``: the share of missing values (absent or null) rose, by Fisher's exact
  test of the window against the reference;
* ``type_mismatch``: the share of values of the other type (a category where the version
  has numbers, or a number where it has categories) rose, by the same test;
* ``out_of_range`` (numeric): more values outside the reference's range than a stationary
  stream shows (beta-binomial);
* ``unseen_category`` (categorical): one category the reference never had takes more of
  the window than any distribution makes likely;
* ``feature_absent``: a whole check's predictions lacked a feature the reference had,
  fired at once, resolved when it arrives again (``missing_share`` waits while it fires,
  and until the window no longer holds the absence);
* ``feature_new`` (:class:`NewFeatures`): a feature the version's columns do not have
  arrived; reported once per feature, never resolved, so it is never ignored silently.

Each is an episode per (feature, check): it fires after ``consecutive`` breaching checks
(``feature_absent``: one) and resolves after as many clear ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from driftline.agents.monitor import calibration
from driftline.agents.monitor.categories import RESOLVE_P
from driftline.agents.monitor.columns import Columns
from driftline.agents.monitor.config import DataDriftConfig
from driftline.agents.monitor.rules.subject import Alert, Subject

KIND = "data_quality"
MISSING, MISMATCH, ABSENT = "missing_share", "type_mismatch", "feature_absent"
MAX_NEW = 1024  # new feature names reported per version; more are counted


class Quality:
    """The data-quality checks of ``names`` (numeric or categorical features of one
    version: ``odd`` is ``out_of_range`` or ``unseen_category``). A check is arithmetic
    on arrays over the features; only a feature whose episode fires or resolves costs a
    Python step (10 features checked in ~15 µs)."""

    def __init__(self, subject: Subject, config: DataDriftConfig, rate: float,
                 names: list[str], odd: str) -> None:
        self.subject, self.config, self.names, self.odd = subject, config, names, odd
        self.alpha = calibration.check_alpha(rate / calibration.QUALITY_CHECKS,
                                             config.check_every)
        self.needed = {MISSING: config.consecutive, MISMATCH: config.consecutive,
                       odd: config.consecutive, ABSENT: 1}
        n = len(names)
        # per check and feature: breaches and clears in a row (Hysteresis's counts), and
        # whether its episode is firing as far as this rule knows (the alert book has the
        # last word: a superseded version's episodes are resolved there)
        self.breaches = {check: np.zeros(n, np.int64) for check in self.needed}
        self.clears = {check: np.zeros(n, np.int64) for check in self.needed}
        self.firing = {check: np.zeros(n, bool) for check in self.needed}
        self.alerts: list[Alert] = []
        self._last: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        # per feature: checks left before missing_share runs again after an absence
        self._hold = np.zeros(n, np.int64)
        self._fitted = False

    @property
    def report(self) -> dict[str, dict[str, Any]]:
        """Per feature, the latest check's shares and count (empty before one)."""
        if self._last is None:
            return {name: {} for name in self.names}
        missing, mismatch, odd = self._last
        w = self.config.window
        return {name: {"missing_share": float(missing[j] / w),
                       "mismatch_share": float(mismatch[j] / w),
                       f"{self.odd}_count": int(odd[j])} for j, name in enumerate(self.names)}

    def fit(self, missing: np.ndarray, mismatch: np.ndarray, odd_limits: np.ndarray,
            odd_resolves: np.ndarray) -> None:
        """The reference's counts of missing values and mismatches per feature, and the
        limits (counts in the window) of the ``odd`` check (above ``window``: not run)."""
        cfg = self.config
        self.ref_missing, self.ref_mismatch = missing, mismatch
        self.odd_limits, self.odd_resolves = odd_limits, odd_resolves
        present = cfg.reference_size - missing
        self.absent_ok = calibration.absent_p(present, cfg.reference_size,
                                              cfg.check_every) <= self.alpha
        self._fitted = True

    def check(self, when: float, missing: np.ndarray, mismatch: np.ndarray, odd: np.ndarray,
              period_missing: np.ndarray) -> list[Alert]:
        """One check's window counts per feature (``odd``: out of the reference's range,
        or the largest count of one category it never saw), and the missing values since
        the last check; the alerts it raised."""
        if not self._fitted:
            return []
        cfg = self.config
        n, w = cfg.reference_size, cfg.window
        self._last = (missing, mismatch, odd)
        p_missing = calibration.rise_p(self.ref_missing, missing, n, w)
        p_mismatch = calibration.rise_p(self.ref_mismatch, mismatch, n, w)
        absent = self.absent_ok & (period_missing >= cfg.check_every)
        odd_breach = odd >= self.odd_limits
        if not (absent.any() or self._hold.any() or odd_breach.any()
                or (p_missing <= self.alpha).any() or (p_mismatch <= self.alpha).any()
                or any(f.any() for f in self.firing.values())):
            for runs in self.breaches.values():  # the common case: nothing to act on; clears
                runs[:] = 0                      # matter only while an episode fires
            self.alerts = []
            return []
        # the window holds an absence until it has passed through: no missing_share then
        self._hold = np.where(absent, -(-w // cfg.check_every), np.maximum(self._hold - 1, 0))
        quiet = self._hold > 0
        other = "numbers" if self.odd == "unseen_category" else "categories"
        what = ("values outside the reference's range" if self.odd == "out_of_range"
                else "predictions with one category the reference never had")
        out: list[Alert] = []
        out += self._run(ABSENT, when, absent, ~absent, lambda j: (
            f"feature {self.names[j]!r} was missing from all of the last "
            f"{cfg.check_every} predictions",
            f"feature {self.names[j]!r} arrives again", {}), severity="critical")
        out += self._run(MISSING, when, (p_missing <= self.alpha) & ~quiet,
                         (p_missing > RESOLVE_P) & ~quiet, lambda j: (
            f"{missing[j] / w:.1%} of feature {self.names[j]!r} is missing over the last "
            f"{w} predictions, against {self.ref_missing[j] / n:.1%} in the first {n} "
            f"(p = {p_missing[j]:.2g})",
            f"the missing share of {self.names[j]!r} is back to {missing[j] / w:.1%}",
            {"missing_share": float(missing[j] / w),
             "reference_share": float(self.ref_missing[j] / n)}), hold=quiet)
        out += self._run(MISMATCH, when, p_mismatch <= self.alpha, p_mismatch > RESOLVE_P,
                         lambda j: (
            f"{mismatch[j] / w:.1%} of feature {self.names[j]!r} are {other} over the last "
            f"{w} predictions, against {self.ref_mismatch[j] / n:.1%} in the first {n} "
            f"(p = {p_mismatch[j]:.2g})",
            f"the share of {other} in {self.names[j]!r} is back to {mismatch[j] / w:.1%}",
            {"mismatch_share": float(mismatch[j] / w)}))
        out += self._run(self.odd, when, odd_breach, odd < self.odd_resolves,
                         lambda j: (
            f"{int(odd[j])} {what} in feature {self.names[j]!r} over the last {w} "
            f"predictions (limit {int(self.odd_limits[j])})",
            f"{int(odd[j])} {what} in {self.names[j]!r} now", {"count": float(odd[j])}))
        self.alerts = out
        return out

    def _run(self, check: str, when: float, breach: np.ndarray, clear: np.ndarray,
             text: Callable[[int], tuple[str, str, dict[str, float]]],
             severity: str = "warning", hold: np.ndarray | None = None) -> list[Alert]:
        """One check of every feature: runs of breaches and clears (``hold``: features
        whose runs wait, untouched), then the episodes that fire or resolve."""
        breaches, clears, firing = self.breaches[check], self.clears[check], self.firing[check]
        clear = clear & ~breach
        keep = hold if hold is not None else np.zeros(len(breach), bool)
        breaches[:] = np.where(keep, 0, np.where(breach, breaches + 1, 0))
        clears[:] = np.where(keep, 0, np.where(clear, clears + 1, 0))
        needed = self.needed[check]
        act = np.flatnonzero(((breaches >= needed) & ~firing) | ((clears >= needed) & firing))
        subject, book, out = self.subject, self.subject.alerts, []
        for j in act.tolist():
            key = subject.key(KIND, self.names[j], check)
            fired, cleared, metrics = text(j)
            if not firing[j]:
                alert = book.fire(key, ts=when, detector=check, severity=severity,
                                  metrics=subject.metrics_now(**metrics),
                                  message=f"Data quality on {subject.name}: {fired}.")
            else:
                alert = book.resolve(key, ts=when, detector=check,
                                     metrics=subject.metrics_now(**metrics),
                                     message=f"Data quality on {subject.name}: {cleared}.")
            firing[j] = book.is_firing(key)
            if alert:
                out.append(alert)
        return out


class NewFeatures:
    """``feature_new``: a feature the version's columns lack arrived; one alert per name,
    at most :data:`MAX_NEW` names (the rest counted)."""

    def __init__(self, subject: Subject, known: set[str]) -> None:
        self.subject, self.known = subject, known
        self.reported: list[str] = []
        self.unreported = 0

    def update(self, names: frozenset[str], when: float) -> list[Alert]:
        out = []
        for name in sorted(names - self.known):
            if len(self.reported) >= MAX_NEW:  # the names are not kept: bounded memory
                self.unreported += 1
                continue
            self.known.add(name)
            self.reported.append(name)
            subject = self.subject
            alert = subject.alerts.fire(
                subject.key(KIND, name, "feature_new"), ts=when, detector="feature_new",
                severity="warning", metrics=subject.metrics_now(),
                message=f"Data quality on {subject.name}: feature {name!r} arrived, which "
                        f"the version's first predictions did not have; it is not monitored "
                        f"in this version (a new version takes it from its first ones).")
            if alert:
                out.append(alert)
        return out


def features_report(columns: Columns | None, rules: Iterable[Any]) -> dict[str, dict[str, Any]]:
    """Per feature of a version: its type, its drift test's latest statistic, value and
    limit, and (model-wide) its data-quality shares; a categorical one's categories met and
    whether it met more than its cap; an identifier-like one is not drift-tested."""
    if columns is None:
        return {}
    out: dict[str, dict[str, Any]] = {
        name: {"type": kind} for name, kind in columns.types().items()}
    for rule in rules:
        if rule is None:
            continue
        for name, last in rule.last.items():
            out[name].update(last)
        if rule.quality is not None:
            for name, shares in rule.quality.report.items():
                out[name].update(shares)
    for name, vocab in zip(columns.categorical, columns.vocabularies):
        out[name].update(categories=len(vocab), capped=vocab.overflowed)
    return out
