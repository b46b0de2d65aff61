"""Categorical drift: which test, at what limit, and how soon it sees a change, in one run.

    .venv/bin/python bench/categorical_drift.py [--parts null,cells,sizes,power,rules,idlike]
        [--cardinalities 2,5,20,50,200] [--power-cardinalities 2,5,20,50,200,30u]
        [--draws 1000000] [--refs 2000] [--seeds 200] [--budget 1] [--features 10]
        [--min-count 10] [--max-cells 100] [--choices 1:none,5:none,10:100,20:100,10:20]
        [--sizes 500:500,...] [--seed 0]

Numpy only, no services: streams are drawn as category counts with the sizes and cadence of
today's data-drift rule (``DataDriftConfig``: the version's first 1,000 predictions are the
reference, the latest 1,000 the window, a check every 250, two breaches in a row fire) and
the per-check false-alarm probability the budget leaves one test (``calibration``: 1 per
1M predictions over the 14 tests of a 10-feature version, alpha = 1.8e-5 a check). A
cardinality k is a Zipf column (shares ~ 1/rank); ``30u``: 30 equal shares.

Missing values stay out of the drift tests (as PSI leaves them out of numeric columns;
``chi2+m/p`` is the alternative, missing as one more cell). The tests compare cells:

* reference cells: the categories the reference saw at least ``--min-count`` times (at most
  ``--max-cells``) plus ``_other``, which also takes every category it never saw;
* pooled cells (``/p``): chosen at each check, the categories whose reference + window
  count reaches ``min-count`` expected in the smaller of the two (20 at 1,000:1,000), the
  rest, unseen ones too, in ``_other``. Under no change the pooled counts say nothing of
  the split, so the choice leaves the test's null distribution alone; reference cells are
  chosen because the reference saw them often, and then show too few in the window.

  chi2      Pearson's two-sample (homogeneity) chi-square; limit chi2.isf(alpha, cells - 1)
  G         the likelihood-ratio G-test; the same limit
  JS        Jensen-Shannon distance (base 2); limit bootstrapped from the reference's cell
            shares like PSI's (the divergence's tail fitted, then its square root)
  PSI       PSI over the cells, shares floored at ``psi.EPS``; limit from
            ``psi_null``'s draws + ``upper_quantile``, floored at ``MIN_LIMIT`` (PSIRule's)
  maxcell   the largest one-cell 2x2 chi-square (a cell against the rest); limit
            chi2.isf(alpha / cells, 1)
  chi2|max  chi2 at alpha / 2 or maxcell at alpha / 2 (one test, alpha in all)

Parts (``--parts``), each a table:

  null    stationary streams with 2% missing, ``--refs`` references each followed by
          windows: the checks that breached each test's limit against what alpha allows
          (``obs/exp ratio``, at alpha and at 1e-3), the limits (median [range]) and, for
          chi2, G, JS and PSI, the limit the pooled draws say alpha needs; then
          unseen_category and missing_share on the same windows
  cells   the same for other ``min-count:max-cells`` choices (``--choices``)
  sizes   the limit ``--size-alpha`` needs against ``reference:window`` sizes
  power   delay (predictions after the change until a fire: median/90th percentile, share
          of streams that fired within 5,000) for one category 10% -> 2%, a 3.2% category
          moving into another, a new category at 5%, missing 2% -> 20%
  rules   unseen_category: an unseen category reaching c in the window, c from a bound
          that holds for any distribution, checked at its worst case; missing_share: the
          one-sided Fisher test (exact) beside the z-test, on fresh pairs
  idlike  what a reference says of high-cardinality and id-like columns

Each part keeps one core busy for about a minute at its defaults (``cells`` and ``null``
per cardinality: run them one cardinality at a time, ``--cardinalities 200``).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import time
from collections.abc import Callable

import numpy as np

from driftline.agents.monitor import calibration
from driftline.agents.monitor.config import DataDriftConfig
from driftline.agents.monitor.psi import EPS as _PSI_EPS
from driftline.agents.monitor.psi import psi_of_shares

LN2 = math.log(2.0)
TESTS = ("chi2", "G", "JS", "PSI", "maxcell")            # on the reference's top cells
POOLED = ("chi2/p", "G/p", "maxcell/p", "chi2|max/p", "chi2+m/p")  # cells chosen from a + b


# --- chi-square tail, numpy/math only (what a calibration without scipy would use) -------

def chi2_sf(x: float, dof: float) -> float:
    """P(chi2(dof) > x): the regularized upper incomplete gamma Q(dof/2, x/2), by its
    series below a + 1 and Lentz's continued fraction above (Numerical Recipes 6.2)."""
    a, x = dof / 2.0, x / 2.0
    if x <= 0:
        return 1.0
    log_front = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1:
        term = total = 1.0 / a
        n = a
        while abs(term) > abs(total) * 1e-16:
            n += 1
            term *= x / n
            total += term
        return max(0.0, 1.0 - total * math.exp(log_front))
    tiny = 1e-300
    b, c = x + 1 - a, 1 / tiny
    d = 1 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = 1 / (d if abs(d) > tiny else tiny)
        c = b + an / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        if abs(d * c - 1) < 1e-16:
            break
    return math.exp(log_front) * h


@functools.lru_cache(maxsize=4096)
def chi2_isf(alpha: float, dof: int) -> float:
    """The x that chi2(dof) exceeds with probability ``alpha`` (bisection on chi2_sf)."""
    if dof < 1:
        return math.inf
    lo, hi = 0.0, float(max(dof, 1))
    while chi2_sf(hi, dof) > alpha:
        lo, hi = hi, hi * 2
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if chi2_sf(mid, dof) > alpha else (lo, mid)
    return hi


# --- the statistics, over the last axis of reference counts a and window counts b --------

def _xlogx(x: np.ndarray, e: np.ndarray) -> np.ndarray:
    """x * log(x / e), 0 where x is 0."""
    ok = x > 0
    return np.where(ok, x * np.log(np.where(ok, x, 1.0) / np.where(ok, e, 1.0)), 0.0)


def pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    na, nb = a.sum(-1, keepdims=True), b.sum(-1, keepdims=True)
    num, den = (a * nb - b * na) ** 2, na * nb * (a + b)
    return np.sum(np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape),
                            where=den > 0), axis=-1)


def g_test(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    na, nb = a.sum(-1, keepdims=True), b.sum(-1, keepdims=True)
    t, n = a + b, na + nb
    return 2 * np.sum(_xlogx(a, t * na / n) + _xlogx(b, t * nb / n), axis=-1)


def js_divergence(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Jensen-Shannon divergence in bits (its square root is the JS distance)."""
    p = a / np.maximum(a.sum(-1, keepdims=True), 1)
    q = b / np.maximum(b.sum(-1, keepdims=True), 1)
    m = (p + q) / 2
    return np.maximum(np.sum(_xlogx(p, m) + _xlogx(q, m), axis=-1) / (2 * LN2), 0.0)


def psi(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    p = a / np.maximum(a.sum(-1, keepdims=True), 1)
    q = b / np.maximum(b.sum(-1, keepdims=True), 1)
    return psi_of_shares(q, np.broadcast_to(p, q.shape))


def maxcell(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The largest 2x2 chi-square of one cell against all the others."""
    na, nb = a.sum(-1, keepdims=True), b.sum(-1, keepdims=True)
    n, t = na + nb, a + b
    num, den = n * (a * nb - b * na) ** 2, na * nb * t * (n - t)
    return np.max(np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape),
                            where=den > 0), axis=-1)


STATS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "chi2": pearson, "G": g_test, "JS": js_divergence, "PSI": psi, "maxcell": maxcell}


# --- limits -----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Setup:
    n_ref: int = 1000
    window: int = 1000
    every: int = 250
    consecutive: int = 2
    min_count: int = 10
    max_cells: int = 100
    pooled_min: int | None = None  # None: from min_count, see pooled_count

    @property
    def pooled_count(self) -> int:
        """The least reference + window count of a pooled cell: by default, the count at
        which the cell expects ``min_count`` in the smaller of reference and window (20 for
        1,000 and 1,000)."""
        if self.pooled_min is not None:
            return self.pooled_min
        return math.ceil(self.min_count * (self.n_ref + self.window)
                         / min(self.n_ref, self.window))


def top_cells(counts: np.ndarray, setup: Setup) -> np.ndarray:
    """The reference's most frequent categories, at least ``min_count`` each, at most
    ``max_cells`` (ties: the lower index)."""
    order = np.lexsort((np.arange(len(counts)), -counts))[:setup.max_cells]
    return order[counts[order] >= setup.min_count]


def ref_cells(counts: np.ndarray, setup: Setup) -> np.ndarray:
    """Categories x cells, one-hot: the reference's top cells, then ``_other``."""
    top = top_cells(counts, setup)
    out = np.zeros((len(counts), len(top) + 1))
    out[:, -1] = 1.0
    out[top, -1] = 0.0
    out[top, np.arange(len(top))] = 1.0
    return out


def pooled_cells(a: np.ndarray, b: np.ndarray, setup: Setup) -> tuple[np.ndarray, np.ndarray]:
    """Per check, the categories whose reference + window count is at least ``pooled_count``
    (the ``max_cells`` largest), the rest summed in ``_other`` (the last cell); the others
    are zero in both. Chosen from a + b, which under no change says nothing of how each
    category splits between reference and window, so the choice leaves the test's null
    distribution alone (the reference's top cells do not: chosen because the reference
    saw them often, they show too few in the window)."""
    a, b = np.broadcast_arrays(a, b)
    t = a + b
    keep = t >= setup.pooled_count
    if t.shape[-1] > setup.max_cells:
        cap = setup.max_cells
        keep &= t >= -np.partition(-t, cap - 1, axis=-1)[..., cap - 1:cap]

    def collapse(x: np.ndarray) -> np.ndarray:
        return np.concatenate((np.where(keep, x, 0.0),
                               np.where(keep, 0.0, x).sum(axis=-1, keepdims=True)), axis=-1)
    return collapse(a), collapse(b)


def dof_of(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a + b > 0).sum(axis=-1) - 1


def pooled_values(a: np.ndarray, b: np.ndarray, a_m: np.ndarray | float,
                  b_m: np.ndarray) -> dict[str, np.ndarray]:
    a_m = np.broadcast_to(a_m, b_m.shape)
    return {"chi2/p": pearson(a, b), "G/p": g_test(a, b), "maxcell/p": maxcell(a, b),
            "chi2+m/p": pearson(np.concatenate((np.broadcast_to(a, b.shape), a_m[..., None]),
                                               axis=-1),
                                np.concatenate((b, b_m[..., None]), axis=-1))}


def pooled_breaches(values: dict[str, np.ndarray], alpha: float, dof: np.ndarray,
                    any_missing: np.ndarray | bool) -> dict[str, np.ndarray]:
    """The pooled-cell tests' breaches, each against its analytic limit for the check's own
    cells; ``chi2|max/p``: chi2/p or maxcell/p, each at alpha / 2."""
    top = int(dof.max()) + 2

    def chi2(al: float) -> np.ndarray:
        return np.array([chi2_isf(al, d) for d in range(top + 1)])

    def one(al: float) -> np.ndarray:
        return np.array([chi2_isf(al / max(c, 1), 1) for c in range(top + 1)])

    return {"chi2/p": values["chi2/p"] > chi2(alpha)[dof],
            "G/p": values["G/p"] > chi2(alpha)[dof],
            "maxcell/p": values["maxcell/p"] > one(alpha)[dof + 1],
            "chi2|max/p": ((values["chi2/p"] > chi2(alpha / 2)[dof])
                           | (values["maxcell/p"] > one(alpha / 2)[dof + 1])),
            "chi2+m/p": values["chi2+m/p"] > chi2(alpha)[dof + np.asarray(any_missing, int)]}


def bootstrap_limits(a: np.ndarray, setup: Setup, alphas: tuple[float, ...],
                     seed: int) -> dict[str, list[float]]:
    """PSI's limits as PSIRule sets them (the draws of ``calibration.psi_null``, then
    ``upper_quantile`` floored at ``MIN_LIMIT``) and JS's the same way on the divergence
    (its square root then), from one set of bootstrap draws of the reference's cell shares."""
    p = np.maximum(a / max(a.sum(), 1), _PSI_EPS)[None, :]
    rng = np.random.default_rng(seed)  # psi_null's draws, step by step
    q = np.where(p > _PSI_EPS, p, 0.0)
    q = q / q.sum(axis=1, keepdims=True)
    samples = calibration.BOOTSTRAP_SAMPLES
    ref = rng.multinomial(setup.n_ref, q, size=(samples, 1))[:, 0].astype(float)
    cur = rng.multinomial(setup.window, q, size=(samples, 1))[:, 0].astype(float)
    psi_null = psi_of_shares(cur / setup.window, ref / setup.n_ref)[:, None]
    js_null = js_divergence(ref, cur)[:, None]
    return {"PSI": [max(float(calibration.upper_quantile(psi_null, al)[0]),
                        calibration.MIN_LIMIT) for al in alphas],
            "JS": [float(calibration.upper_quantile(js_null, al)[0]) for al in alphas]}


def unseen_limit(n_ref: int, window: int, alpha: float) -> tuple[int, float, float]:
    """The least count c such that, whatever the distribution, a window has a category the
    reference never saw c or more times with probability at most ``alpha``; that bound, and
    the share p where it is reached (the worst case: 1/p categories of share p).

    A category of share p is unseen in the reference with probability (1-p)^n_ref, and then
    reaches c in the window with P(Bin(window, p) >= c); the categories' shares sum to 1, so
    the sum over them is at most sup_p (1-p)^n_ref P(Bin(window, p) >= c) / p.
    """
    p = np.geomspace(1e-7, 0.5, 3000)[:, None]
    j = np.arange(window + 1)[None, :]
    lf = np.concatenate(([0.0], np.cumsum(np.log(np.arange(1, window + 1)))))
    logpmf = lf[window] - lf[j] - lf[window - j] + j * np.log(p) + (window - j) * np.log1p(-p)
    tail = np.cumsum(np.exp(logpmf)[:, ::-1], axis=1)[:, ::-1]   # P(Bin >= j)
    each = np.exp(n_ref * np.log1p(-p)) * tail / p
    bound = each.max(axis=0)
    c = int(np.argmax(bound <= alpha))
    return c, float(bound[c]), float(p[np.argmax(each[:, c]), 0])


def fisher_limits(n_ref: int, window: int, alpha: float) -> np.ndarray:
    """limits[m]: the least count x of the m missing values (reference and window together)
    falling in the window with P(X >= x) <= alpha under no change (X hypergeometric: the
    one-sided Fisher test, exact at any count); window + 1 where none is."""
    n = n_ref + window
    lf = np.concatenate(([0.0], np.cumsum(np.log(np.arange(1, n + 1)))))
    m = np.arange(n + 1)[:, None]
    x = np.arange(window + 1)[None, :]
    ok = (x <= m) & (window - x <= n - m)

    def lchoose(top: np.ndarray, k: np.ndarray) -> np.ndarray:
        top, k = np.broadcast_arrays(top, k)
        k = np.where(ok, k, 0)
        top = np.where(ok, top, k)
        return lf[top] - lf[k] - lf[top - k]

    logp = lchoose(m, x) + lchoose(n - m, window - x) - (lf[n] - lf[window] - lf[n_ref])
    tail = np.cumsum(np.where(ok, np.exp(logp), 0.0)[:, ::-1], axis=1)[:, ::-1]
    below = tail <= alpha
    return np.where(below.any(axis=1), np.argmax(below, axis=1), window + 1)


def z_limit(alpha: float) -> float:
    """The one-sided normal quantile, from chi2(1): z^2 ~ chi2(1)."""
    return math.sqrt(chi2_isf(2 * alpha, 1))


def missing_z(a_m: np.ndarray, b_m: np.ndarray, setup: Setup) -> np.ndarray:
    """The two-proportion z of a rise of the missing share (pooled variance)."""
    n_a, n_b = setup.n_ref, setup.window
    pooled = (a_m + b_m) / (n_a + n_b)
    se = np.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    diff = b_m / n_b - a_m / n_a
    return np.divide(diff, se, out=np.zeros_like(diff, dtype=float), where=se > 0)


def zipf(k: int, uniform: bool = False) -> np.ndarray:
    p = np.ones(k) if uniform else 1.0 / np.arange(1, k + 1)
    return p / p.sum()


def with_missing(p: np.ndarray, missing: float, new: float = 0.0) -> np.ndarray:
    """Shares of (the categories..., a new category, missing)."""
    return np.concatenate(((1 - missing) * (1 - new) * p, [(1 - missing) * new, missing]))


# --- part 1-3: stationary streams ---------------------------------------------------------

def null_run(rng: np.random.Generator, k: int, setup: Setup, alphas: tuple[float, ...],
             draws: int, refs: int, missing: float = 0.02, uniform: bool = False) -> dict:
    """Reference counts drawn ``refs`` times, each followed by ``draws // refs`` windows;
    every test's breaches at each alpha, with its limit from that reference."""
    full = np.append((1 - missing) * zipf(k, uniform), missing)
    references = rng.multinomial(setup.n_ref, full, size=refs).astype(float)
    per = max(1, draws // refs)
    hits = {name: np.zeros(len(alphas)) for name in (*TESTS, *POOLED, "unseen", "fisher",
                                                     "z")}
    pooled: dict[str, list[np.ndarray]] = {name: [] for name in ("JS", "PSI", "chi2", "G")}
    limits: dict[str, list[float]] = {"chi2": [], "JS": [], "PSI": [], "cells": [],
                                      "cells/p": []}
    c_unseen = [unseen_limit(setup.n_ref, setup.window, al)[0] for al in alphas]
    fisher = [fisher_limits(setup.n_ref, setup.window, al) for al in alphas]
    unseen_total = []
    for r in range(refs):
        counts, a_m = references[r, :k], references[r, k]
        w = rng.multinomial(setup.window, full, size=per).astype(float)
        b_cat, b_m = w[:, :k], w[:, k]
        cells = ref_cells(counts, setup)
        # einsum, not @: a matrix product would run on every core BLAS has
        a, b = counts @ cells, np.einsum("wk,kc->wc", b_cat, cells)
        dof = int((a > 0).sum()) - 1
        values = {name: fn(a, b) for name, fn in STATS.items()}
        ap, bp = pooled_cells(counts, b_cat, setup)
        values.update(pooled_values(ap, bp, a_m, b_m))
        dof_p = dof_of(ap, bp)
        boot = bootstrap_limits(a, setup, alphas, seed=r)
        seen = counts > 0
        for i, al in enumerate(alphas):
            lim = {"chi2": chi2_isf(al, dof), "G": chi2_isf(al, dof), "JS": boot["JS"][i],
                   "PSI": boot["PSI"][i], "maxcell": chi2_isf(al / cells.shape[1], 1)}
            for name, limit in lim.items():
                hits[name][i] += int((values[name] > limit).sum())
            for name, br in pooled_breaches(values, al, dof_p, a_m + b_m > 0).items():
                hits[name][i] += int(br.sum())
            if not seen.all():
                hits["unseen"][i] += int((b_cat[:, ~seen].max(axis=1) >= c_unseen[i]).sum())
            hits["fisher"][i] += int((b_m >= fisher[i][(a_m + b_m).astype(int)]).sum())
            hits["z"][i] += int((missing_z(np.full_like(b_m, a_m), b_m, setup)
                                 > z_limit(al)).sum())
        for name in pooled:
            pooled[name].append(values[name])
        limits["chi2"].append(chi2_isf(alphas[0], dof))
        limits["JS"].append(math.sqrt(boot["JS"][0]))
        limits["PSI"].append(boot["PSI"][0])
        limits["cells"].append(cells.shape[1])
        limits["cells/p"].append(float(np.median(dof_p + 1)))
        unseen_total.append(b_cat[:, ~seen].sum(axis=1))
    n = per * refs
    needed = {name: [float(np.quantile(np.concatenate(v), 1 - al)) for al in alphas]
              for name, v in pooled.items()}
    needed["JS"] = [math.sqrt(x) for x in needed["JS"]]
    return {"n": n, "hits": hits, "needed": needed, "c_unseen": c_unseen,
            "limit": {k_: float(np.median(v)) for k_, v in limits.items()},
            "limit_lo": {k_: float(np.min(v)) for k_, v in limits.items()},
            "limit_hi": {k_: float(np.max(v)) for k_, v in limits.items()},
            "unseen_q": float(np.quantile(np.concatenate(unseen_total), 0.999))}


def ratio(hits: float, n: int, alpha: float) -> str:
    """Observed breaches / expected, and their ratio."""
    exp = alpha * n
    return f"{hits:>5.0f}/{exp:<6.1f}{hits / exp:>5.2f}"


def part_null(args, setup: Setup, alpha: float) -> None:
    alphas = (alpha, 1e-3)
    print(f"1. stationary streams (Zipf shares; 'u': equal shares), 2% missing: reference "
          f"{setup.n_ref}, window {setup.window}, min-count {setup.min_count}, max-cells "
          f"{setup.max_cells}; {args.draws:,} checks per row ({args.refs} references)")
    print(f"   breaches observed/expected and ratio at alpha = {alpha:.3g} (the budget's) "
          f"and at 1e-3; limits at alpha: median over references [min-max]")
    head = " ".join(f"{t:>18}" for t in (*TESTS, *POOLED))
    print(f"{'k':>4} {'alpha':>7} {head}")
    results = {}
    for k, uniform in args.cards:
        started = time.perf_counter()
        r = null_run(np.random.default_rng([args.seed, k]), k, setup, alphas, args.draws,
                     args.refs, uniform=uniform)
        results[k] = r
        for i, al in enumerate(alphas):
            cells = " ".join(f"{ratio(r['hits'][t][i], r['n'], al):>18}"
                             for t in (*TESTS, *POOLED))
            print(f"{label(k, uniform):>4} {al:>7.2g} {cells}"
                  + (f"  ({time.perf_counter() - started:.0f} s)" if i else ""), flush=True)
    print(f"\n{'k':>4} {'cells':>7} {'cells/p':>7} {'chi2 limit':>16} {'JS limit (boot)':>22} "
          f"{'JS needed':>10} {'PSI limit (boot)':>22} {'PSI needed':>11} "
          f"{'chi2 needed':>12} {'G needed':>9}")
    for k, uniform in args.cards:
        r = results[k]
        lo, hi, med = r["limit_lo"], r["limit_hi"], r["limit"]
        print(f"{label(k, uniform):>4} {med['cells']:>3.0f}"
              f" [{lo['cells']:.0f}-{hi['cells']:.0f}]".ljust(8) + f" {med['cells/p']:>7.0f}"
              + f" {med['chi2']:>6.1f} [{lo['chi2']:.0f}-{hi['chi2']:.0f}]".rjust(17)
              + f" {med['JS']:.4f} [{lo['JS']:.3f}-{hi['JS']:.3f}]".rjust(23)
              + f" {r['needed']['JS'][0]:>10.4f}"
              + f" {med['PSI']:.4f} [{lo['PSI']:.3f}-{hi['PSI']:.3f}]".rjust(23)
              + f" {r['needed']['PSI'][0]:>11.4f} {r['needed']['chi2'][0]:>12.1f}"
              f" {r['needed']['G'][0]:>9.1f}")
    print(f"\n{'k':>4} {'unseen c':>9} {'unseen breaches':>18} {'unseen total q99.9':>19} "
          f"{'fisher (missing)':>18} {'z (missing)':>18}   at alpha = {alpha:.3g}")
    for k, uniform in args.cards:
        r = results[k]
        print(f"{label(k, uniform):>4} {r['c_unseen'][0]:>9} "
              f"{ratio(r['hits']['unseen'][0], r['n'], alpha):>18} {r['unseen_q']:>19.0f} "
              f"{ratio(r['hits']['fisher'][0], r['n'], alpha):>18} "
              f"{ratio(r['hits']['z'][0], r['n'], alpha):>18}")


def label(k: int, uniform: bool) -> str:
    return f"{k}{'u' if uniform else ''}"


CELL_TESTS = ("chi2", "G", "PSI", "chi2/p", "G/p", "maxcell/p", "chi2|max/p")


def part_cells(args, setup: Setup, alpha: float) -> None:
    alphas = (alpha, 1e-3)
    choices = [(int(m), int(cap) if cap != "none" else 100_000)
               for m, cap in (c.split(":") for c in args.choices.split(","))]
    print(f"2. sparse cells: min-count / max-cells, {args.draws:,} checks per row; "
          f"breaches obs/exp ratio at alpha = {alpha:.3g} | at 1e-3")
    print(f"{'k':>4} {'min':>4} {'max':>6} {'cells':>6} {'/p':>4} " + " ".join(
        f"{t:>21}" for t in CELL_TESTS))
    for k, uniform in args.cards:
        for m, cap in choices:
            s = dataclasses.replace(setup, min_count=m, max_cells=cap)
            r = null_run(np.random.default_rng([args.seed, k, m, cap]), k, s, alphas,
                         args.draws, args.refs, uniform=uniform)
            cells = " ".join(
                f"{r['hits'][t][0] / (alpha * r['n']):>5.2f} ({r['hits'][t][0]:>3.0f})"
                f" | {r['hits'][t][1] / (1e-3 * r['n']):>4.2f}".rjust(21) for t in CELL_TESTS)
            print(f"{label(k, uniform):>4} {m:>4} {cap if cap < 100_000 else 'none':>6} "
                  f"{r['limit']['cells']:>6.0f} {r['limit']['cells/p']:>4.0f} {cells}",
                  flush=True)


def part_sizes(args, setup: Setup, alpha: float) -> None:
    sizes = [tuple(int(x) for x in s.split(":")) for s in args.sizes.split(",")]
    print(f"3. the limit alpha = {args.size_alpha:g} needs against reference:window sizes "
          f"({args.draws:,} checks per row); chi2 analytic = chi2.isf(alpha, median dof); "
          f"ratio: breaches / expected at the analytic (chi2) or bootstrapped (PSI) limit")
    print(f"{'k':>4} {'ref:window':>12} {'cells':>6} {'chi2 analytic':>14} {'chi2 needed':>12} "
          f"{'G needed':>9} {'JS needed':>10} {'JS boot':>8} {'PSI needed':>11} "
          f"{'PSI boot':>9} {'chi2 ratio':>11} {'chi2/p ratio':>13} {'PSI ratio':>10}")
    for k, uniform in args.cards:
        for n_ref, window in sizes:
            s = dataclasses.replace(setup, n_ref=n_ref, window=window)
            r = null_run(np.random.default_rng([args.seed, k, n_ref, window]), k, s,
                         (args.size_alpha,), args.draws, args.refs,
                         uniform=uniform)
            n = r["n"]
            print(f"{label(k, uniform):>4} {f'{n_ref}:{window}':>12} "
                  f"{r['limit']['cells']:>6.0f} {r['limit']['chi2']:>14.1f} "
                  f"{r['needed']['chi2'][0]:>12.1f} {r['needed']['G'][0]:>9.1f} "
                  f"{r['needed']['JS'][0]:>10.4f} {r['limit']['JS']:>8.4f} "
                  f"{r['needed']['PSI'][0]:>11.4f} {r['limit']['PSI']:>9.4f} "
                  f"{r['hits']['chi2'][0] / (args.size_alpha * n):>11.2f} "
                  f"{r['hits']['chi2/p'][0] / (args.size_alpha * n):>13.2f} "
                  f"{r['hits']['PSI'][0] / (args.size_alpha * n):>10.2f}", flush=True)


# --- part 4-5: changes --------------------------------------------------------------------

def scenarios(k: int, uniform: bool) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Base and changed shares of (categories..., new category, missing)."""
    p = zipf(k, uniform)

    def set_share(p: np.ndarray, j: int, share: float) -> np.ndarray:
        out = p * (1 - share) / (1 - p[j])
        out[j] = share
        return out

    j10 = int(np.argmin(np.abs(p - 0.10)))
    p10 = set_share(p, j10, 0.10)
    j3 = int(np.argmin(np.abs(p - 0.032)))
    p3 = set_share(p, j3, 0.032)
    into = j3 + 1 if j3 + 1 < k else j3 - 1
    moved = p3.copy()
    moved[into] += moved[j3]
    moved[j3] = 0.0
    return {"10%->2%": (with_missing(p10, 0.02), with_missing(set_share(p10, j10, 0.02), 0.02)),
            "3.2% moves": (with_missing(p3, 0.02), with_missing(moved, 0.02)),
            "new 5%": (with_missing(p, 0.02), with_missing(p, 0.02, new=0.05)),
            "missing 20%": (with_missing(p, 0.02), with_missing(p, 0.20))}


def first_fire(breach: np.ndarray, needed: int, start: int) -> tuple[np.ndarray, np.ndarray]:
    """Per stream (rows): the first check at or after ``start`` that ends a run of
    ``needed`` breaches (-1: none), and whether one ended before ``start``."""
    run = np.zeros(breach.shape, int)
    for t in range(breach.shape[1]):
        run[:, t] = np.where(breach[:, t], (run[:, t - 1] if t else 0) + 1, 0)
    fired = run >= needed
    early = fired[:, :start].any(axis=1)
    late = fired[:, start:]
    return np.where(late.any(axis=1), np.argmax(late, axis=1), -1), early


def power_run(rng: np.random.Generator, base: np.ndarray, changed: np.ndarray, setup: Setup,
              alpha: float, seeds: int, pre_checks: int = 5, post_checks: int = 20,
              cache: dict | None = None) -> dict[str, tuple[np.ndarray, int]]:
    """Streams: the reference, ``pre_checks`` checks' worth of the base shares, then the
    changed shares; per test, the delay (predictions after the change) of its first fire
    and the streams that fired before the change."""
    if setup.window % setup.every:
        raise ValueError("the window must be a whole number of checks")
    per, L = setup.window // setup.every, len(base)
    ref = rng.multinomial(setup.n_ref, base, size=seeds).astype(float)
    blocks = np.concatenate((
        rng.multinomial(setup.every, base, size=(seeds, per + pre_checks - 1)),
        rng.multinomial(setup.every, changed, size=(seeds, post_checks))), axis=1)
    sums = np.concatenate((np.zeros((seeds, 1, L)), np.cumsum(blocks, axis=1)), axis=1)
    win = (sums[:, per:] - sums[:, :-per]).astype(float)  # seeds x checks x L
    a_cat, b_cat = ref[:, None, :L - 1], win[:, :, :L - 1]   # the last: missing
    a_m, b_m = ref[:, None, L - 1], win[:, :, L - 1]
    assign = np.zeros((seeds, L - 1, setup.max_cells + 1))
    for s in range(seeds):
        cells = ref_cells(ref[s, :L - 1], setup)
        assign[s, :, :cells.shape[1] - 1] = cells[:, :-1]
        assign[s, :, -1] = cells[:, -1]
    a = np.einsum("sl,slc->sc", ref[:, :L - 1], assign)[:, None, :]
    b = np.einsum("stl,slc->stc", b_cat, assign)
    dof = (a[:, 0] > 0).sum(axis=1) - 1
    n_cells = (assign.sum(axis=1) > 0).sum(axis=1)
    limits: dict[str, np.ndarray] = {
        "chi2": np.array([chi2_isf(alpha, d) for d in dof])[:, None],
        "maxcell": np.array([chi2_isf(alpha / c, 1) for c in n_cells])[:, None]}
    limits["G"] = limits["chi2"]
    boot = []
    for s in range(seeds):
        key = a[s, 0].tobytes()
        if cache is None or key not in cache:
            found = bootstrap_limits(a[s, 0], setup, (alpha,), seed=s)
            if cache is None:
                boot.append(found)
                continue
            cache[key] = found
        boot.append(cache[key])
    limits["JS"] = np.array([x["JS"][0] for x in boot])[:, None]
    limits["PSI"] = np.array([x["PSI"][0] for x in boot])[:, None]
    values = {name: fn(a, b) for name, fn in STATS.items()}
    ap, bp = pooled_cells(a_cat, b_cat, setup)
    values.update(pooled_values(ap, bp, a_m, b_m))
    breach = {name: values[name] > limits[name] for name in TESTS}
    breach.update(pooled_breaches(values, alpha, dof_of(ap, bp), a_m + b_m > 0))
    c = unseen_limit(setup.n_ref, setup.window, alpha)[0]
    breach["unseen"] = (b_cat * (a_cat == 0)).max(axis=2) >= c
    fisher = fisher_limits(setup.n_ref, setup.window, alpha)
    breach["missing"] = b_m >= fisher[(a_m + b_m).astype(int)]
    out = {}
    for name, br in breach.items():
        at, early = first_fire(br, setup.consecutive, pre_checks)
        out[name] = (np.where(at >= 0, (at + 1) * setup.every, -1), int(early.sum()))
    return out


def delay_cell(delays: np.ndarray, early: int) -> str:
    """``p50/p90 share``: quantiles of the delay, a stream that never fired counted as
    never ('-'), and the share of streams that fired; ``!n``: n fired before the change."""
    never = np.where(delays >= 0, delays, np.inf)
    p50, p90 = (np.quantile(never, q, method="inverted_cdf") for q in (0.5, 0.9))
    text = "/".join("-" if math.isinf(x) else f"{x:.0f}" for x in (p50, p90))
    return f"{text} {100 * (delays >= 0).mean():.0f}%" + (f" !{early}" if early else "")


def part_power(args, setup: Setup, alpha: float) -> None:
    names = (*TESTS, *POOLED, "unseen", "missing")
    print(f"4. delay in predictions after the change until a fire ({setup.consecutive} "
          f"breaches in a row, a check every {setup.every}) over {args.seeds} streams: "
          f"median/90th percentile, and the share of streams that fired within "
          f"{20 * setup.every:,}; '!n': n streams fired in the {5 * setup.every:,} "
          f"predictions before the change; alpha = {alpha:.3g}")
    print(f"{'change':>11} {'k':>3} " + " ".join(f"{n:>13}" for n in names))
    cards = cardinalities(args.power_cardinalities)
    for number, change in enumerate(("10%->2%", "3.2% moves", "new 5%", "missing 20%")):
        cache: dict = {}
        for k, uniform in cards:
            if uniform and change != "3.2% moves":
                continue
            base, changed = scenarios(k, uniform)[change]
            r = power_run(np.random.default_rng([args.seed, k, number]), base,
                          changed, setup, alpha, args.seeds, cache=cache)
            print(f"{change:>11} {label(k, uniform):>3} "
                  + " ".join(f"{delay_cell(*r[n]):>13}" for n in names), flush=True)


def part_rules(args, setup: Setup, alpha: float) -> None:
    print(f"5. data-quality limits at alpha = {alpha:.3g} (reference {setup.n_ref}, window "
          f"{setup.window})")
    for al in (alpha, alpha / 3, 1e-3):
        c, bound, _ = unseen_limit(setup.n_ref, setup.window, al)
        print(f"   unseen_category: an unseen category {c}+ times in the window "
              f"(bound {bound:.2g} <= {al:.3g}); at 5% of traffic that takes "
              f"~{c / 0.05:,.0f} predictions")
    c, bound, worst = unseen_limit(setup.n_ref, setup.window, alpha)
    k = round(1 / worst)
    rng = np.random.default_rng([args.seed, 5])
    hits = 0
    for start in range(0, args.draws, 50_000):
        n = min(50_000, args.draws - start)
        ref = rng.multinomial(setup.n_ref, np.full(k, 1 / k), size=n)
        win = rng.multinomial(setup.window, np.full(k, 1 / k), size=n)
        hits += int(((win * (ref == 0)).max(axis=1) >= c).sum())
    print(f"   unseen_category, the bound's worst case ({k} categories of {1 / k:.2%}), "
          f"{args.draws:,} fresh reference+window pairs: {ratio(hits, args.draws, alpha)}")
    fisher = fisher_limits(setup.n_ref, setup.window, alpha)
    for ref_share in (0.0, 0.005, 0.02, 0.10):
        a_m = round(ref_share * setup.n_ref)
        x = next(x for x in range(setup.window + 2) if x > setup.window
                 or x >= fisher[a_m + x])
        print(f"   missing_share: reference {ref_share:.1%} missing ({a_m}): fires from "
              f"{x} missing in the window ({x / setup.window:.1%}); z-test "
              f"from {z_needed(a_m, setup, alpha)}")
    n = 10 * args.draws
    print(f"   missing_share, no change, {n:,} fresh reference+window pairs: breaches "
          f"obs/exp ratio of the one-sided Fisher test | of the z-test")
    for share in (0.001, 0.005, 0.02, 0.10, 0.30):
        a_m = rng.binomial(setup.n_ref, share, n).astype(float)
        b_m = rng.binomial(setup.window, share, n).astype(float)
        f_hits = int((b_m >= fisher[(a_m + b_m).astype(int)]).sum())
        z_hits = int((missing_z(a_m, b_m, setup) > z_limit(alpha)).sum())
        print(f"   {share:>6.1%} missing: {ratio(f_hits, n, alpha)} | "
              f"{ratio(z_hits, n, alpha)}")


def z_needed(a_m: int, setup: Setup, alpha: float) -> int:
    b = np.arange(setup.window + 1, dtype=float)
    z = missing_z(np.full_like(b, a_m), b, setup)
    return int(np.argmax(z > z_limit(alpha)))


def part_idlike(args, setup: Setup) -> None:
    print(f"6. what a reference of {setup.n_ref} says of high-cardinality columns (median of "
          f"20 references; coverage: the reference's share in the top cells)")
    print(f"{'column':>17} {'distinct/N':>11} {'singletons/N':>13} {'unseen mass':>12} "
          f"{'top cells':>10} {'coverage':>9} {'window max unseen':>18}")
    rng = np.random.default_rng(args.seed)
    kinds = [("zipf", 200), ("zipf", 1000), ("zipf", 10_000), ("zipf", 1_000_000),
             ("uniform", 1000), ("uniform", 10_000), ("uniform", 1_000_000)]
    for kind, k in kinds:
        rows = []
        pk = zipf(k) if kind == "zipf" else None
        for _ in range(20):
            if pk is None:
                ref = rng.integers(0, k, setup.n_ref)
                win = rng.integers(0, k, setup.window)
            else:
                cdf = np.cumsum(pk)
                ref = np.minimum(np.searchsorted(cdf, rng.random(setup.n_ref)), k - 1)
                win = np.minimum(np.searchsorted(cdf, rng.random(setup.window)), k - 1)
            values, counts = np.unique(ref, return_counts=True)
            top = top_cells(counts, setup)
            new = win[~np.isin(win, values)]
            share = 1 - (len(values) / k if pk is None else pk[values].sum())
            rows.append((len(values) / setup.n_ref, (counts == 1).sum() / setup.n_ref,
                         share, len(top), counts[top].sum() / setup.n_ref,
                         np.unique(new, return_counts=True)[1].max() if len(new) else 0))
        med = np.median(np.array(rows, float), axis=0)
        print(f"{kind + ' ' + f'{k:,}':>17} {med[0]:>11.3f} {med[1]:>13.3f} {med[2]:>12.3f} "
              f"{med[3]:>10.0f} {med[4]:>9.3f} {med[5]:>18.0f}")


def cardinalities(text: str) -> list[tuple[int, bool]]:
    """``2,5,30u`` as (2, Zipf), (5, Zipf), (30, uniform)."""
    return [(int(c.rstrip("u")), c.endswith("u")) for c in text.split(",")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default="null,cells,sizes,power,rules,idlike")
    ap.add_argument("--cardinalities", default="2,5,20,50,200",
                    help="Zipf cardinalities; a 'u' suffix: uniform shares (e.g. 30u)")
    # 30u: main's case, 30 codes of ~3.3%, one (3.2%) moving into another (that change only)
    ap.add_argument("--power-cardinalities", default="2,5,20,50,200,30u")
    ap.add_argument("--draws", type=int, default=1_000_000, help="null checks per row")
    ap.add_argument("--refs", type=int, default=2000, help="references per null row")
    ap.add_argument("--seeds", type=int, default=200, help="streams per change")
    ap.add_argument("--budget", type=float, default=1.0)
    ap.add_argument("--features", type=int, default=10,
                    help="the version's features (with estimation on) that split the budget")
    ap.add_argument("--tests", type=int, default=None, help="tests that split the budget "
                    "(default: calibration.count_tests(features, extra=1))")
    ap.add_argument("--min-count", type=int, default=10)
    ap.add_argument("--max-cells", type=int, default=100)
    ap.add_argument("--pooled-min", type=int, default=None, help="least reference + window "
                    "count of a pooled cell (default: min-count x (reference + window) / "
                    "the smaller of the two)")
    ap.add_argument("--choices", default="1:none,5:none,10:100,20:100,10:20",
                    help="min-count:max-cells pairs of the cells part")
    ap.add_argument("--sizes", default="500:500,1000:1000,2000:2000,5000:5000,20000:1000")
    ap.add_argument("--size-alpha", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    args.cards = cardinalities(args.cardinalities)
    d = DataDriftConfig()
    setup = Setup(d.reference_size, d.window, d.check_every, d.consecutive, args.min_count,
                  args.max_cells, args.pooled_min)
    tests = args.tests or calibration.count_tests(args.features, extra=1)
    rate = calibration.per_test_rate(args.budget, tests)
    alpha = calibration.check_alpha(rate, setup.every)
    print(f"budget {args.budget:g} per 1M predictions over {tests} tests: {rate:.3g} per "
          f"prediction, alpha = {alpha:.3g} per check (a check every {setup.every})")
    try:
        from scipy import stats
        worst = max(abs(chi2_isf(al, df) / stats.chi2.isf(al, df) - 1)
                    for al in (alpha, 1e-3, 1e-7) for df in (1, 2, 5, 19, 49, 199))
        print(f"chi2_isf (math only) against scipy: largest relative difference {worst:.1e}")
    except ImportError:
        pass
    parts = {"null": lambda: part_null(args, setup, alpha),
             "cells": lambda: part_cells(args, setup, alpha),
             "sizes": lambda: part_sizes(args, setup, alpha),
             "power": lambda: part_power(args, setup, alpha),
             "rules": lambda: part_rules(args, setup, alpha),
             "idlike": lambda: part_idlike(args, setup)}
    for name in args.parts.split(","):
        started = time.perf_counter()
        print()
        parts[name]()
        print(f"   ({name}: {time.perf_counter() - started:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
