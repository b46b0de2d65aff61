"""The product as users install it (issue 29): the wheel, in a fresh virtual environment
outside the source tree, run from another folder so that nothing is found by accident.

The editable install the rest of the suite runs on finds every folder of the tree, so it
cannot see what the wheel leaves out: last round a hand-kept package list dropped
``driftline.agents.delivery`` and no installed worker could start while the suite was
green. Here:

* the wheel is built from exactly what the Dockerfile copies (its ``COPY`` lines), the way
  ``docker build`` would, and holds every file of ``driftline/``, ``agents/`` and
  ``models/``;
* ``pip install 'driftline-*.whl[embedded]'`` into a new venv; every module imports from
  there, none from the tree;
* the loop runs from the installed ``driftline`` command only: the embedded stack, each
  driftline service of ``docker-compose.yml`` with its ``command:`` and environment
  (worker, trainer, delivery), a model, a published drift, alerts delivered to a webhook
  receiver and to Debian's Alertmanager, a retrain and a promotion, and every
  service's ``healthcheck`` command.

Run alone: ``./dev test tests/test_installed.py -s`` prints the measured figures.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
import pytest
import yaml
from kafka_io import read_all
from receivers import Receiver
from test_alertmanager import BINARY as ALERTMANAGER
from test_alertmanager import CONFIG as ALERTMANAGER_CONFIG
from test_delivery_agent import ReceiverThread, wait_for

from driftline.ports import free_port
from driftline.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("driftline", "agents", "models")  # folder -> driftline, .agents, .models
PACKAGE_OF = {"driftline": "driftline", "agents": "driftline/agents",
              "models": "driftline/models"}


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without driftline's variables or a path into the tree."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("DRIFTLINE_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(extra)
    return env


def dockerfile_copies() -> list[tuple[list[str], str]]:
    """The Dockerfile's ``COPY src... dest`` lines, relative to its WORKDIR."""
    copies = []
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        parts = line.split()
        if parts and parts[0] == "COPY" and not any(p.startswith("--") for p in parts):
            copies.append((parts[1:-1], parts[-1]))
    return copies


def tree_files() -> list[str]:
    """Every file of the three source folders that the wheel must hold, as its path in
    the wheel (``agents/join/state.py`` -> ``driftline/agents/join/state.py``)."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard",
                             *SOURCES], cwd=ROOT, capture_output=True, text=True)
    if listed.returncode == 0 and listed.stdout.strip():
        paths = listed.stdout.split()
    else:  # not a git checkout: walk the folders
        paths = [p.relative_to(ROOT).as_posix() for folder in SOURCES
                 for p in (ROOT / folder).rglob("*") if p.is_file()]
    wanted = []
    for path in paths:
        if "__pycache__" in path or path.endswith(".pyc") or not (ROOT / path).exists():
            continue
        folder, _, rest = path.partition("/")
        wanted.append(f"{PACKAGE_OF[folder]}/{rest}")
    return sorted(wanted)


@dataclass
class Install:
    wheel: Path
    venv: Path
    workdir: Path  # outside the tree: every installed command runs here
    seconds: dict[str, float]

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)

    def run(self, *args: str, env: dict[str, str] | None = None, timeout: float = 120,
            check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(list(args), cwd=self.workdir, env=env or clean_env(),
                              capture_output=True, text=True, timeout=timeout)
        if check:
            assert done.returncode == 0, f"{args}: {done.stdout[-3000:]}{done.stderr[-3000:]}"
        return done


@pytest.fixture(scope="module")
def install(tmp_path_factory) -> Install:
    """Build the wheel from what the Dockerfile copies, install it with its extras in a
    new venv, outside the tree."""
    base = tmp_path_factory.mktemp("installed")
    stage, dist, workdir = base / "app", base / "dist", base / "elsewhere"
    for folder in (stage, dist, workdir):
        folder.mkdir()
    seconds = {}
    started = time.monotonic()
    for sources, dest in dockerfile_copies():
        target = stage / dest
        for source in sources:
            if (ROOT / source).is_dir():
                shutil.copytree(ROOT / source, target if not dest.endswith("/") else
                                target / Path(source).name,
                                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / source, target / Path(source).name)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                            str(stage), "-w", str(dist)], cwd=workdir, env=clean_env(),
                           capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stdout + build.stderr
    [wheel] = dist.glob("driftline-*.whl")
    seconds["wheel"] = time.monotonic() - started
    started = time.monotonic()
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=clean_env())
    done = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                           "--disable-pip-version-check", f"{wheel}[embedded]"],
                          cwd=workdir, env=clean_env(), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    seconds["venv"] = time.monotonic() - started
    return Install(wheel, venv, workdir, seconds)


def test_the_wheel_holds_every_file_of_the_tree(install):
    with zipfile.ZipFile(install.wheel) as whl:
        names = set(whl.namelist())
    missing = [path for path in tree_files() if path not in names]
    assert missing == [], f"in the tree, not in the wheel: {missing}"
    assert "driftline/agents/delivery/agent.py" in names  # the one the hand-kept list lost
    assert "driftline/dashboard.html" in names and "driftline/embedded/broker/pom.xml" in names
    assert not [n for n in names if n.split("/")[0] in ("agents", "models", "tests")]
    packages = sorted({n.rsplit("/", 1)[0] for n in names if n.endswith("/__init__.py")})
    print(f"\nwheel {install.wheel.name}: {len(names)} files, {len(packages)} packages "
          f"(built in {install.seconds['wheel']:.1f} s, venv in {install.seconds['venv']:.1f} s)")


IMPORT_ALL = """
import importlib, importlib.util, json, pkgutil, sys
import driftline
names = ["driftline"] + [m.name for m in pkgutil.walk_packages(driftline.__path__, "driftline.")]
files = {}
for name in names:
    if name.endswith(".__main__"):  # runs the CLI when imported: found, not run
        files[name] = importlib.util.find_spec(name).origin
    else:
        files[name] = getattr(importlib.import_module(name), "__file__", None)
print(json.dumps(files))
"""


def test_every_module_imports_from_the_install_and_none_from_the_tree(install):
    out = install.run(install.bin("python"), "-c", IMPORT_ALL)
    files = json.loads(out.stdout)
    in_tree = sum(1 for folder in SOURCES for _ in (ROOT / folder).rglob("*.py"))
    assert len(files) == in_tree, sorted(files)
    site = str(install.venv)
    assert [n for n, f in files.items() if not str(f).startswith(site)] == []


KINDS_PROBE = """
import json, sys
import numpy as np
from driftline import ArtifactError
from driftline.models import kinds
data = open(sys.argv[1], "rb").read()
try:
    model = kinds.load("onnx", data)
except ArtifactError as exc:
    print(json.dumps({"error": str(exc)}))
else:
    print(json.dumps({"module": type(model).__module__,
                      "predicted": np.asarray(model.predict(np.array(json.loads(sys.argv[2]))))
                      .tolist()}))
"""


def test_model_kinds_from_the_install_the_onnx_extra_and_a_plugin(install, tmp_path):
    """The ``onnx`` kind as users get it: without the extra, loading names it; with
    ``pip install 'driftline[onnx]'`` the same file predicts what it does here. A kind of
    another package is found by its entry point in the installed driftline."""
    pytest.importorskip("skl2onnx")
    pytest.importorskip("onnxruntime")
    from test_onnx import regression

    from driftline.models.onnx import OnnxModel

    _, data, X = regression()
    model = OnnxModel(data, task="regression")
    (tmp_path / "m.onnx").write_bytes(model.to_bytes())
    rows = json.dumps(X[:5].tolist())
    python = install.bin("python")
    if install.run(python, "-c", "import onnxruntime", check=False).returncode != 0:
        out = json.loads(install.run(python, "-c", KINDS_PROBE, str(tmp_path / "m.onnx"),
                                     rows).stdout)
        assert out == {"error": "the onnx model kind needs onnxruntime: "
                                "pip install 'driftline[onnx]'"}
        started = time.monotonic()
        install.run(python, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    f"{install.wheel}[onnx]", timeout=600)
        print(f"\npip install driftline[onnx] into the installed venv: "
              f"{time.monotonic() - started:.1f} s")
    out = json.loads(install.run(python, "-c", KINDS_PROBE, str(tmp_path / "m.onnx"),
                                 rows).stdout)
    assert out["module"] == "driftline.models.onnx"
    assert np.allclose(out["predicted"], model.predict(X[:5]), atol=1e-6)

    plugin = tmp_path / "plugin"
    (plugin / "mykinds-1.0.dist-info").mkdir(parents=True)
    (plugin / "mykinds.py").write_text(
        "class Half:\n    kind, task = 'half', 'regression'\n"
        "    def __init__(self):\n        self.feature_names, self.version, self.meta = "
        "['x'], None, {}\n"
        "    def predict(self, X):\n        return [r[0] / 2 for r in X]\n"
        "    def to_bytes(self):\n        return b'half'\n"
        "    @classmethod\n    def from_bytes(cls, data):\n        return cls()\n")
    (plugin / "mykinds-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: mykinds\nVersion: 1.0\n")
    (plugin / "mykinds-1.0.dist-info" / "entry_points.txt").write_text(
        "[driftline.model_kinds]\nhalf = mykinds:Half\n")
    probe = ("from driftline.models import kinds; m = kinds.load('half', b'half'); "
             "print(kinds.kind_of(m), m.predict([[3.0]]), kinds.get('linear').__name__)")
    out = install.run(python, "-c", probe, env=clean_env(PYTHONPATH=str(plugin)))
    assert out.stdout.split() == ["half", "[1.5]", "LinearModel"]


def test_every_driftline_command_of_the_compose_file_answers_help(install):
    for service, spec in driftline_services().items():
        out = install.run(install.bin("driftline"), *spec["command"], "--help")
        assert "Usage" in out.stdout, service


def driftline_services() -> dict[str, dict]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return {name: spec for name, spec in compose["services"].items()
            if spec.get("image") == "driftline:local"}


def compose_env(spec: dict) -> dict[str, str]:
    """A service's environment with Compose's ``${VAR:-default}`` at its default;
    ``${VAR:?message}`` (a required secret) is left for the caller to set."""
    return {k: re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(v))
            for k, v in (spec.get("environment") or {}).items()}


class Service:
    def __init__(self, install: Install, name: str, args: list[str], env: dict[str, str],
                 log: Path) -> None:
        self.name = name
        self.log_path = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen([install.bin("driftline"), *args], cwd=install.workdir,
                                         env=env, stdout=out, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


def start_stack(install: Install, log: Path) -> tuple[Service, dict[str, str]]:
    """``driftline stack up`` on free ports; its printed URLs."""
    stack = Service(install, "stack", ["stack", "up", "--kafka-port", "0", "--redis-port", "0"],
                    clean_env(), log)
    urls: dict[str, str] = {}

    def printed() -> bool:
        for line in log.read_text(errors="replace").splitlines():
            name, sep, value = line.partition("=")
            if sep and name.startswith("DRIFTLINE_"):
                urls[name] = value
        return {"DRIFTLINE_KAFKA_URL", "DRIFTLINE_REDIS_URL"} <= set(urls)

    assert wait_for(printed, 60), stack.log()
    return stack, urls


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@pytest.mark.skipif(ALERTMANAGER is None, reason="no Alertmanager binary: apt-get install -y "
                    "prometheus-alertmanager to run this")
def test_the_loop_runs_from_the_installed_commands(install, tmp_path):
    started = time.monotonic()
    hook, oncall = Receiver(), Receiver()
    with ReceiverThread(hook), ReceiverThread(oncall):
        am_port = free_port()
        (tmp_path / "am.yml").write_text(ALERTMANAGER_CONFIG.format(url=oncall.url + "/oncall"))
        am_log = open(tmp_path / "am.log", "wb")
        am = subprocess.Popen([ALERTMANAGER, f"--config.file={tmp_path / 'am.yml'}",
                               f"--storage.path={tmp_path / 'am-data'}",
                               f"--web.listen-address=127.0.0.1:{am_port}",
                               "--cluster.listen-address="], stdout=am_log,
                              stderr=subprocess.STDOUT)
        am_log.close()
        stack, urls = start_stack(install, tmp_path / "stack.log")
        services: list[Service] = []
        try:
            run_loop(install, tmp_path, urls, hook, oncall, f"http://127.0.0.1:{am_port}",
                     services, started)
        finally:
            for service in services:
                service.stop()
            stack.stop()
            am.terminate()
            am.wait(10)


def run_loop(install: Install, tmp_path: Path, urls: dict[str, str], hook: Receiver,
             oncall: Receiver, am_url: str, services: list, started: float) -> None:
    tag = uuid.uuid4().hex[:8]
    token = "t-" + uuid.uuid4().hex  # the worker's API token (compose requires one)
    web_port = free_port()
    # Where the compose file names its own hosts, this machine's; the rest as it says.
    local = {"DRIFTLINE_KAFKA_URL": urls["DRIFTLINE_KAFKA_URL"],
             "DRIFTLINE_REDIS_URL": urls["DRIFTLINE_REDIS_URL"],
             "DRIFTLINE_TOPIC_PREFIX": f"i{tag}.", "DRIFTLINE_GROUP_ID": f"i{tag}",
             "DRIFTLINE_REGISTRY_PREFIX": f"i{tag}:", "DRIFTLINE_METRICS_INTERVAL": "0.5",
             "DRIFTLINE_WEB_HOST": "127.0.0.1"}
    # (the compose file allows the hosts its own port 6066 is reached by: here, ours)
    wiring = {"worker": {"DRIFTLINE_WEB_PORT": str(web_port), "DRIFTLINE_API_TOKEN": token,
                         "DRIFTLINE_WEB_ALLOWED_HOSTS": f"127.0.0.1:{web_port}"},
              "delivery": {"DRIFTLINE_ALERTMANAGER_URL": am_url,
                           "DRIFTLINE_ALERT_WEBHOOKS": hook.url + "/hook",
                           "DRIFTLINE_WEBHOOK_SECRET": "installed-secret",
                           "DRIFTLINE_DASHBOARD_URL": f"http://127.0.0.1:{web_port}/"}}
    envs = {}
    for name, spec in driftline_services().items():
        env = {**compose_env(spec), **local, **wiring.get(name, {})}
        # ${VAR:?...} (the secrets the compose file requires) must be wired above.
        assert not [k for k, v in env.items() if "${" in v], (name, env)
        envs[name] = clean_env(**env)
        services.append(Service(install, name, spec["command"], envs[name],
                                tmp_path / f"{name}.log"))
    base_env = clean_env(**local)
    settings = Settings.from_env(local)

    def logs() -> str:
        return "".join(f"\n--- {s.name}\n{s.log()}" for s in services)

    # The health checks of the compose file, from the install: every group ready.
    for name, spec in driftline_services().items():
        check = spec["healthcheck"]["test"][1:]  # ["CMD", "driftline", ...]
        assert check[0] == "driftline"
        assert wait_for(lambda check=check, name=name: install.run(
            install.bin("driftline"), *check[1:], env=envs[name], check=False).returncode == 0,
            90), f"{name} never healthy{logs()}"

    # v1 of houses, trained before the drift; then the log of a service serving it.
    install.run(install.bin("python"), "-c",
                "from driftline import ModelRegistry\n"
                "from driftline.simulate import World, bootstrap\n"
                f"r = ModelRegistry.from_url({urls['DRIFTLINE_REDIS_URL']!r}, "
                f"prefix={local['DRIFTLINE_REGISTRY_PREFIX']!r})\n"
                "assert bootstrap(r, 'houses', World('abrupt', drift_at=6000, seed=0)) == 1\n",
                env=base_env)
    install.run(install.bin("driftline"), "simulate", "--events", "16000", "--drift-at", "6000",
                "--out", str(tmp_path / "log.jsonl"), env=base_env)
    published = time.monotonic()
    out = install.run(install.bin("driftline"), "publish", str(tmp_path / "log.jsonl"),
                      "--json", env=base_env)
    assert json.loads(out.stdout)["predictions"] == 16_000, out.stdout

    def promoted() -> dict | None:
        out = install.run(install.bin("driftline"), "models", "show", "houses", "--json",
                          env=base_env, check=False)
        if out.returncode != 0:
            return None
        versions = json.loads(out.stdout)
        return next((v for v in versions if v["version"] > 1
                     and "champion" in (v.get("aliases") or [])), None)

    assert wait_for(lambda: promoted() is not None, 180), f"no promotion{logs()}"
    promotion_s = time.monotonic() - published

    alerts = {}
    alert_time = {}
    for record in read_all(settings, "alerts"):
        value = orjson.loads(record.value)
        alerts[value["alert_id"]] = value
        alert_time[value["alert_id"]] = record.timestamp / 1000
    drift = [a for a in alerts.values() if a["kind"] in ("concept_drift", "metric_threshold")]
    assert drift and any(a.get("attribution") for a in drift), alerts

    def hooked() -> set[str]:
        return {r.json()["alert_id"] for r in hook.received}

    # Every alert reaches the webhook, each exactly as the monitor published it.
    assert wait_for(lambda: hooked() >= set(alerts), 60), (set(alerts) - hooked(), logs())
    for request in hook.received:
        body = request.json()
        assert {k: body[k] for k in alerts[body["alert_id"]]} == alerts[body["alert_id"]]
        assert request.headers["X-Driftline-Signature"].startswith("v1=")
    # ... and Alertmanager notifies on-call of every firing episode.
    firing = {a["alert_id"].rsplit(".", 1)[0] for a in alerts.values()
              if a["status"] == "firing"}

    def notified() -> set[str]:
        return {alert["labels"]["alert_id"] for r in oncall.received
                for alert in r.json()["alerts"]}

    assert wait_for(lambda: notified() >= firing, 60), (firing - notified())
    outcomes = [orjson.loads(r.value) for r in read_all(settings, "alert_deliveries")]
    assert {(o["outcome"]) for o in outcomes} == {"delivered"}, outcomes
    assert len(outcomes) >= 2 * len(alerts)

    # The worker's dashboard and API, served from the installed package's data.
    import urllib.request

    request = urllib.request.Request(f"http://127.0.0.1:{web_port}/",
                                     headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert b"<html" in response.read().lower()

    latency = [r.at - alert_time[r.json()["alert_id"]] for r in hook.received]
    figures = {"wall_s": round(time.monotonic() - started, 1),
               "publish_to_promotion_s": round(promotion_s, 1),
               "alerts": len(alerts), "webhook_posts": len(hook.received),
               "alertmanager_notifications": len(oncall.received),
               "alert_deliveries_records": len(outcomes),
               "alert_to_webhook_ms_p50": round(1000 * quantile(latency, 0.5)),
               "alert_to_webhook_ms_p99": round(1000 * quantile(latency, 0.99))}
    print("\ninstalled loop:", json.dumps(figures))
    for service in services:
        assert service.proc.poll() is None, f"{service.name} exited\n{service.log()}"
