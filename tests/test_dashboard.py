"""The dashboard in a real headless Chromium, against a live worker, trainer and stream."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request

import pytest
from kafka_io import create_topics

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

        service = ProductionService(None, lambda: client.model, world, model=model,
                                    label_delay=100, rate=1_000)
        asyncio.run(serve(3_000))
        time.sleep(2)
        before = browser(f"{base}/", tmp_path, "before-drift")
        points = [int(n) for n in re.findall(r'class="chart"[^>]*data-points="(\d+)"', before)
                  + re.findall(r'data-points="(\d+)"[^>]*class="chart"', before)]
        assert points and points[0] > 0, before[-3000:]
        assert 'class="alert-marker"' not in before

        asyncio.run(serve(20_000, until=lambda: service.stats.by_version.get(2, 0) >= 1_500))
        assert service.stats.by_version.get(2, 0) >= 1_500, worker.log()
        time.sleep(2)
        after = browser(f"{base}/", tmp_path, "after-drift")
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
