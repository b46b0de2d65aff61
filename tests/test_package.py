"""The package's shape: public surface, layout, doctests, and no unsafe loading."""

from __future__ import annotations

import doctest
import importlib
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import driftline

ROOT = Path(__file__).resolve().parent.parent


def test_public_surface_is_exactly_all():
    assert sorted(driftline.__all__) == sorted([
        "ArtifactError", "ConfigError", "DriftlineError", "LinearModel", "ModelClient",
        "ModelRegistry", "Publisher", "PublishError", "RegistryError", "RegistryUnavailable",
        "SchemaError", "Settings", "StackError", "SyncPublisher", "TopicError"])
    for name in driftline.__all__:
        assert getattr(driftline, name) is not None


def test_namespaces_come_from_the_top_level_folders(tmp_path):
    import driftline.agents
    import driftline.models

    assert Path(driftline.agents.__file__).parent.name == "agents"
    assert Path(driftline.models.__file__).parent.name == "models"
    # Outside the checkout (where the folders are not on sys.path by accident), the
    # installed distribution offers driftline.* only, never bare `agents` / `models`.
    probe = ("import importlib.util as u; import driftline.agents.join.agent, driftline.models.events; "
             "print(u.find_spec('agents'), u.find_spec('models'))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True,
                         text=True, env={k: v for k, v in os.environ.items()
                                         if k != "PYTHONPATH"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["None", "None"]


DOCTESTED = ["driftline.settings", "driftline.models.events", "driftline.models.wire",
             "driftline.agents.join.state", "driftline.agents.deadletter",
             "driftline.agents.monitor.alerting", "driftline.agents.monitor.metrics",
             "driftline.agents.monitor.core", "driftline.agents.monitor.config",
             "driftline.agents.monitor.rules.hysteresis",
             "driftline.models.linear",
             "driftline.models.training", "driftline.agents.retrain.policy",
             "driftline.simulate", "driftline.eventfile"]


@pytest.mark.parametrize("module", DOCTESTED)
def test_docstring_examples_run(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


UNSAFE = re.compile(r"pickle\.loads?\(|(^|[^.\w])eval\(|yaml\.load\(|allow_pickle\s*=\s*True"
                    r"|marshal\.loads?\(|import pickle")


@pytest.mark.reliability
def test_nothing_unpickles_or_evaluates_outside_data():
    offenders = []
    for folder in ("driftline", "agents", "models"):
        for path in (ROOT / folder).rglob("*.py"):
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if UNSAFE.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert offenders == []


def test_readme_documents_every_setting_and_ci_runs_its_test_command():
    from driftline.settings import Settings

    readme = (ROOT / "README.md").read_text()
    missing = [env for env in Settings.env_names().values() if f"`{env}`" not in readme]
    assert missing == []
    assert "./dev test" in readme and "./dev test" in (ROOT / ".ci" / "run").read_text()


def readme_blocks(marker: str, until: str = "\n## ") -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index(marker):]
    section = section[:section.index(until)]
    return re.findall(r"```(?:json|sh)\n(.*?)```", section, re.S)


def test_readme_event_examples_are_valid_events():
    from driftline.models.events import (ALERT, LABEL, MODEL_EVENT, PREDICTION, RETRAIN_REQUEST,
                                         SCORED)

    blocks = readme_blocks("<!-- event-examples -->", "**Dead letters.**")
    schemas = [PREDICTION, LABEL, SCORED, ALERT, RETRAIN_REQUEST, MODEL_EVENT]
    assert len(blocks) == len(schemas)
    for block, schema in zip(blocks, schemas):
        schema.validate(json.loads(block))


def test_readme_offline_cli_examples_run_as_written(tmp_path):
    [block] = readme_blocks("<!-- cli-examples -->")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLINE_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    for line in block.strip().splitlines():
        result = subprocess.run(shlex.split(line), cwd=tmp_path, env=env, capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 0, f"{line}\n{result.stdout}\n{result.stderr}"
    assert (tmp_path / "report" / "report.png").stat().st_size > 20_000
    assert json.loads(result.stdout)["alerts"] >= 1
