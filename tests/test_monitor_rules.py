"""The alert rules' shared hysteresis, and the rules one at a time."""

from __future__ import annotations

import numpy as np
import pytest

from driftline.agents.monitor.config import MonitorConfig
from driftline.agents.monitor.core import Monitor
from driftline.agents.monitor.rules import Hysteresis


def scalar_reaches(h: Hysteresis, breach, clear, restarts=()):
    """The scalar path's view of update_many: where a run reaches `needed`."""
    fired, cleared = [], []
    for i, (b, c) in enumerate(zip(breach.tolist(), clear.tolist())):
        if i in restarts:
            h.restart_clears()
        h.update(b, c)
        if b and h.breaches == h.needed:
            fired.append(i)
        if c and h.clears == h.needed:
            cleared.append(i)
    return fired, cleared


@pytest.mark.parametrize("needed", [1, 2, 5, 40])
def test_vectorised_runs_equal_the_scalar_path_over_any_batching(needed):
    rng = np.random.default_rng(needed)
    # long runs and short ones: values drift between breach, in between and clear
    level = np.repeat(rng.integers(0, 3, 400), rng.integers(1, 30, 400))
    breach, clear = level == 2, level == 0
    restarts = sorted(rng.choice(len(level), 15, replace=False).tolist())
    want = scalar_reaches(Hysteresis(needed), breach, clear, set(restarts))
    vec, got_fired, got_cleared, start = Hysteresis(needed), [], [], 0
    while start < len(level):
        end = min(len(level), start + int(rng.integers(1, 200)))
        local = [r - start for r in restarts if start <= r < end]
        vec.update_many(breach[start:end], clear[start:end], local)
        got_fired += [start + i for i in vec.breached_at]
        got_cleared += [start + i for i in vec.cleared_at]
        start = end
    assert (got_fired, got_cleared) == want
    assert want[0] and want[1]  # the stream does reach both
    ref = Hysteresis(needed)
    scalar_reaches(ref, breach, clear, set(restarts))
    assert (vec.breaches, vec.clears) == (ref.breaches, ref.clears)


def test_hysteresis_needs_at_least_one():
    with pytest.raises(ValueError, match="at least 1"):
        Hysteresis(0)


def psi_firings(feature: str):
    """Predictions whose only feature and whose prediction both shift at 5,000."""
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.normal(size=5_000), rng.normal(3.0, 1.0, size=5_000)])
    events = [{"prediction_id": str(i), "model": "m", "version": 1, "prediction": float(v),
               "features": {feature: float(v)}, "ts": float(i)} for i, v in enumerate(values)]
    mon = Monitor(MonitorConfig())
    # batches of 100, so the checks of both kinds interleave the way a stream brings them
    alerts = [a for i in range(0, len(events), 100)
              for a in mon.process_predictions(events[i:i + 100])]
    return [(a["kind"], a["feature"], a["ts"]) for a in alerts]


def test_a_feature_named_prediction_keeps_its_own_psi_counts():
    """Data drift of a feature called "prediction" and prediction drift count their
    checks apart: each fires after `consecutive` checks, like any other feature."""
    plain = psi_firings("x")
    named = psi_firings("prediction")
    assert [k for k, _, _ in plain] == ["data_drift", "prediction_drift"]
    assert [(k, ts) for k, _, ts in named] == [(k, ts) for k, _, ts in plain]
    assert named[0][1] == "prediction" and named[1][1] is None


def test_the_rules_package_exports_exactly_its_classes():
    import types

    from driftline.agents.monitor import rules

    public = sorted(name for name, value in vars(rules).items()
                    if not name.startswith("_") and not isinstance(value, types.ModuleType))
    assert sorted(rules.__all__) == public
    for name in rules.__all__:
        kind = getattr(rules, name)
        assert kind.__module__.startswith("driftline.agents.monitor.rules.")
