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
    # (the shift of 3 standard deviations also brings values out of the reference's range)
    return [(a["kind"], a["feature"], a["ts"]) for a in alerts if a["kind"] != "data_quality"]


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


def test_adwin_on_its_compiled_window_detects_what_rivers_api_does(monkeypatch):
    """The concept-drift detector calls River's compiled ADWIN window directly; it must
    give the detections, positions and means of River's own ADWIN.update, however the
    stream is batched (shifts up and down, a detection at a batch's last value)."""
    from driftline.agents.monitor import drift
    from driftline.agents.monitor.config import ConceptDriftConfig

    assert drift._COMPILED_ADWIN, "this River has no compiled ADWIN window: the test means nothing"
    rng = np.random.default_rng(5)
    levels = np.repeat([1.0, 4.0, 1.0, 9.0, 2.0, 12.0], 3_000)
    errors = rng.exponential(levels)
    config = ConceptDriftConfig(detector="adwin")

    def run(fast: bool, sizes) -> tuple[list, int]:
        monkeypatch.setattr(drift, "_COMPILED_ADWIN", fast)
        detector, found, start = drift.ErrorDrift(config, rate=1e-6), [], 0
        for size in sizes:
            part = errors[start:start + size]
            found += [(start + i, b, a) for i, b, a in detector.update_many(part)]
            start += size
        return found, detector.detections

    def same(got, want) -> bool:  # the mean before a cut is summed per batch: to 1e-12
        return got[1] == want[1] and [i for i, _, _ in got[0]] == [i for i, _, _ in want[0]] \
            and np.allclose([m for _, *ms in got[0] for m in ms],
                            [m for _, *ms in want[0] for m in ms], rtol=1e-12)

    sizes = rng.integers(1, 700, 200).tolist()
    want = run(False, [len(errors)])
    assert len(want[0]) >= 3  # the rises are found, so the comparison says something
    assert run(True, [len(errors)]) == want
    assert same(run(True, sizes), want)
    assert same(run(False, sizes), want)
    assert run(True, sizes) == run(False, sizes)


def backlog(seed: int, parts: int = 8) -> np.ndarray:
    """Squared errors as the monitor gets them after a backlog of labels: 5,000 pairs in
    order, then 5,000 a join partition at a time (each partition's share in event order,
    its second half after the model went wrong: error x3), then 5,000 more, all wrong."""
    rng = np.random.default_rng(seed)
    chunks = [rng.chisquare(1, 5_000)]
    for share in np.array_split(np.arange(5_000), parts):
        half = len(share) // 2
        chunks += [rng.chisquare(1, half), 3 * rng.chisquare(1, len(share) - half)]
    return np.concatenate(chunks + [3 * rng.chisquare(1, 5_000)])


@pytest.mark.parametrize("detector", ["glr", "adwin"])
def test_the_error_detector_finds_a_rise_that_reaches_it_as_a_sawtooth(detector):
    """After a backlog the error rises and falls once per join partition before it stays
    up. Starting afresh after every cut (River's way) lost the rise where each cut landed
    on a fall: in 2 of 1,000 such streams (seeds 6 and 308) and in 2 of 10 runs of the Kafka
    rebalance test. A fall keeps ADWIN's window (the change-point test's, its recent
    part), and the rise is found in all of them."""
    from driftline.agents.monitor import calibration
    from driftline.agents.monitor.config import ConceptDriftConfig
    from driftline.agents.monitor.drift import ErrorDrift

    rate = calibration.per_test_rate(1.0, calibration.count_tests(features=10))
    for seed in [*range(40), 308]:
        detector = ErrorDrift(ConceptDriftConfig(detector=detector), rate=rate)
        errors = backlog(seed)
        rises = [i for start in range(0, len(errors), 500)
                 for i, _, _ in detector.update_many(errors[start:start + 500])]
        assert rises, f"seed {seed}: no rise found"


@pytest.mark.parametrize("marks", [True, False])
def test_psi_binning_in_one_comparison_equals_a_searchsorted_per_column(marks):
    """PSIDrift bins a batch with one comparison against every column's edges (padded with
    +inf); it must give searchsorted's bin per column: values on an edge, +-inf, NaN
    (missing), a constant column (one edge) and an all-missing one (none). With ``marks``
    (data quality reads them) values out of the reference's range get marks of their own."""
    from driftline.agents.monitor.config import DataDriftConfig
    from driftline.agents.monitor.drift import PSIDrift

    rng = np.random.default_rng(3)
    cfg = DataDriftConfig(reference_size=500, window=100, check_every=50)
    reference = np.column_stack((rng.normal(size=500), rng.poisson(2.0, 500).astype(float),
                                 np.full(500, 7.0), np.full(500, np.nan)))
    psi = PSIDrift(["a", "b", "c", "d"], cfg, marks=marks)
    psi.extend(reference)
    assert psi.edges is not None and [len(e) for e in psi.edges][2:] == [1, 0]
    rows = np.column_stack((rng.normal(size=300), rng.poisson(2.0, 300).astype(float),
                            rng.choice([6.0, 7.0, 8.0], 300), rng.normal(size=300)))
    rows[:len(psi.edges[0]), 0] = psi.edges[0]              # exactly on an edge
    rows[10:13, :2] = [[np.inf, -np.inf]] * 3
    rows[rng.random(rows.shape) < 0.05] = np.nan
    want = np.column_stack([np.searchsorted(e, rows[:, j], side="right")
                            for j, e in enumerate(psi.edges)])
    # out of the reference's range: marks past the bins (PSI counts them in the end bins)
    low, high = psi._low, psi._high  # the reference's range (NaN: an all-missing column)
    assert low[:3].tolist() == np.nanmin(reference[:, :3], axis=0).tolist()
    assert high[:3].tolist() == np.nanmax(reference[:, :3], axis=0).tolist()
    if marks:
        with np.errstate(invalid="ignore"):
            want[rows < low] = psi.below
            want[rows > high] = psi.above
    assert (want >= psi.below).any() == marks
    want[np.isnan(rows)] = cfg.bins
    assert psi._bin(rows).tolist() == want.tolist()


def test_psi_is_the_same_whether_out_of_range_values_are_marked_or_not():
    """Marked values out of the reference's range count in its end bins for the PSI: the
    rule that reads the marks (data quality) and those that do not see one PSI."""
    from driftline.agents.monitor.config import DataDriftConfig
    from driftline.agents.monitor.drift import PSIDrift

    rng = np.random.default_rng(4)
    cfg = DataDriftConfig(reference_size=300, window=200, check_every=50, bins=5)
    marked, plain = PSIDrift(["a", "b"], cfg, marks=True), PSIDrift(["a", "b"], cfg,
                                                                     marks=False)
    found = outside = 0
    for k, size in enumerate(rng.integers(1, 200, 30).tolist()):
        rows = rng.normal(size=(size, 2)) * np.array([1.0, 3.0 if k > 3 else 1.0])
        rows[rng.random(rows.shape) < 0.05] = np.nan
        a, b = marked.extend(rows), plain.extend(rows)
        assert [c.psi.tolist() for c in a] == [c.psi.tolist() for c in b]
        found += len(a)
        outside = max(outside, int(marked.window.counts[:, [marked.below, marked.above]].sum()))
    assert found > 10 and outside > 0  # b's values went out of range, and were marked


@pytest.mark.parametrize("window,every", [(100, 30), (100, 100), (50, 120)])
def test_psi_window_counts_kept_as_rows_enter_and_leave_equal_a_recount(window, every):
    """PSIDrift keeps its window's counts per column and bin as rows enter and leave
    (a check is then arithmetic on them); after any batching they must equal a count of
    the window's rows, and each check's PSI the PSI of those counts."""
    from driftline.agents.monitor.config import DataDriftConfig
    from driftline.agents.monitor.drift import PSIDrift
    from driftline.agents.monitor.psi import psi_of_shares, shares

    rng = np.random.default_rng(window + every)
    cfg = DataDriftConfig(reference_size=200, window=window, check_every=every, bins=5)
    psi = PSIDrift(["a", "b"], cfg)
    checks, fed, after = 0, 0, []  # rows fed so far; every row after the reference
    for size in rng.integers(1, 300, 60).tolist():
        rows = rng.normal(size=(size, 2)) + rng.normal()
        rows[rng.random(rows.shape) < 0.1] = np.nan
        found = psi.extend(rows)
        if psi.ready:
            skip = max(0, cfg.reference_size - fed)
            after.extend(psi._bin(rows[skip:]).tolist())
        for check in found:
            checks += 1
            end = fed + check.position + 1 - cfg.reference_size  # rows after the reference
            recount = psi.window.count(np.array(after[end - window:end]))
            want = psi_of_shares(shares(psi._folded(recount), cfg.bins), psi.expected)
            assert np.allclose(check.psi, want, rtol=0, atol=1e-15)
        fed += size
        if psi.ready:
            assert psi.window.counts.tolist() == \
                psi.window.count(psi.window._codes.ordered()).tolist()
    assert checks > 10


@pytest.mark.parametrize("size", [1, 7, 100])
def test_ring_holds_the_last_rows_and_returns_those_that_leave(size):
    """The ring buffer the PSI window and the attribution tail keep: after any pushes
    (smaller, equal to and larger than the window) it holds the last ``size`` rows in
    order, and each push returns exactly the rows that left, oldest first (a write,
    nothing)."""
    from driftline.agents.monitor.columns import Ring

    rng = np.random.default_rng(size)
    ring, held, seen = Ring(size, (2,), np.int64), [], 0
    for n in rng.integers(0, 3 * size + 2, 200).tolist():
        rows = np.arange(seen, seen + n).repeat(2).reshape(n, 2)
        seen += n
        wrote = n < size and rng.random() < 0.5  # write: the same without what left
        left = None if wrote else ring.push(rows).tolist()
        if wrote:
            ring.write(rows)
        held += rows.tolist()
        want_left, held = held[:max(0, len(held) - size)], held[-size:]
        assert left in (None, want_left)
        assert ring.ordered().tolist() == held and len(ring) == len(held)
        assert sorted(ring.values().tolist()) == sorted(held)
        assert ring.sum() == sum(v for row in held for v in row)
