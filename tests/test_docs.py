"""The documentation site (issue 31): it builds with ``mkdocs build --strict``, its generated
reference pages are what the code says now, and the reference names every setting, CLI
command and monitor TOML key. The README tests in test_package.py, test_schema.py,
test_monitor_config.py and test_clients.py read the pages their content moved to."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "reference"


def generator():
    path = ROOT / "docs" / "gen_reference.py"
    spec = importlib.util.spec_from_file_location("gen_reference", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gen():
    return generator()


@pytest.fixture(scope="module")
def pages(gen) -> dict[str, str]:
    return gen.pages()


def test_generated_reference_pages_are_current(pages):
    stale = [name for name, text in pages.items()
             if not (REFERENCE / name).exists() or (REFERENCE / name).read_text() != text]
    assert stale == [], (f"stale reference pages {stale}: run "
                         f"`.venv/bin/python docs/gen_reference.py` and commit them")
    extra = sorted({p.name for p in REFERENCE.glob("*.md")} - set(pages))
    assert extra == [], f"pages under docs/reference/ that the generator does not write: {extra}"


def test_reference_names_every_setting(pages):
    from driftline.settings import Settings

    missing = [env for env in Settings.env_names().values()
               if f"`{env}`" not in pages["settings.md"]]
    assert missing == []


def test_reference_names_every_cli_command_and_option(gen, pages):
    import click

    text = pages["cli.md"]
    names = [name for name, _ in gen.commands()]
    assert "driftline worker" in names and "driftline alerts silence" in names
    for name, command in gen.commands():
        assert f"\n## {name} " in text, name
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                assert param.opts[0] in text, f"{name} {param.opts[0]}"


def test_reference_names_every_monitor_toml_key(gen, pages):
    from msgspec import inspect as mi

    from driftline.agents.monitor import config

    text = pages["monitor-toml.md"]
    keys = gen.monitor_keys()
    assert "threshold.factor" in keys and "limits.max_models" in keys
    for table, cls, _ in gen.monitor_tables():
        section = text[text.index(f"## `{table}`"):]
        section = section[:section.find("\n## ", 1) if "\n## " in section[1:] else None]
        for f in mi.type_info(cls).fields:
            assert f"| `{f.name}` |" in section, f"{table} {f.name}"
    assert {t for t, _, _ in gen.monitor_tables()} >= {
        f"[defaults.{name}] / [models.NAME.{name}]" for name in config.SUB_TABLES}


def test_reference_names_every_metric_route_and_schema(gen, pages):
    import driftline.models.wire.schema as ws

    for family in gen.metric_families():
        assert f"`{family.name}" in pages["metrics.md"], family.name
    assert len(gen.metric_families()) >= 25
    for method, path in gen.routes():
        assert f"| `{method}` | `{path}` |" in pages["http-api.md"]
    assert ("GET", "/healthz") in gen.routes() and ("DELETE", "/api/silences/{silence_id}") \
        in gen.routes()
    for name in ws.SCHEMAS:
        assert f"\n## {name} " in pages["schemas.md"]


def test_every_page_is_in_the_nav_and_the_site_builds_strict(tmp_path):
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    # mkdocs.yml names a Python function for the mermaid fence (!!python/name:...): read it
    # as a plain string here, without importing anything.
    Loader.add_multi_constructor("tag:yaml.org,2002:python/",
                                 lambda loader, suffix, node: suffix)
    nav = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=Loader)["nav"]

    def files(entry):
        if isinstance(entry, str):
            yield entry
        elif isinstance(entry, list):
            for item in entry:
                yield from files(item)
        elif isinstance(entry, dict):
            for value in entry.values():
                yield from files(value)

    listed = set(files(nav))
    pages = {str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md")}
    assert pages - listed == set() and listed - pages == set()
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                             str(tmp_path / "site")], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    for page in ("index.html", "reference/settings/index.html", "contract/index.html",
                 "changelog/index.html"):
        assert (tmp_path / "site" / page).stat().st_size > 5_000, page
    assert "Keep a Changelog" in (tmp_path / "site" / "changelog" / "index.html").read_text()


def test_short_readme_is_short_and_routes_into_the_docs():
    # README.short.md becomes README.md when the long README's edits are ported (issue 31).
    short = ROOT / "README.short.md"
    text = (short if short.exists() else ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    assert "./dev demo" in text and "./dev test" in text and "Publisher" in text
    for link in ("docs/getting-started.md", "docs/contract.md", "docs/reference/settings.md"):
        assert link in text and (ROOT / link).exists(), link
