"""`driftline demo`, the quick start's first command, run as a user would (non-interactive)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def processes_mentioning(text: bytes) -> list[str]:
    """Command lines of live processes whose arguments (NUL-separated) or environment
    contain ``text``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        if text in cmdline or text in environ:
            found.append(cmdline.replace(b"\0", b" ").decode(errors="replace"))
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_demo_closes_the_loop_and_leaves_nothing_behind():
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLINE_")}
    result = subprocess.run([sys.executable, "-m", "driftline", "demo", "--no-live",
                             "--events", "6000", "--seed", "1"], env=env, capture_output=True,
                            text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "drift injected at pair 2,000" in out
    assert re.search(r"drift alert published [\d.]+ s after the first post-drift label "
                     r"\(concept_drift at v1's pair \d[\d,]*\)", out), out
    assert re.search(r"retrained and promoted v2 in [\d.]+ s after the alert "
                     r"\(1 retrain request\)", out), out
    assert "model houses v2 promoted" in out and "alert houses.v1.concept_drift.1.firing" in out
    # Issue #18: v1's alerts do not stay firing once v2 serves (the demo supersedes after 1 s).
    assert "alert houses.v1.concept_drift.1.resolved: houses v1 is superseded" in out, out
    assert "open alerts at the end: 0 (" in out, out
    kafka = re.search(r"embedded Kafka kafka://(127\.0\.0\.1:\d+)", out).group(1)
    redis = re.search(r"Redis redis://(127\.0\.0\.1:\d+)", out).group(1)
    port = redis.split(":")[1]
    leftovers = (processes_mentioning(kafka.encode())           # tansu, worker, trainer
                 + processes_mentioning(redis.encode())         # worker, trainer
                 + processes_mentioning(f"--port\0{port}\0".encode()))  # valkey
    assert leftovers == [], leftovers


@pytest.mark.parametrize("scenario, model, metric", [
    ("binary", "churn", "Brier score"), ("multiclass", "intents", "error rate")])
def test_the_classifier_demos_close_the_loop_with_classifiers(scenario, model, metric):
    """Issue 33: drift -> alert -> a classifier retrained as one -> promotion, the task read
    from the registry (the demo's monitor config gives none)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLINE_")}
    result = subprocess.run([sys.executable, "-m", "driftline", "demo", "--no-live",
                             "--events", "6000", "--seed", "1", "--scenario", scenario,
                             "--json"], env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    s = json.loads(result.stdout.strip().splitlines()[-1])
    assert (s["model"], s["task"], s["metric"]) == (model, scenario, metric)
    assert s["detected"] and s["detection_kind"] == "concept_drift"
    assert 2_000 < s["detection_at_pair"] < 2_600, s
    assert s["promoted_version"] == 2 and s["retrain_requests"] == 1
    # v1 degrades after the drift; v2, trained on the drifted pairs, is back near v1 before.
    assert s["mse_during"] > 2 * s["mse_before"], s
    assert s["mse_after"] < 1.2 * s["mse_before"], s
    assert s["open_alerts"] == [], s
    print(f"\n{scenario}: {metric} {s['mse_before']:.3f} -> {s['mse_during']:.3f} -> "
          f"{s['mse_after']:.3f}; alert at pair {s['detection_at_pair']:,}, "
          f"{s['detection_delay_s']} s; promoted {s['alert_to_promotion_s']} s later")
