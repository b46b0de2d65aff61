"""The operator commands: publish, alerts tail, replay, simulate, health."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import orjson
import pytest
from click.testing import CliRunner
from kafka_io import create_topics, produce, read_all
from test_retrain_policy import alert

from driftline.cli import main
from driftline.kafka import partition_for

pytestmark = pytest.mark.integration


def env_of(settings) -> dict[str, str]:
    return {"DRIFTLINE_KAFKA_URL": settings.kafka_url, "DRIFTLINE_REDIS_URL": settings.redis_url,
            "DRIFTLINE_TOPIC_PREFIX": settings.topic_prefix,
            "DRIFTLINE_PARTITIONS": str(settings.partitions),
            "DRIFTLINE_GROUP_ID": settings.group_id}


def events_in(record) -> list[dict]:
    value = orjson.loads(record.value)
    return value if isinstance(value, list) else [value]


def test_publish_jsonl_skips_bad_rows_with_their_line_numbers(settings, tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join([
        '{"prediction_id": "a", "model": "m", "prediction": 1.5, "features": {"x": 1}}',
        '{"prediction_id": "a", "label": 2.0}',
        'not json',
        '',
        '{"prediction_id": "b", "model": "m", "prediction": NaN}',
        '{"prediction_id": "b", "model": "m bad", "prediction": 1}',
        '{"prediction_id": "c", "label": 1, "ts": 1700000000}',
    ]) + "\n")
    result = CliRunner().invoke(main, ["publish", str(path), "--json"], env=env_of(settings))
    assert result.exit_code == 3, result.output
    assert orjson.loads(result.stdout.splitlines()[-1]) == {"predictions": 1, "labels": 2,
                                                             "bad_rows": 3}
    assert "skipped invalid_json: line 3 is not JSON" in result.stderr
    assert "skipped not_finite: line 5: prediction: must be a finite number" in result.stderr
    assert "skipped bad_model: line 6" in result.stderr
    predictions = [e for r in read_all(settings, "predictions") for e in events_in(r)]
    labels = [e for r in read_all(settings, "labels") for e in events_in(r)]
    assert [p["prediction_id"] for p in predictions] == ["a"]
    assert sorted(label["prediction_id"] for label in labels) == ["a", "c"]


def test_publish_csv_one_event_per_message(settings, tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("prediction_id,model,version,prediction,label,ts,rooms,area\n"
                    "p1,houses,1,410.5,,1700000000,4,88\n"
                    "p1,,,,398,1700000100,,\n"
                    "p2,houses,1,300,310,1700000200,3,60\n"
                    "p3,houses,x,1,,,,\n"
                    "p4,houses,1,1,,,inf,\n")
    result = CliRunner().invoke(main, ["publish", str(path), "--batch", "1"],
                                env=env_of(settings))
    assert result.exit_code == 3, result.output
    assert "published 2 predictions and 2 labels" in result.stdout
    assert "skipped wrong_type: line 5" in result.stderr
    assert ("skipped wrong_type: line 6: feature 'rooms' must be a finite number or a "
            "category") in result.stderr
    records = read_all(settings, "predictions")
    assert len(records) == 2 and all(r.key.decode() == orjson.loads(r.value)["prediction_id"]
                                     for r in records)
    first = next(orjson.loads(r.value) for r in records if r.key == b"p1")
    assert first["features"] == {"rooms": 4.0, "area": 88.0} and first["version"] == 1
    labels = {r.key: orjson.loads(r.value) for r in read_all(settings, "labels")}
    assert labels[b"p1"] == {"prediction_id": "p1", "label": 398.0, "ts": 1700000100.0}
    assert labels[b"p2"]["label"] == 310.0


def test_publish_says_what_to_do_when_kafka_is_unreachable(tmp_path):
    path = tmp_path / "e.jsonl"
    path.write_text('{"prediction_id": "a", "label": 1}\n')
    result = CliRunner().invoke(main, ["publish", str(path)],
                                env={"DRIFTLINE_KAFKA_URL": "kafka://127.0.0.1:1"})
    assert result.exit_code == 1
    assert "cannot reach Kafka at kafka://127.0.0.1:1" in result.stderr


def test_alerts_tail_shows_the_latest_and_filters_by_model(settings):
    create_topics(settings)
    alerts = [alert(ts=100.0 + i, episode=i, model=m) for i, m in
              enumerate(["m", "m", "other", "m"])]
    for a in alerts:
        produce(settings, [("alerts", a["model"].encode(), orjson.dumps(a))],
                partition=partition_for(a["model"].encode(), settings.partitions))
    runner = CliRunner()
    result = runner.invoke(main, ["alerts", "tail", "--model", "m", "-n", "2", "--json"],
                           env=env_of(settings))
    assert result.exit_code == 0, result.output
    assert [orjson.loads(line)["alert_id"] for line in result.stdout.splitlines()] == [
        "m.v1.concept_drift.1.firing", "m.v1.concept_drift.3.firing"]
    result = runner.invoke(main, ["alerts", "tail"], env=env_of(settings))
    lines = result.stdout.splitlines()
    assert len(lines) == 4 and "other v1  The error went up." in lines[2]
    assert lines[0].startswith("1970-01-01 00:01:40  firing   warning  concept_drift")


def test_alerts_tail_follows_new_alerts_until_interrupted(settings):
    create_topics(settings)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("DRIFTLINE_")},
           **env_of(settings)}
    # Ctrl-C as at a terminal: a suite started in the background (``cmd &``) has SIGINT
    # ignored, and the child would inherit that.
    with subprocess.Popen([sys.executable, "-m", "driftline", "alerts", "tail", "-f", "--json"],
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)
                          ) as proc:
        try:
            # It has read the (empty) history and follows once it says so.
            for _ in range(100):  # past any log lines
                notice = proc.stderr.readline()
                if not notice or notice.startswith(b"following "):
                    break
            assert notice.startswith(b"following "), "no follow notice"
            new = alert(model="m", ts=5.0)
            produce(settings, [("alerts", b"m", orjson.dumps(new))],
                    partition=partition_for(b"m", settings.partitions))
            line = proc.stdout.readline()
            assert orjson.loads(line)["alert_id"] == new["alert_id"]
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                _, err = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise AssertionError("alerts tail -f ignored SIGINT for 30 s") from None
        assert proc.returncode == 0, err


def test_simulate_then_replay_writes_the_report(tmp_path):
    runner = CliRunner()
    log = tmp_path / "houses.jsonl"
    result = runner.invoke(main, ["simulate", "--events", "8000", "--out", str(log)])
    assert result.exit_code == 0, result.output
    assert "wrote 16,000 events" in result.stdout
    out = tmp_path / "report"
    result = runner.invoke(main, ["replay", str(log), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = orjson.loads(result.stdout)
    assert (summary["events"], summary["scored"], summary["bad_rows"]) == (16_000, 8_000, 0)
    alerts = orjson.loads((out / "alerts.json").read_bytes())
    assert {a["kind"] for a in alerts} >= {"concept_drift", "metric_threshold"}
    assert all(a["ts"] > 1_767_225_600 + 4_000 / 100 for a in alerts)  # after the drift
    png = (out / "report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    version = orjson.loads((out / "summary.json").read_bytes())["versions"]["houses v1"]
    assert version["n_scored"] == 8_000
    assert version["features"]["x0"]["type"] == "numeric"
    # the text report: each feature's drift statistic and limit, and its missing share
    result = runner.invoke(main, ["replay", str(log), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "houses v1 features:" in result.stdout
    assert re.search(r"\n  x0  numeric  psi [\d.e-]+ / limit [\d.e-]+  missing 0\.0%\n",
                     result.stdout), result.stdout


def test_replay_refuses_a_bad_config_and_reports_bad_rows(tmp_path):
    log = tmp_path / "l.jsonl"
    log.write_text('{"prediction_id": "a", "model": "m", "prediction": 1}\n{"label": 1}\n')
    config = tmp_path / "monitor.toml"
    config.write_text("[defaults]\nwindw = 3\n")
    runner = CliRunner()
    result = runner.invoke(main, ["replay", str(log), "--config", str(config),
                                  "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "unknown key(s) windw" in result.output
    result = runner.invoke(main, ["replay", str(log), "--out", str(tmp_path / "r")])
    assert result.exit_code == 3
    assert "skipped missing_field: line 2: prediction_id" in result.stderr


def test_replay_says_which_pairs_it_refused_and_that_task_gives_a_model_its_task(tmp_path):
    """A multiclass log replayed as a regression (no --task) has every pair refused: the
    summary says so, by reason, with the --task to pass; with it the same log gets the
    multiclass metrics and its drift is found."""
    runner = CliRunner()
    log = tmp_path / "intents.jsonl"
    result = runner.invoke(main, ["simulate", "--events", "6000", "--scenario", "multiclass",
                                  "--out", str(log)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["replay", str(log), "--out", str(tmp_path / "plain")])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].endswith("6,000 scored pairs, 0 alerts")
    assert lines[1:4] == [
        "refused 6,000 scored pairs that do not fit their model (summary.json: refused_pairs):",
        "  intents v1 (regression): 6,000 class_prediction",
        "  intents sends classes: if it is a multiclass model, replay with --task "
        "intents=multiclass (or task = \"multiclass\" in [models.intents] of the monitor "
        "config)"]
    result = runner.invoke(main, ["replay", str(log), "--out", str(tmp_path / "plain"),
                                  "--json"])
    assert orjson.loads(result.stdout)["refused_pairs"] == {"class_prediction": 6_000}

    out = tmp_path / "tasked"
    result = runner.invoke(main, ["replay", str(log), "--task", "intents=multiclass",
                                  "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = orjson.loads(result.stdout)
    assert summary["refused_pairs"] == {} and summary["alerts"] >= 1
    version = orjson.loads((out / "summary.json").read_bytes())["versions"]["intents v1"]
    assert version["task"] == "multiclass" and version["n_scored"] == 6_000
    assert "refused_pairs" not in version and 0 < version["rolling_accuracy"] < 1
    alerts = orjson.loads((out / "alerts.json").read_bytes())
    assert "concept_drift" in {a["kind"] for a in alerts}
    result = runner.invoke(main, ["replay", str(log), "--task", "intents=multiclass",
                                  "--out", str(out)])
    assert "refused" not in result.stdout
    result = runner.invoke(main, ["replay", str(log), "--task", "intents", "--out", str(out)])
    assert result.exit_code == 2 and "is not MODEL=TASK" in result.output


def test_a_decision_threshold_in_the_monitor_toml_sets_the_realised_metrics(tmp_path):
    """decision_threshold = 0.3 in [models.churn] of the file replay reads: its realised
    precision and recall are those at 0.3 of the window's pairs, not those at 0.5."""
    from driftline.agents.monitor.classes import binary_report
    runner = CliRunner()
    log = tmp_path / "churn.jsonl"
    assert runner.invoke(main, ["simulate", "--events", "4000", "--scenario", "binary",
                                "--out", str(log)]).exit_code == 0
    rows = [orjson.loads(line) for line in log.read_bytes().splitlines()]
    served = {r["prediction_id"]: r["prediction"] for r in rows if "model" in r}
    window = [(served[r["prediction_id"]], r["label"]) for r in rows if "model" not in r]
    p, y = np.array(window[-1_000:]).T  # the last window's pairs, in label order
    got = {}
    for threshold in (0.5, 0.3):
        config = tmp_path / f"monitor-{threshold}.toml"
        config.write_text(f'[models.churn]\ntask = "binary"\ndecision_threshold = {threshold}\n')
        out = tmp_path / f"report-{threshold}"
        result = runner.invoke(main, ["replay", str(log), "--config", str(config),
                                      "--out", str(out), "--json"])
        assert result.exit_code == 0, result.output
        version = orjson.loads((out / "summary.json").read_bytes())["versions"]["churn v1"]
        assert version["task"] == "binary" and version["n_scored"] == 4_000
        expected = binary_report(p, y, threshold)
        for name in ("rolling_accuracy", "rolling_precision", "rolling_recall", "rolling_f1"):
            assert version[name] == pytest.approx(expected[name]), (threshold, name)
        got[threshold] = version
    assert got[0.3]["rolling_recall"] > got[0.5]["rolling_recall"] + 0.05
    assert got[0.3]["rolling_precision"] != got[0.5]["rolling_precision"]
    assert got[0.3]["rolling_brier"] == got[0.5]["rolling_brier"]  # not thresholded


@pytest.mark.kafka
def test_health_reports_each_check(settings, worker_factory):
    create_topics(settings)
    worker_factory(settings)
    runner = CliRunner()
    deadline = time.monotonic() + 60
    while True:
        result = runner.invoke(main, ["health", "--group", "worker", "--json"],
                               env=env_of(settings))
        if result.exit_code == 0 or time.monotonic() > deadline:
            break
        time.sleep(1)
    report = orjson.loads(result.stdout)
    assert result.exit_code == 0, report
    assert report["checks"]["worker"]["state"] == "Stable"
    assert report["checks"]["redis"]["ok"] and report["checks"]["kafka"]["ok"]
    result = runner.invoke(main, ["health"], env=env_of(settings))  # no trainer running
    assert result.exit_code == 1
    assert "FAIL trainer: group=" in result.stdout and "ok   worker" in result.stdout


@pytest.mark.integration
def test_replay_explain_draws_each_versions_feature_shares_from_the_registry(tmp_path, stack):
    import uuid

    from driftline import ModelRegistry
    from driftline.simulate import World, bootstrap

    env = {"DRIFTLINE_REDIS_URL": stack.redis_url,
           "DRIFTLINE_REGISTRY_PREFIX": f"rx{uuid.uuid4().hex[:8]}:"}
    registry = ModelRegistry.from_url(stack.redis_url, prefix=env["DRIFTLINE_REGISTRY_PREFIX"])
    bootstrap(registry, "houses", World("abrupt", seed=0))  # what `simulate` serves as v1
    registry.close()
    runner = CliRunner()
    log = tmp_path / "houses.jsonl"
    assert runner.invoke(main, ["simulate", "--events", "3000", "--out", str(log)]).exit_code == 0
    plain, explained = tmp_path / "plain", tmp_path / "explained"
    assert runner.invoke(main, ["replay", str(log), "--out", str(plain)]).exit_code == 0
    result = runner.invoke(main, ["replay", str(log), "--out", str(explained), "--explain"],
                           env=env)
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output
    from PIL import Image

    with Image.open(plain / "report.png") as a, Image.open(explained / "report.png") as b:
        assert b.size[0] > a.size[0] * 1.3  # the explanation panel beside the MSE plot
    result = runner.invoke(main, ["replay", str(log), "--out", str(tmp_path / "gone"),
                                  "--explain"], env={**env, "DRIFTLINE_REGISTRY_PREFIX": "x:"})
    assert result.exit_code == 0 and "no explanation of houses v1" in result.output
