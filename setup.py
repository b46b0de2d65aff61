"""Which packages and data files the wheel holds: everything under the three roots,
found here rather than listed by hand (issue 29: a hand-kept list left
``driftline.agents.delivery`` out of the wheel, and no installed worker could start).

``driftline`` comes from ``driftline/``, ``driftline.agents`` from ``agents/`` and
``driftline.models`` from ``models/`` (DESIGN.md: nothing is installed as a bare
``agents`` or ``models``). A package is a folder with an ``__init__.py``; every other
file below a package (``dashboard.html``, ``broker/pom.xml``) ships as its data.
tests/test_installed.py builds the wheel and compares it with the tree.
Everything else about the project is in pyproject.toml.
"""

from __future__ import annotations

import os
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent
ROOTS = {"driftline": "driftline", "driftline.agents": "agents", "driftline.models": "models"}
SKIP_DIRS = {"__pycache__"}
SKIP_SUFFIXES = (".pyc", ".pyo")


def discover() -> tuple[list[str], dict[str, list[str]]]:
    """(packages, package data) under ROOTS."""
    packages: list[str] = []
    data: dict[str, list[str]] = {}
    for root_name, folder in ROOTS.items():
        for here, dirs, files in os.walk(HERE / folder):
            dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("."))
            path = Path(here)
            rel = path.relative_to(HERE / folder)
            if (path / "__init__.py").is_file():
                packages.append(".".join([root_name, *rel.parts]))
            owner = _owner(path, HERE / folder, root_name)
            for name in sorted(files):
                if name.endswith(".py") or name.endswith(SKIP_SUFFIXES) or name.startswith("."):
                    continue
                package, package_dir = owner
                data.setdefault(package, []).append(
                    (path / name).relative_to(package_dir).as_posix())
    return packages, data


def _owner(path: Path, top: Path, root_name: str) -> tuple[str, Path]:
    """The nearest package at or above ``path``, and its folder."""
    while not (path / "__init__.py").is_file() and path != top:
        path = path.parent
    return ".".join([root_name, *path.relative_to(top).parts]), path


PACKAGES, PACKAGE_DATA = discover()
setup(packages=PACKAGES, package_dir=ROOTS, package_data=PACKAGE_DATA)
