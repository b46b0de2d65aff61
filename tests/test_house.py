"""The house: one room for each thing, read statically (``ast``, nothing imported).

Over every module of ``driftline`` (``driftline/``), ``driftline.agents`` (``agents/``) and
``driftline.models`` (``models/``):

* no import cycle, function-local imports and imports under ``if TYPE_CHECKING:``
  included: a lazy import hides a cycle from Python at start-up, not from the design, and a
  type-only import is still a module that knows one above it (a signature that names its
  class). Not counted: an edge from a module to a package it sits in (``from
  driftline.models.wire import encode`` inside ``wire/codec.py``: Python runs the package
  first anyway);
* no module over :data:`MAX_LINES` lines (STYLE.md: past ~400 a module is usually two);
* the runtime never imports the embedded development stack (:data:`EMBEDDED`): only the
  stack itself and the commands that start it (:data:`STARTS_THE_STACK`) may, and those
  only inside a function, when the command runs. A module name in a string
  (``importlib.import_module``, ``python -m``) counts as an import here.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ROOTS = {"driftline": ROOT / "driftline", "driftline.agents": ROOT / "agents",
         "driftline.models": ROOT / "models"}
MAX_LINES = 400
EMBEDDED = "driftline.embedded"
# `driftline stack up`, `driftline up` and `driftline demo`. Nothing else: the demo's own
# module (driftline.demo) and the simulator run against any stack and do not start one.
STARTS_THE_STACK = frozenset({"driftline.cli.embedded"})


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the module imported (a known module, or the nearest known package)
    line: int
    local: bool  # inside a function
    type_checking: bool  # under `if TYPE_CHECKING:`

    def __str__(self) -> str:
        return f"{self.source}:{self.line} -> {self.target}"


def find_modules(roots: dict[str, Path]) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` below ``roots`` (name -> folder)."""
    found = {}
    for name, folder in roots.items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            if "__pycache__" in parts:
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((name, *parts))] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


class _Visitor(ast.NodeVisitor):
    def __init__(self, module: str, package: str, known: dict[str, Path]) -> None:
        self.module, self.package, self.known = module, package, known
        self.depth = 0
        self.type_checking = False
        self.imports: list[Import] = []
        self.strings: list[tuple[str, int]] = []

    def _function(self, node: ast.AST) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_If(self, node: ast.If) -> None:
        if not _is_type_checking(node.test):
            self.generic_visit(node)
            return
        self.visit(node.test)
        outer, self.type_checking = self.type_checking, True
        for child in node.body:
            self.visit(child)
        self.type_checking = outer
        for child in node.orelse:
            self.visit(child)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.package.split(".")
            base = base[:len(base) - (node.level - 1)]
            base_name = ".".join([*base, *([node.module] if node.module else [])])
        else:
            base_name = node.module or ""
        for alias in node.names:
            candidate = f"{base_name}.{alias.name}"
            self._add(candidate if candidate in self.known else base_name, node.lineno)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str):
            self.strings.append((node.value, node.lineno))

    def _add(self, name: str, line: int) -> None:
        while name and name not in self.known:  # `driftline.x.function` -> driftline.x
            name = name.rpartition(".")[0]
        if name:
            self.imports.append(Import(self.module, name, line, self.depth > 0,
                                       self.type_checking))


def scan(roots: dict[str, Path]) -> tuple[dict[str, Path], list[Import],
                                          list[tuple[str, str, int]]]:
    """(modules, their imports of each other, their string constants: module, text, line)."""
    known = find_modules(roots)
    imports: list[Import] = []
    strings: list[tuple[str, str, int]] = []
    for module, path in known.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        visitor = _Visitor(module, package, known)
        visitor.visit(ast.parse(path.read_text(), str(path)))
        imports += visitor.imports
        strings += [(module, text, line) for text, line in visitor.strings]
    return known, imports, strings


def edges(imports: list[Import]) -> dict[str, dict[str, Import]]:
    """The import graph: source -> target -> the first import that makes the edge."""
    graph: dict[str, dict[str, Import]] = {}
    for imp in imports:
        if imp.target == imp.source:
            continue
        if imp.source.startswith(imp.target + "."):  # the package it sits in
            continue
        graph.setdefault(imp.source, {}).setdefault(imp.target, imp)
    return graph


def cycles(graph: dict[str, dict[str, Import]]) -> list[list[Import]]:
    """One shortest cycle through each strongly connected group of modules (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def connect(v: str) -> None:  # recursive: fine for a few hundred modules
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return [_shortest_cycle(graph, set(group), group[0]) for group in sorted(groups)]


def _shortest_cycle(graph: dict[str, dict[str, Import]], group: set[str],
                    start: str) -> list[Import]:
    paths: dict[str, list[Import]] = {start: []}
    frontier = [start]
    while frontier:
        following = []
        for v in frontier:
            for w, imp in sorted(graph.get(v, {}).items()):
                if w == start:
                    return paths[v] + [imp]
                if w in group and w not in paths:
                    paths[w] = paths[v] + [imp]
                    following.append(w)
        frontier = following
    raise AssertionError(f"{start} is in a cycle, but none was found")


def embedded_imports(imports: list[Import], strings: list[tuple[str, str, int]]) -> list[str]:
    """Where a module outside the embedded stack imports it and may not."""
    def inside(name: str) -> bool:
        return name == EMBEDDED or name.startswith(EMBEDDED + ".")

    offenders = []
    for imp in imports:
        if inside(imp.source) or not inside(imp.target):
            continue
        if imp.source in STARTS_THE_STACK and (imp.local or imp.type_checking):
            continue
        offenders.append(str(imp))
    dotted = re.compile(re.escape(EMBEDDED) + r"(\.\w+)*")
    for module, text, line in strings:
        if not inside(module) and module not in STARTS_THE_STACK and dotted.fullmatch(text):
            offenders.append(f"{module}:{line} -> {text!r} (a string)")
    return offenders


@pytest.fixture(scope="module")
def house():
    return scan(ROOTS)


def test_no_import_cycle(house):
    _, imports, _ = house
    found = cycles(edges(imports))
    assert found == [], "import cycles:\n" + "\n".join(
        "  " + " -> ".join([cycle[0].source, *(f"{i.target} (line {i.line})" for i in cycle)])
        for cycle in found)


def test_no_module_over_400_lines(house):
    modules, _, _ = house
    sizes = {name: len(path.read_text().splitlines()) for name, path in modules.items()}
    big = {name: n for name, n in sorted(sizes.items()) if n > MAX_LINES}
    assert big == {}, f"over {MAX_LINES} lines: " + ", ".join(f"{k} ({n})" for k, n in big.items())


def test_the_runtime_never_imports_the_embedded_stack(house):
    modules, imports, strings = house
    assert EMBEDDED in modules and STARTS_THE_STACK <= set(modules)  # the rule names real ones
    assert embedded_imports(imports, strings) == []


# --- the checks themselves can fail ---------------------------------------------------


def write(root: Path, files: dict[str, str]) -> dict[str, Path]:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return {"driftline": root}


def test_a_cycle_through_a_function_local_import_is_found_and_parents_are_not_cycles(
        tmp_path):
    roots = write(tmp_path, {
        "__init__.py": "from .a import A\n",
        "a.py": "from driftline import b\nA = 1\n",
        "b.py": "def f():\n    from .a import A\n    return A\n",
        "sub/__init__.py": "from driftline.sub.c import C\n",
        "sub/c.py": "from driftline.sub import d\nfrom driftline import A\nC = 1\n",
        "sub/d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                    "    from driftline.sub.c import C\n",
        "sub/e.py": "from driftline.sub import c\n",
    })
    _, imports, _ = scan(roots)
    found = cycles(edges(imports))
    assert [[str(i) for i in cycle] for cycle in found] == [
        ["driftline.a:1 -> driftline.b", "driftline.b:2 -> driftline.a"],
        ["driftline.sub.c:1 -> driftline.sub.d", "driftline.sub.d:3 -> driftline.sub.c"]]


def test_the_embedded_rule_allows_only_a_lazy_import_by_the_commands_that_start_it(
        tmp_path):
    roots = write(tmp_path, {
        "__init__.py": "",
        "embedded/__init__.py": "from .stack import S\n",
        "embedded/stack.py": "from driftline import ports\nS = 1\n",
        "ports.py": "",
        "app.py": "def port():\n    from driftline.embedded.stack import S\n",
        "worker.py": "import importlib\nimportlib.import_module('driftline.embedded')\n",
        "cli/__init__.py": "",
        "cli/embedded.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                           "    from ..embedded import S\n"
                           "def up():\n    from ..embedded import S\n",
    })
    _, imports, strings = scan(roots)
    assert embedded_imports(imports, strings) == [
        "driftline.app:2 -> driftline.embedded.stack",
        "driftline.worker:2 -> 'driftline.embedded' (a string)"]
    eager = write(tmp_path, {"cli/embedded.py": "from driftline.embedded import S\n"})
    _, imports, strings = scan(eager)
    assert "driftline.cli.embedded:1 -> driftline.embedded" in embedded_imports(imports,
                                                                                 strings)
