"""The dedupe's generation merges on the event loop: the longest step and the p99 step.

    .venv/bin/python bench/dedupe_merge.py [--ids 10000000] [--per-drain 2048]

One join partition remembers --ids ids (each a new string, as decoded events give them),
--per-drain at a time; after each batch of them it takes what the join does on each
drain, ``DoneIds.freeze()``: freeze the newest ids once there are :data:`FREEZE` of them
(16,384), and merge generations. That call is the "step": the event loop runs nothing
else while it lasts. Side by side in one run:

  before   the dedupe as it was before merges were stepped (read from git: the parent of
           the commit that added agents/join/generations.py, or --before REV): a merge
           concatenates both generations and re-sorts them, all within one freeze
  after    this tree's: a merge of the sorted arrays, MERGE_STEP source entries a drain

Each row gives the steps of the first --at ids and of all of them: how many; the longest
and p99 in wall time, then in this thread's CPU time (what the step itself costs, not
counting other processes that took the core meanwhile); the longest CPU time of a step
that froze no ids (merging only); the wall seconds in all; and the most generations a
lookup searched. A step that freezes hashes 16,384 ids (~4 ms) whichever the merge.
The garbage collector is off while steps are timed (the worker freezes its heap, issue 27).

Then the join's expiry sweep (every DRIFTLINE_EXPIRY_INTERVAL, 5 s), over the after run's
ids settled into generations, for --sweeps sweeps, the window's cutoff moving as it would
if those ids were a 24 h window's (--ids / 86,400 ids/s, 5 s a sweep): "whole pass" reads
every generation holding an expired id end to end each sweep (the dedupe before issue 37's
bounded sweeps), "sliced" what ``generations.expire_budget`` gives each; the longest and
median sweep, the most ids remembered past the cutoff after any sweep (how late the slices
forget) and the bound on that (32 sweeps' worth).
"""

from __future__ import annotations

import argparse
import gc
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import numpy as np

from driftline.agents.join import dedupe, generations

ROOT = Path(__file__).resolve().parent.parent


def before_module(rev: str | None) -> types.ModuleType:
    """agents/join/dedupe.py as of ``rev`` (default: before generations.py existed)."""
    if rev is None:
        added = subprocess.run(
            ["git", "log", "--format=%H", "--diff-filter=A", "-1", "--",
             "agents/join/generations.py"], cwd=ROOT, check=True, capture_output=True,
            text=True).stdout.strip()
        rev = f"{added}^" if added else "HEAD"
    source = subprocess.run(["git", "show", f"{rev}:agents/join/dedupe.py"], cwd=ROOT,
                            check=True, capture_output=True, text=True).stdout
    module = types.ModuleType("dedupe_before")
    sys.modules[module.__name__] = module  # dataclasses and annotations look it up
    exec(compile(source, f"{rev}:agents/join/dedupe.py", "exec"), module.__dict__)
    return module


def run(done: Any, ids: int, per_drain: int, freeze: int) -> tuple[np.ndarray, ...]:
    """Per step: its seconds (wall, then this thread's CPU), the ids remembered after
    it, the generations then, and whether it froze ids."""
    seconds: list[float] = []
    cpu: list[float] = []
    remembered: list[int] = []
    gens: list[int] = []
    froze: list[bool] = []
    gc.collect()
    gc.disable()
    try:
        for start in range(0, ids, per_drain):
            for i in range(start, min(start + per_drain, ids)):
                done.add(f"prediction-{i:012d}", float(i))
            froze.append(len(done.recent) >= freeze)
            began, began_cpu = time.perf_counter(), time.thread_time()
            done.freeze()
            seconds.append(time.perf_counter() - began)
            cpu.append(time.thread_time() - began_cpu)
            remembered.append(min(start + per_drain, ids))
            gens.append(done.generations)
    finally:
        gc.enable()
    return (np.array(seconds), np.array(cpu), np.array(remembered), np.array(gens),
            np.array(froze))


def row(name: str, seconds: np.ndarray, cpu: np.ndarray, gens: np.ndarray,
        froze: np.ndarray) -> str:
    ms, cpu_ms = seconds * 1e3, cpu * 1e3
    merging = cpu_ms[~froze].max() if (~froze).any() else 0.0
    return (f"{name:<24}{len(ms):>7,}{ms.max():>9.1f}{np.percentile(ms, 99):>8.1f}"
            f"{cpu_ms.max():>9.1f}{np.percentile(cpu_ms, 99):>8.1f}{merging:>9.1f}"
            f"{seconds.sum():>8.1f}{gens.max():>6}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ids", type=int, default=10_000_000)
    ap.add_argument("--at", type=int, default=1_000_000, help="also report the first N ids")
    ap.add_argument("--per-drain", type=int, default=2_048)
    ap.add_argument("--before", default=None, help="git revision of the old dedupe")
    ap.add_argument("--sweeps", type=int, default=100)
    args = ap.parse_args()
    print(f"{args.ids:,} ids, {args.per_drain:,} a drain, FREEZE {dedupe.FREEZE:,}, "
          f"MERGE_STEP {dedupe.MERGE_STEP:,}")
    print(f"{'':<24}{'':>7}{'wall ms':>17}{'CPU ms':>17}{'CPU ms':>9}")
    print(f"{'':<24}{'steps':>7}{'max':>9}{'p99':>8}{'max':>9}{'p99':>8}{'merging':>9}"
          f"{'total s':>8}{'gens':>6}")
    for name, module in (("before", before_module(args.before)), ("after", dedupe)):
        done = module.DoneIds()
        seconds, cpu, remembered, gens, froze = run(done, args.ids, args.per_drain,
                                                    module.FREEZE)
        first = remembered <= args.at
        if args.at < args.ids:
            print(row(f"{name}, first {args.at:,}", seconds[first], cpu[first], gens[first],
                      froze[first]), flush=True)
        print(row(f"{name}, all {args.ids:,}", seconds, cpu, gens, froze), flush=True)
        final = done
    frozen = [(h.copy(), t.copy()) for h, t, _ in final.frozen()]
    per_sweep = args.ids / 86_400 * 5
    print(f"\nexpiry sweeps of {args.ids:,} ids, the cutoff {per_sweep:,.0f} ids further "
          f"each sweep; 32 sweeps' worth: {32 * per_sweep:,.0f} ids")
    print(f"{'':<24}{'sweeps':>7}{'max ms':>9}{'p50 ms':>8}{'most past cutoff':>18}")
    for name, step in (("whole pass", 1 << 62), ("sliced", generations.EXPIRE_STEP)):
        print(sweep_row(name, frozen, per_sweep, args.sweeps, step), flush=True)


def sweep_row(name: str, frozen: list[tuple[np.ndarray, np.ndarray]], per_sweep: float,
              sweeps: int, step: int) -> str:
    """Ids seen at 0, 1, 2 ...: the cutoff ``per_sweep`` further each sweep."""
    done = dedupe.DoneIds()
    for h, t in frozen:
        done.add_frozen(h, t)
    done.settle()
    dedupe.EXPIRE_STEP = step
    times = np.sort(np.concatenate([t for _, t in frozen]))
    ms, late = [], []
    gc.disable()
    try:
        for k in range(1, sweeps + 1):
            cutoff = per_sweep * k
            began = time.perf_counter()
            done.expire(cutoff)
            ms.append((time.perf_counter() - began) * 1e3)
            late.append(len(done) - (len(times) - int(np.searchsorted(times, cutoff, "right"))))
    finally:
        gc.enable()
        dedupe.EXPIRE_STEP = generations.EXPIRE_STEP
    return f"{name:<24}{sweeps:>7}{max(ms):>9.1f}{np.median(ms):>8.2f}{max(late):>18,}"


if __name__ == "__main__":
    main()
