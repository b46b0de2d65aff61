"""The benchmark harness runs (a smoke run: it must work; its numbers are not checked)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.kafka
def test_harness_smoke_prints_its_table(broker):
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "harness.py"), "--smoke",
                             "--latency-stages", "--broker", broker],
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith("1,000 pairs (2,000 events), 8 partitions, 1 worker")
    assert lines[0].endswith("Tansu" if broker == "tansu" else "Apache Kafka 4.1.1")
    assert lines[1].split()[:2] == ["input", "(a)"]
    assert lines[1].split()[-8:] == ["RSS", "at", "1/5,", "end", "(f)", "worker", "CPU",
                                     "µs/ev"]
    row = lines[2].split()  # input, (a), (e), (b), b/a, b/e, peak RSS, RSS at 1/5, at end, CPU
    assert row[0] == "batched" and float(row[4]) > 0 and float(row[5]) > 0
    # (f) is read in clock ticks (10 ms): a smoke run's worker may spend less than one over
    # (b); the next test checks the reading itself.
    assert float(row[9]) >= 0
    assert lines[3].startswith("(c) label-to-metric latency at ")
    legs = lines[4].removeprefix("(c) by leg, p50 / p99: ").split("; ")
    assert [leg.split()[0] for leg in legs] == ["Publisher", "join", "scored", "monitor"]


def test_worker_cpu_is_read_from_proc_for_each_process():
    """(f) sums each worker's user and system time: two processes that each spin ~0.4 s of
    CPU read at least 0.6 s together, and an idle one adds about nothing."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from harness import Workers
    finally:
        sys.path.remove(str(ROOT / "bench"))
    spin = "import time\nend = time.process_time() + 0.4\nwhile time.process_time() < end: pass\n" \
           "time.sleep(30)"
    group = Workers.__new__(Workers)
    group.procs = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(2)]
    idle = Workers.__new__(Workers)
    idle.procs = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])]
    try:
        deadline = time.monotonic() + 20
        while group.cpu_seconds() < 0.8 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert 0.6 <= group.cpu_seconds() < 2.0
        assert idle.cpu_seconds() < 0.3  # the interpreter's start only
    finally:
        for proc in group.procs + idle.procs:
            proc.kill()
            proc.wait()


def test_pair_floor_prints_each_step_and_the_ceiling():
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "pair_floor.py"),
                             "--pairs", "1000", "--repeat", "1", "--bare-rate", "500000"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    cost = {line[:24].strip(): float(line[24:31]) for line in lines[1:10]}
    assert list(cost) == ["read", "validate", "join", "scored", "join-state entries",
                          "monitor-input", "monitor", "floor", "now"]
    assert cost["floor"] == pytest.approx(cost["validate"] + cost["join"] + cost["scored"]
                                          + cost["monitor"], abs=0.02)
    assert cost["now"] == pytest.approx(cost["floor"] + cost["join-state entries"]
                                        + cost["monitor-input"], abs=0.02)
    assert lines[10].startswith("ceiling on b / a, floor: ")
    assert lines[11].startswith("ceiling on b / a, now: ")


def test_the_categorical_drift_benchmark_runs_every_part():
    """bench/categorical_drift.py (the measurement behind the categorical test's design) on
    tiny sizes: it must run; its numbers are not checked."""
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "categorical_drift.py"),
                             "--parts", "null,cells,sizes,power,rules,idlike",
                             "--cardinalities", "5", "--power-cardinalities", "5",
                             "--draws", "2000", "--refs", "20", "--seeds", "5",
                             "--sizes", "500:500", "--choices", "10:100"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    for part in ("null", "cells", "sizes", "power", "rules", "idlike"):
        assert f"({part}: " in result.stdout, part


def test_the_feature_quality_benchmark_runs_every_part():
    """bench/feature_quality.py on tiny sizes: every part runs, and the delays table has a
    row per change with its detectors (the numbers are the note's, not checked here)."""
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "feature_quality.py"),
                             "--null-events", "20000", "--seeds", "1", "--events", "12000",
                             "--distinct", "20000"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    for part in ("## null", "## delays", "## memory"):
        assert part in result.stdout, part
    assert result.stdout.count("| 1/1 |") == 4, result.stdout


def test_the_model_kinds_benchmark_runs_every_kind():
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "model_kinds.py"),
                             "--rows", "600", "--features", "3", "--classes", "3",
                             "--repeat", "1"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    kinds = [line.split()[:2] for line in result.stdout.splitlines()[2:]]
    tasks = ["regression", "binary", "multiclass"]
    expected = [["linear", "regression"], ["logistic", "binary"], ["softmax", "multiclass"]]
    expected += [["encoded", task] for task in tasks]
    if importlib.util.find_spec("skl2onnx") and importlib.util.find_spec("onnxruntime"):
        expected += [["onnx", task] for task in tasks]
    assert kinds == expected, result.stdout


def test_the_detection_benchmark_runs_every_family_and_detector():
    """bench/detection.py --quick: each of its three tables (delays, false alarms before the
    change, false alarms on stationary streams) has a column per detector and a row per
    family, filled for the detectors of the family's task (the numbers are
    docs/benchmarks.md's, not checked here)."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from detection import DETECTORS, detectors_for
        from detection_streams import DRIFTING, STATIONARY
    finally:
        sys.path.remove(str(ROOT / "bench"))
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "detection.py"), "--quick"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    tables: list[list[list[str]]] = []
    for line in result.stdout.splitlines():
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] == "family" or "pairs" in cells[1:2]:
            tables.append([cells])
        elif not cells[0].startswith("---"):
            tables[-1].append(cells)
    assert len(tables) == 3, result.stdout
    for table, families in zip(tables, (DRIFTING, DRIFTING, STATIONARY)):
        head, rows = table[0], {row[0]: row for row in table[1:]}
        assert [name for name in head if name in DETECTORS] == list(DETECTORS), head
        assert list(rows) == [f.name for f in families], list(rows)
        for family in families:
            row = dict(zip(head, rows[family.name]))
            filled = [name for name in DETECTORS if row[name] != "-"]
            assert filled == detectors_for(family.task), (family.name, row)
    assert set(detectors_for("regression")) < set(detectors_for("binary")) == set(DETECTORS)


def test_the_class_estimation_benchmark_prints_a_row_per_metric_and_a_cell_per_seed():
    """bench/class_estimation.py on one short stream per task: each table has its rows and
    every cell reads ``estimated / realised (error)`` with the error their difference."""
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "class_estimation.py"),
                             "--seeds", "2", "--pairs", "2000"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [[c.strip() for c in line.strip("|").split("|")]
            for line in result.stdout.splitlines() if line.startswith("| ")]
    heads = [row for row in rows if row[0] == "stream"]
    assert heads == [["stream", "metric", "seed 0", "seed 1", "max error"],
                     ["stream", "metric", "seed 10", "seed 11", "max error"]]
    body = [row for row in rows if row[0] != "stream"]
    assert [(row[0], row[1]) for row in body] == [
        *((f"binary, threshold {t}", m) for t in (0.5, 0.3)
          for m in ("accuracy", "precision", "recall", "f1")),
        ("multiclass", "accuracy"), ("multiclass", "macro F1"),
        ("multiclass", "accuracy, uncalibrated")]
    for row in body:
        errors = []
        for cell in row[2:4]:
            estimated, realised, error = map(float, re.fullmatch(
                r"([\d.]+) / ([\d.]+) \(([\d.]+)\)", cell).groups())
            assert error == pytest.approx(abs(estimated - realised), abs=0.0011), row
            errors.append(error)
        assert float(row[4]) == max(errors), row
