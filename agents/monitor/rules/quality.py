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

from collections.abc import Iterable
from typing import Any

import numpy as np

from driftline.agents.monitor import calibration
from driftline.agents.monitor.categories import RESOLVE_P
from driftline.agents.monitor.columns import Columns
from driftline.agents.monitor.config import DataDriftConfig
from driftline.agents.monitor.rules.hysteresis import Hysteresis
from driftline.agents.monitor.rules.subject import Alert, Subject

KIND = "data_quality"
MISSING, MISMATCH, ABSENT = "missing_share", "type_mismatch", "feature_absent"
MAX_NEW = 1024  # new feature names reported per version; more are counted


class Quality:
    """The data-quality checks of ``names`` (numeric or categorical features of one
    version: ``odd`` is ``out_of_range`` or ``unseen_category``)."""

    def __init__(self, subject: Subject, config: DataDriftConfig, rate: float,
                 names: list[str], odd: str) -> None:
        self.subject, self.config, self.names, self.odd = subject, config, names, odd
        self.alpha = calibration.check_alpha(rate / calibration.QUALITY_CHECKS,
                                             config.check_every)
        needed = {MISSING: config.consecutive, MISMATCH: config.consecutive,
                  odd: config.consecutive, ABSENT: 1}
        self.runs = {check: [Hysteresis(n) for _ in names] for check, n in needed.items()}
        self.alerts: list[Alert] = []
        self.report: dict[str, dict[str, Any]] = {name: {} for name in names}
        # per feature: checks left before missing_share runs again after an absence
        self._hold = [0] * len(names)
        self._fitted = False

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
        out: list[Alert] = []
        p_missing = calibration.rise_p(self.ref_missing, missing, n, w)
        p_mismatch = calibration.rise_p(self.ref_mismatch, mismatch, n, w)
        absent = self.absent_ok & (period_missing >= cfg.check_every)
        for j, name in enumerate(self.names):
            self.report[name] = {"missing_share": float(missing[j] / w),
                                 "mismatch_share": float(mismatch[j] / w),
                                 f"{self.odd}_count": int(odd[j])}
            out += self._run(ABSENT, j, when, bool(absent[j]), not absent[j],
                             f"feature {name!r} was missing from all of the last "
                             f"{cfg.check_every} predictions",
                             f"feature {name!r} arrives again", severity="critical")
            if absent[j]:  # the window holds the absence until it has passed through
                self._hold[j] = -(-w // cfg.check_every)
                self.runs[MISSING][j].update(False, False)
            share, ref_share = missing[j] / w, self.ref_missing[j] / n
            if self._hold[j] > 0:
                self._hold[j] -= int(not absent[j])
            else:
                out += self._run(MISSING, j, when, p_missing[j] <= self.alpha,
                                 p_missing[j] > RESOLVE_P,
                                 f"{share:.1%} of feature {name!r} is missing over the last "
                                 f"{w} predictions, against {ref_share:.1%} in the first {n} "
                                 f"(p = {p_missing[j]:.2g})",
                                 f"the missing share of {name!r} is back to {share:.1%}",
                                 missing_share=float(share), reference_share=float(ref_share))
            share, ref_share = mismatch[j] / w, self.ref_mismatch[j] / n
            other = "numbers" if self.odd == "unseen_category" else "categories"
            out += self._run(MISMATCH, j, when, p_mismatch[j] <= self.alpha,
                             p_mismatch[j] > RESOLVE_P,
                             f"{share:.1%} of feature {name!r} are {other} over the last {w} "
                             f"predictions, against {ref_share:.1%} in the first {n} "
                             f"(p = {p_mismatch[j]:.2g})",
                             f"the share of {other} in {name!r} is back to {share:.1%}",
                             mismatch_share=float(share))
            what = ("values outside the reference's range" if self.odd == "out_of_range"
                    else "predictions with one category the reference never had")
            out += self._run(self.odd, j, when, odd[j] >= self.odd_limits[j],
                             odd[j] < self.odd_resolves[j],
                             f"{int(odd[j])} {what} in feature {name!r} over the last {w} "
                             f"predictions (limit {int(self.odd_limits[j])})",
                             f"{int(odd[j])} {what} in {name!r} now", count=float(odd[j]))
        self.alerts = out
        return out

    def _run(self, check: str, j: int, when: float, breach: bool, clear: bool, fired: str,
             cleared: str, severity: str = "warning", **metrics: float) -> list[Alert]:
        subject, name = self.subject, self.names[j]
        key = subject.key(KIND, name, check)
        runs = self.runs[check][j].update(breach, clear and not breach)
        if runs.breached and not subject.alerts.is_firing(key):
            alert = subject.alerts.fire(
                key, ts=when, detector=check, severity=severity,
                metrics=subject.metrics_now(**metrics),
                message=f"Data quality on {subject.name}: {fired}.")
        elif runs.cleared and subject.alerts.is_firing(key):
            alert = subject.alerts.resolve(
                key, ts=when, detector=check, metrics=subject.metrics_now(**metrics),
                message=f"Data quality on {subject.name}: {cleared}.")
        else:
            return []
        return [alert] if alert else []


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
