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


EXPORTED = sorted([
    "ArtifactError", "ConfigError", "DriftlineError", "LinearModel", "LogisticModel",
    "ModelClient", "ModelRegistry", "Publisher", "PublishError", "RegistryError",
    "RegistryUnavailable", "SchemaError", "Settings", "SoftmaxModel", "StackError",
    "SyncPublisher", "TopicError"], key=str.casefold)

# Submodules that `import driftline` and the exported names bind as attributes of the
# package (importing a submodule always does): accounted for here, as httpx lists its
# included private members, so that a new one is a decision, not an accident.
INCLUDED_MODULES = ["errors", "kafka", "model_client", "models", "outgoing", "publisher",
                    "redis_client", "retry", "settings", "settings_sections"]


def test_public_surface_is_exactly_all():
    assert sorted(driftline.__all__, key=str.casefold) == EXPORTED
    for name in driftline.__all__:
        assert getattr(driftline, name) is not None
    assert set(driftline.__all__) <= set(dir(driftline))


def test_all_imports_are_exported():
    """httpx's tests/test_exported_members.py: what vars() says is the public surface, in
    a fresh interpreter so that no other test's imports add to it."""
    probe = ("import driftline, json; [getattr(driftline, n) for n in driftline.__all__]; "
             "print(json.dumps(sorted(vars(driftline))))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    members = [m for m in json.loads(out.stdout) if not m.startswith("_")]
    assert sorted(members, key=str.casefold) == sorted(EXPORTED + INCLUDED_MODULES,
                                                       key=str.casefold)


def test_no_public_name_outside_all_even_after_every_import():
    """In this process every submodule has been imported by now; still, each public
    attribute of the package is an exported name or a submodule, never a helper."""
    import types

    for name, value in vars(driftline).items():
        if name.startswith("_") or name in driftline.__all__:
            continue
        assert isinstance(value, types.ModuleType), name
        assert value.__name__ == f"driftline.{name}", name


@pytest.mark.parametrize("module", ["driftline", "driftline.models.registry",
                                    "driftline.model_client"])
def test_the_registry_and_serving_do_not_import_kafka(module):
    """The registry core sits below Kafka (issue 14): neither it nor `import driftline`
    nor ModelClient pulls in aiokafka or Faust; driftline.model_events' sink brings Kafka."""
    probe = (f"import sys, {module}; print(sorted({{m.partition('.')[0] for m in sys.modules}}"
             f" & {{'aiokafka', 'faust', 'mode', 'kafka'}}))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_models_import_nothing_above_them():
    """models/ imports from driftline's leaf modules only (errors, the Redis client
    factory, settings) and from itself: never the SDK, Kafka, the agents or the CLI."""
    import ast

    allowed = {"driftline.errors", "driftline.redis_client", "driftline.settings"}
    offenders = []
    for path in (ROOT / "models").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level
                     else [])
            for name in names:
                if (name.startswith("driftline") and name not in allowed
                        and not name.startswith("driftline.models")) or name.startswith(
                        ("aiokafka", "faust")):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}")
    assert offenders == []


def test_namespaces_come_from_the_top_level_folders(tmp_path):
    import driftline.agents
    import driftline.models

    assert Path(driftline.agents.__file__).parent.name == "agents"
    assert Path(driftline.models.__file__).parent.name == "models"
    # Outside the checkout (where the folders are not on sys.path by accident), the
    # installed distribution offers driftline.* only, never bare `agents` / `models`.
    probe = ("import importlib.util as u; "
             "import driftline.agents.join.agent, driftline.models.wire; "
             "print(u.find_spec('agents'), u.find_spec('models'))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True,
                         text=True, env={k: v for k, v in os.environ.items()
                                         if k != "PYTHONPATH"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["None", "None"]


FOLDERS = {"driftline": ROOT / "driftline", "driftline.agents": ROOT / "agents",
           "driftline.models": ROOT / "models"}


def modules_with_examples() -> list[str]:
    """Every module whose docstrings hold an example (``>>>``), found rather than listed:
    a module that gains one is tested without anyone remembering to add it."""
    found = []
    for package, folder in FOLDERS.items():
        for path in sorted(folder.rglob("*.py")):
            if ">>> " in path.read_text():
                parts = path.relative_to(folder).with_suffix("").parts
                found.append(".".join([package, *parts]).removesuffix(".__init__"))
    return found


DOCTESTED = modules_with_examples()


@pytest.mark.parametrize("module", DOCTESTED)
def test_docstring_examples_run(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    # Examples marked +SKIP need a running service; a module with any other must run some.
    source = importlib.import_module(module).__file__
    assert source is not None
    runnable = [line for line in Path(source).read_text().splitlines()
                if ">>> " in line and "+SKIP" not in line]
    assert result.attempted >= (1 if runnable else 0)


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


def documentation() -> list[Path]:
    """The documentation's pages, the site's first (docs/**/*.md), then README.md: content
    moved from the README to the site (issue 31) is checked where it lives now."""
    return [*sorted((ROOT / "docs").rglob("*.md")), ROOT / "README.md"]


def test_readme_documents_every_setting_and_ci_runs_its_test_command():
    from driftline.settings import Settings

    docs = "\n".join(path.read_text() for path in documentation())
    missing = [env for env in Settings.env_names().values() if f"`{env}`" not in docs]
    assert missing == []
    readme = (ROOT / "README.md").read_text()
    assert "./dev test" in readme and "./dev test" in (ROOT / ".ci" / "run").read_text()


def readme_blocks(marker: str | tuple[str, ...], until: str = "\n## ") -> list[str]:
    """The ```json and ```sh blocks from ``marker`` (or the first of several found) to
    ``until`` (or the page's end), in the first page of the documentation that has it."""
    markers = (marker,) if isinstance(marker, str) else marker
    for path in documentation():
        text = path.read_text()
        found = next((m for m in markers if m in text), None)
        if found is None:
            continue
        section = text[text.index(found):]
        if until in section:
            section = section[:section.index(until)]
        return re.findall(r"```(?:json|sh)\n(.*?)```", section, re.S)
    raise AssertionError(f"no page of the documentation has {markers}")


def test_readme_event_examples_are_valid_events():
    from driftline.models.wire import (
        ALERT,
        LABEL,
        MODEL_EVENT,
        PREDICTION,
        RETRAIN_REQUEST,
        SCORED_PAIR,
    )

    blocks = readme_blocks("<!-- event-examples -->", "**Dead letters.**")
    schemas = [PREDICTION, LABEL, SCORED_PAIR, ALERT, RETRAIN_REQUEST, MODEL_EVENT]
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
