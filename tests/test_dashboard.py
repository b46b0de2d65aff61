"""The dashboard in a real headless Chromium, against a live worker, trainer and stream."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request

import orjson
import pytest
from kafka_io import create_topics, produce

from driftline import ModelClient, ModelRegistry, Publisher
from driftline.ports import free_port
from driftline.simulate import ProductionService, World, bootstrap, model_for

pytestmark = pytest.mark.integration

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")


def browser(url: str, out_dir, name: str) -> str:
    """The page's DOM after its scripts ran, and a screenshot ``name``.png beside it."""
    profile = out_dir / f"profile-{name}"
    flags = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={profile}", "--window-size=1280,1000",
             "--virtual-time-budget=6000"]
    subprocess.run(flags + [f"--screenshot={out_dir / (name + '.png')}", url],
                   capture_output=True, timeout=90, check=True)
    dom = subprocess.run(flags + ["--dump-dom", url], capture_output=True, text=True,
                         timeout=90, check=True).stdout
    (out_dir / f"{name}.html").write_text(dom)
    return dom


def chart_tag(dom: str) -> str:
    """The chart's opening ``<svg>`` tag (its attributes: range, points, event-time axis)."""
    found = re.search(r'<svg class="chart"[^>]*>', dom)
    assert found, dom[-3000:]
    return found.group(0)


def attr(tag: str, name: str) -> str:
    found = re.search(rf'\b{name}="([^"]*)"', tag)
    assert found, (name, tag)
    return found.group(1)


def polyline_xs(dom: str, version: str) -> list[float]:
    """The x positions of a version's rolling-metric line."""
    found = re.search(rf'<polyline class="mse" data-version="{version}"[^>]*points="([^"]*)"', dom)
    assert found, dom[-3000:]
    return [float(p.split(",")[0]) for p in found.group(1).split()]


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


@pytest.mark.skipif(BROWSER is None, reason="no Chromium here: .ci/run installs Debian's "
                                            "chromium package; apt-get install chromium")
@pytest.mark.parametrize("scenario", ["abrupt", "multiclass"])
def test_dashboard_shows_the_drift_the_alert_and_the_new_version(settings, worker_factory,
                                                                 tmp_path, scenario):
    """A regression (houses) and a multiclass classifier (intents, its task from the
    registry): drift, alert, the retrained version with its kind and canary."""
    port = free_port()
    settings = settings.replace(metrics_interval=0.5, web_port=port)
    create_topics(settings)
    registry = ModelRegistry.from_url(settings.redis_url, prefix=settings.registry_prefix)
    world = World(scenario, drift_at=4_000, seed=12)
    model = model_for(scenario)
    bootstrap(registry, model, world)
    registry.close()
    worker = worker_factory(settings)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLINE_")}
    env.update(settings.replace(web_port=0).as_env())
    trainer = subprocess.Popen([sys.executable, "-m", "driftline", "trainer"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    client = ModelClient.from_url(settings.redis_url, model, prefix=settings.registry_prefix,
                                  poll_interval=0.5)
    try:
        deadline = time.monotonic() + 60
        while get(f"{base}/healthz")[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert get(f"{base}/healthz")[0] == 200, worker.log()

        async def serve(n, until=None):
            async with Publisher(settings=settings) as pub:
                service.publisher = pub
                await service.run(n, until=until)

        # Event time runs a second a row: hours of it published in seconds (issue 36: the
        # chart is drawn over event time, not over when the metrics were published).
        start = time.time() - 30_000
        service = ProductionService(None, lambda: client.model, world, model=model,
                                    label_delay=100, rate=1_000,
                                    clock=lambda: start + service.stats.predictions)
        asyncio.run(serve(3_000))
        time.sleep(2)
        before = browser(f"{base}/", tmp_path, "before-drift")
        points = [int(n) for n in re.findall(r'class="chart"[^>]*data-points="(\d+)"', before)
                  + re.findall(r'data-points="(\d+)"[^>]*class="chart"', before)]
        assert points and points[0] > 0, before[-3000:]
        assert 'class="alert-marker"' not in before

        published = time.monotonic()
        asyncio.run(serve(20_000, until=lambda: service.stats.by_version.get(2, 0) >= 1_500))
        assert service.stats.by_version.get(2, 0) >= 1_500, worker.log()
        published = time.monotonic() - published
        # The concept-drift alert delivered (as `driftline delivery` records it; this worker
        # has no receiver): its episode's bar says so, the others that nothing was.
        alerts = json.loads(get(f"{base}/api/alerts?model={model}")[1])["alerts"]
        drift = next(a for a in alerts if a["kind"] == "concept_drift"
                     and a["status"] == "firing")
        produce(settings, [("alert_deliveries", drift["alert_id"].encode(), orjson.dumps(
            {"alert_id": drift["alert_id"], "target": "webhook-1", "outcome": "delivered",
             "attempts": 1, "status_code": 200, "error": None, "ts": time.time()}))])
        time.sleep(2)
        after = browser(f"{base}/", tmp_path, "after-drift")
        # Over event time: the chart spans the stream's label times (hours), not the
        # seconds it took to publish them, and its points stand apart along it.
        svg = chart_tag(after)
        t0, t1 = float(attr(svg, "data-t0")), float(attr(svg, "data-t1"))
        end = start + service.stats.predictions
        assert start <= t0 < start + 3_100 and end - 200 <= t1 <= end, (t0, t1, start, end)
        assert t1 - t0 > 20 * published, (t1 - t0, published)
        xs = polyline_xs(after, "1")
        # (two records can share an event time: the test's labels come 100 to a time)
        assert len(set(xs)) >= 5 and xs == sorted(xs), xs
        assert re.search(r'class="limit" data-version="1"', after), svg
        # The alert timeline: a bar per episode, how it ended, its delivery outcome.
        episodes: dict[str, str] = {}
        for a in alerts:
            key = a["alert_id"].rsplit(".", 1)[0]
            if a["status"] == "resolved":
                episodes[key] = a.get("reason") or "cleared"
            else:
                episodes.setdefault(key, "open")
        bars = {m[0]: (m[1], m[2]) for m in re.findall(
            r'<rect class="episode" data-episode="([^"]+)" data-kind="[^"]+" '
            r'data-reason="([^"]+)" data-outcome="([^"]+)"', after)}
        assert {k: r for k, (r, _) in bars.items()} == episodes, (bars, episodes)
        drift_episode = drift["alert_id"].rsplit(".", 1)[0]
        assert bars[drift_episode][1] == "delivered"
        assert all(o == "none" for k, (_, o) in bars.items() if k != drift_episode), bars
        assert "explained by x" in after or not any(a.get("attribution") for a in alerts)
        # The feature drift heatmap: a row per feature the metrics records checked, cells
        # over event time, its data quality beside it (a strip per kind of problem).
        detail = json.loads(get(f"{base}/api/models/{model}")[1])
        checked = {name for report in detail["metrics"].values()
                   for name, f in report["features"].items() if "value" in f}
        assert checked and set(detail["feature_drift"]["features"]) == checked, detail[
            "feature_drift"]
        rows = dict(re.findall(r'<g class="heat-row" data-feature="([^"]+)">(.*?)</g>', after))
        assert set(rows) == checked, rows
        for row in rows.values():
            assert re.search(r'<rect class="cell" data-ratio="[\d.e-]+"', row), row
            assert re.findall(r'<rect class="quality-strip" data-kind="(\w+)"', row) == [
                "missing", "mismatch", "out_of_range"], row
        # The last hour (#range=1h: a headless browser selects it by the address): the
        # same axis cut to the hour before the newest event time, with fewer points.
        hour = browser(f"{base}/#range=1h", tmp_path, "range-1h")
        assert re.search(r'<nav class="ranges" id="ranges" data-range="1h">', hour), hour[:3000]
        assert re.search(r'<a href="#range=1h" data-range="1h" class="selected">', hour)
        svg_hour = chart_tag(hour)
        assert attr(svg_hour, "data-range") == "1h"
        h0, h1 = float(attr(svg_hour, "data-t0")), float(attr(svg_hour, "data-t1"))
        assert h1 - h0 == pytest.approx(3_600) and h1 == pytest.approx(t1, abs=60), (h0, h1)
        assert 0 < int(attr(svg_hour, "data-points")) < int(attr(svg, "data-points"))
        assert all(h0 <= float(ts) <= h1 for ts in re.findall(r'class="alert-marker"[^>]*'
                                                              r'data-ts="([\d.]+)"', hour))
        assert 'class="alert-marker"' in after and 'data-kind="concept_drift"' in after
        assert re.search(r'class="promotion"[^>]*data-version="2"|data-version="2"[^>]*'
                         r'class="promotion"', after), after[-3000:]
        assert '<tr data-version="2">' in after
        row = after[after.index('<tr data-version="2">'):]
        row = row[:row.index("</tr>")]
        # v2's canary against v1 (2,000 pairs by default: still running) and its features;
        # a classifier's by log loss, its kind and live accuracy beside it
        metric = "log loss " if world.task != "regression" else ""
        assert re.search(rf'class="watch[^"]*">canary {metric}[\d.]+ vs v1 [\d.]+ \([\d,]+ '
                         r'pairs', row), row
        if world.task != "regression":
            assert re.search(r"<td>log loss [\d.]+ \(softmax\)</td>", row), row
            assert re.search(r"acc [\d.]+ · macro F1 [\d.]+", row), row
        assert re.search(r'<b style="width:\d+px"></b>x0 \d+%', row), row
        # each feature of the newest version: its type, drift statistic over its limit and
        # its missing share
        features = after[after.index('<table class="features"'):]
        features = features[:features.index("</table>")]
        assert re.search(r'<tr data-feature="x0"[^>]*><td>x0</td><td>numeric</td>'
                         r'<td[^>]*>psi [\d.e-]+ / [\d.e-]+</td><td>0\.0%</td>', features), features
        assert (tmp_path / "after-drift.png").stat().st_size > 10_000
    finally:
        client.close()
        trainer.terminate()
        trainer.wait(30)
