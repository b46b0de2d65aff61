"""What ships in deploy/ for Prometheus and Grafana (issue 36): the alert rules and the
scrape config pass promtool, the rules' unit tests pass, the dashboard is what Grafana
loads, every PromQL expression parses, and every metric they name is one a live worker
serves on ``/metrics``."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PROMETHEUS = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS / "driftline-rules.yml"
RULES_TEST = PROMETHEUS / "driftline-rules.test.yml"
CONFIG = PROMETHEUS / "prometheus.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "driftline.json"
PROVISIONING = ROOT / "deploy" / "grafana" / "provisioning"

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="no promtool here: .ci/run installs Debian's prometheus package; "
                             "apt-get install prometheus")

# Grafana's variables, replaced the way Grafana would before PromQL sees them.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "6h",
                     "$model": ".*"}
# Series Prometheus makes itself, not the worker.
PROMETHEUS_OWN = {"up"}


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd)


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"]
            for rule in group["rules"]]


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def dashboard_exprs() -> list[tuple[str, str]]:
    """(panel title, PromQL with Grafana's variables replaced) of every target."""
    out = []
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for name, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(name, value)
            out.append((panel["title"], expr))
    return out


def metric_names(expr: str) -> set[str]:
    """Metric names in ``expr``: identifiers not followed by ``(`` (functions), not label
    names (followed by ``=``, ``!=``, ``=~``, ``!~``), not inside quotes, not keywords."""
    expr = re.sub(r'"[^"]*"', '""', expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges: [5m]
    names = set()
    for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr):
        rest = expr[m.end():].lstrip()
        if rest.startswith("(") or re.match(r"(=|!=|=~|!~)", rest):
            continue
        if m.group() in {"and", "or", "unless", "bool", "offset", "le"}:
            continue
        names.add(m.group())
    return names


def test_metric_names_reads_promql():
    assert metric_names('sum by (kind) (rate(driftline_events_consumed_total{job="x", '
                        'model=~"$m"}[5m])) / on (kind) up') == {
        "driftline_events_consumed_total", "up"}
    assert metric_names("histogram_quantile(0.5, sum by (le) (rate(a_bucket[1m]))) > 1") == \
        {"a_bucket"}


@needs_promtool
def test_the_alert_rules_pass_promtool():
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_every_rule_has_for_a_severity_and_annotations():
    found = rules()
    names = [r["alert"] for r in found]
    assert len(names) == len(set(names)) and len(names) >= 6, names
    assert {"DriftlineWorkerDown", "DriftlineConsumerLagHigh", "DriftlineLabelStarvation",
            "DriftlineAlertDeliveryFailing", "DriftlineDeadLetterRateHigh",
            "DriftlineModelAlertFiring"} <= set(names)
    for rule in found:
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]
        # each annotation names what it is about: a label of the alert or its value
        assert "{{ $labels." in rule["annotations"]["summary"] + \
            rule["annotations"]["description"], rule["alert"]


@needs_promtool
def test_the_rules_unit_tests_pass_and_cover_worker_down_and_delivery_failures():
    tested = {case["alertname"] for test in yaml.safe_load(RULES_TEST.read_text())["tests"]
              for case in test["alert_rule_test"]}
    assert {"DriftlineWorkerDown", "DriftlineAlertDeliveryFailing"} <= tested
    result = promtool("test", "rules", RULES_TEST.name, cwd=PROMETHEUS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@needs_promtool
def test_the_rules_unit_tests_can_fail(tmp_path):
    """A rule that never fires fails its unit test: promtool's verdict means something."""
    (tmp_path / RULES.name).write_text(
        RULES.read_text().replace('up{job="driftline"} == 0', 'up{job="driftline"} == 2'))
    shutil.copy(RULES_TEST, tmp_path / RULES_TEST.name)
    result = promtool("test", "rules", RULES_TEST.name, cwd=tmp_path)
    assert result.returncode != 0 and "DriftlineWorkerDown" in result.stdout + result.stderr


@needs_promtool
def test_the_scrape_config_passes_promtool(tmp_path):
    # As shipped, apart from the files compose mounts: its syntax
    result = promtool("check", "config", "--syntax-only", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    # With the token file where compose puts it (here: a temporary one) and the rules
    # beside it, everything it references is checked too, the rules included.
    config = yaml.safe_load(CONFIG.read_text())
    [job] = config["scrape_configs"]
    assert job["job_name"] == "driftline" and job["metrics_path"] == "/metrics"
    assert job["authorization"]["type"] == "Bearer"
    assert config["rule_files"] == [RULES.name]
    token = tmp_path / "token"
    token.write_text("a-token-of-at-least-16-chars")
    text = CONFIG.read_text().replace(job["authorization"]["credentials_file"], str(token))
    (tmp_path / CONFIG.name).write_text(text)
    shutil.copy(RULES, tmp_path / RULES.name)
    result = promtool("check", "config", str(tmp_path / CONFIG.name))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_the_dashboard_has_what_grafana_needs():
    dash = dashboard()
    assert dash["uid"] and dash["title"] and 36 <= dash["schemaVersion"] <= 41
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    model = variables["model"]
    assert model["type"] == "query" and "label_values(" in model["query"]["query"]
    assert model["datasource"]["uid"] == "${DS_PROMETHEUS}"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), ids
    drawn = [p for p in dash["panels"] if p["type"] != "row"]
    assert len(drawn) >= 10
    for panel in drawn:
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        assert panel["targets"], panel["title"]
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"]), panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
    exprs = " ".join(expr for _, expr in dashboard_exprs())
    for wanted in ("driftline_events_consumed_total", "driftline_consumer_lag_records",
                   "driftline_rolling_mse", "driftline_baseline_mse",
                   "driftline_feature_drift{model=~\".*\"} / driftline_feature_drift_limit",
                   "driftline_feature_missing_share", "driftline_alerts_total",
                   "driftline_retrain_requests_total", "driftline_promotions_total",
                   "driftline_rollbacks_total", "driftline_alert_deliveries_total",
                   "driftline_classifier_metric", "driftline_monitor_refused_pairs_total"):
        assert wanted in exprs, wanted


def test_grafana_provisioning_points_at_the_dashboard_and_prometheus():
    [source] = yaml.safe_load((PROVISIONING / "datasources" / "driftline.yml").read_text())[
        "datasources"]
    assert source["type"] == "prometheus" and source["isDefault"] is True
    assert source["url"] == "http://prometheus:9090"
    [provider] = yaml.safe_load((PROVISIONING / "dashboards" / "driftline.yml").read_text())[
        "providers"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = dict(reversed(v.split(":")[:2]) for v in compose["services"]["grafana"]["volumes"])
    assert mounts[f"{provider['options']['path']}/{DASHBOARD.name}"] == \
        f"./{DASHBOARD.relative_to(ROOT)}"


@needs_promtool
def test_every_dashboard_expression_parses(tmp_path):
    exprs = dashboard_exprs()
    group = {"name": "dashboard", "rules": [{"record": f"dashboard:expr_{i}", "expr": expr}
                                            for i, (_, expr) in enumerate(exprs)]}
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [group]}))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    # ... and a broken one would not
    path.write_text(yaml.safe_dump({"groups": [{"name": "x", "rules": [
        {"record": "x:y", "expr": "sum by (kind (rate(driftline_alerts_total[1m]))"}]}]}))
    assert promtool("check", "rules", str(path)).returncode != 0


def used_metrics() -> dict[str, set[str]]:
    """Metric name -> where it is used (rule names, panel titles)."""
    used: dict[str, set[str]] = {}
    for rule in rules():
        for name in metric_names(rule["expr"]):
            used.setdefault(name, set()).add(f"rule {rule['alert']}")
    for title, expr in dashboard_exprs():
        for name in metric_names(expr):
            used.setdefault(name, set()).add(f"panel {title!r}")
    variables = dashboard()["templating"]["list"]
    for v in variables:
        if v["type"] == "query":
            [name] = re.findall(r"label_values\((\w+)", v["query"]["query"])
            used.setdefault(name, set()).add(f"variable {v['name']}")
    return used


def families(exposition: str) -> tuple[dict[str, str], set[str]]:
    """(family name -> type, from ``# TYPE`` lines), and the sample names that have a
    sample. Families with no samples still have their ``# HELP``/``# TYPE`` lines."""
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", exposition, re.M))
    sampled = set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", exposition, re.M))
    return types, sampled


def series_names(types: dict[str, str]) -> set[str]:
    """The series names a family yields: a histogram's _bucket, _sum and _count."""
    names = set()
    for name, kind in types.items():
        names |= ({f"{name}_bucket", f"{name}_sum", f"{name}_count"} if kind == "histogram"
                  else {name})
    return names


TOKEN = "a-scrape-token-of-32-characters!"


def scrape(port: int) -> str:
    """GET /metrics the way deploy/prometheus/prometheus.yml does: with the bearer token."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics",
                                     headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read().decode()


@pytest.mark.integration
def test_every_metric_the_rules_and_dashboard_use_is_on_a_live_worker(settings,
                                                                     worker_factory):
    from kafka_io import create_topics

    from driftline import ModelRegistry, Publisher
    from driftline.ports import free_port
    from driftline.simulate import ProductionService, World, bootstrap, model_for

    port = free_port()
    settings = settings.replace(web_port=port, api_token=TOKEN, metrics_interval=0.5)
    create_topics(settings)
    registry = ModelRegistry.from_url(settings.redis_url, prefix=settings.registry_prefix)
    worlds = {model_for(s): World(s, drift_at=1_500, seed=3) for s in ("abrupt", "binary")}
    current = {}
    for model, world in worlds.items():
        bootstrap(registry, model, world)
        current[model] = registry.load(model, alias="champion")
    registry.close()
    worker = worker_factory(settings)

    async def serve():
        async with Publisher(settings=settings) as pub:
            for model, world in worlds.items():
                service = ProductionService(pub, lambda m=model: current[m], world,
                                            model=model, label_delay=50)
                await service.run(3_000)

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            scrape(port)
            break
        except OSError:
            time.sleep(0.5)
    asyncio.run(serve())
    # Served with samples after this stream (predictions, labels, a drift and its alert,
    # the trigger's retrain request, a classifier). The rest are declared (# HELP/# TYPE)
    # with no samples until their event happens: a delivery, a rollback, a refused pair ...
    expected = ("driftline_events_consumed_total", "driftline_pairs_scored_total",
                "driftline_consumer_lag_records", "driftline_dead_letters_total",
                "driftline_rolling_mse", "driftline_baseline_mse",
                "driftline_version_pairs_total", "driftline_feature_drift",
                "driftline_feature_drift_limit", "driftline_classifier_metric",
                "driftline_alerts_total", "driftline_alerts_firing",
                "driftline_event_time_lag_seconds", "driftline_label_delay_seconds_bucket",
                "driftline_retrain_requests_total")
    text = ""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        # Until both models are monitored and alerted, and the trigger (an agent after the
        # alert) has asked for a retrain: the scrape can fall between the two.
        text = scrape(port)
        if all(re.search(rf'^driftline_{family}{{[^}}]*model="{m}"', text, re.M)
               for m in worlds for family in ("rolling_mse", "alerts_total")) \
                and set(expected) <= families(text)[1]:
            break
        time.sleep(1)
    assert worker.alive(), worker.log()
    types, sampled = families(text)
    served = series_names(types)
    used = used_metrics()
    missing = {name: sorted(where) for name, where in used.items()
               if name not in served and name not in PROMETHEUS_OWN}
    assert missing == {}, missing
    for name in expected:
        assert name in used, name
        assert name in sampled, (name, text[-3000:])
    print("declared without samples:", sorted(set(used) - sampled - PROMETHEUS_OWN))


def test_the_how_to_lists_every_rule_with_its_for():
    page = (ROOT / "docs" / "how-to" / "observability.md").read_text()
    section = page[page.index("## Prometheus and Grafana"):]
    rows = dict(re.findall(r"^\| `(Driftline\w+)` \|.*\| (\d+[smh]) \|", section, re.M))
    assert rows == {rule["alert"]: rule["for"] for rule in rules()}
