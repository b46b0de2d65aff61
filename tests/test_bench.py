"""The benchmark harness runs (a smoke run: it must work; its numbers are not checked)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.kafka
def test_harness_smoke_prints_its_table(broker):
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "harness.py"), "--smoke",
                             "--broker", broker], capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith("1,000 pairs (2,000 events), 8 partitions, 1 worker")
    assert lines[0].endswith("Tansu" if broker == "tansu" else "Apache Kafka 4.1.1")
    assert lines[1].split()[:2] == ["input", "(a)"]
    assert lines[1].split()[-8:] == ["RSS", "at", "1/5,", "end", "(f)", "worker", "CPU",
                                     "µs/ev"]
    row = lines[2].split()  # input, (a), (e), (b), b/a, b/e, peak RSS, RSS at 1/5, at end, CPU
    assert row[0] == "batched" and float(row[4]) > 0 and float(row[5]) > 0
    assert float(row[9]) > 0
    assert lines[3].startswith("(c) label-to-metric latency at ")
