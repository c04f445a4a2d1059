"""The layering of `shared/`, checked on the AST of every module (nothing is imported or executed).

- `shared/core/` is pure: no Azure SDK, HTTP client, adapter, flow, composition root, settings or telemetry.
- `shared/adapters/` never reaches up into `shared.flows` or `shared.compose`.
- No import cycle among `shared` modules (every import counts: inside functions and `if TYPE_CHECKING:` too).
- No module in `shared/` is over 400 lines.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from itertools import pairwise
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT / "shared"
MAX_LINES = 400

CORE_FORBIDDEN = ("azure", "requests", "urllib3", "shared.adapters", "shared.flows", "shared.compose",
                  "shared.config", "shared.telemetry")
ADAPTERS_FORBIDDEN = ("shared.flows", "shared.compose")


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def shared_modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the `shared` package by dotted name (packages by their `__init__`)."""
    return {module_name(path, root): path for path in sorted((root / "shared").rglob("*.py"))}


def imported(source: str, name: str, is_package: bool, known: Iterable[str] = ()) -> list[tuple[int, str]]:
    """(line, dotted target) of every import in `source`, anywhere in the tree.

    `from P import n` targets `P.n` when that is a known module (`from shared import config` imports
    `shared.config`), else `P`; relative imports are resolved against module `name`.
    """
    modules = set(known)
    package = name if is_package else name.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join([*base_parts, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            if base == "__future__":
                continue
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.append((node.lineno, candidate if candidate in modules else base))
    return found


def _within(target: str, prefixes: Iterable[str]) -> str | None:
    return next((p for p in prefixes if target == p or target.startswith(p + ".")), None)


def layer_violations(modules: dict[str, Path], layer: str, forbidden: tuple[str, ...], root: Path = ROOT
                     ) -> list[str]:
    problems = []
    for name, path in modules.items():
        if not (name == layer or name.startswith(layer + ".")):
            continue
        source = path.read_text(encoding="utf-8")
        for line, target in imported(source, name, path.name == "__init__.py", modules):
            banned = _within(target, forbidden)
            if banned:
                problems.append(f"{path.relative_to(root).as_posix()}:{line} "
                                f"imports {target} (nothing from {banned} in {layer})")
    return problems


def import_graph(modules: dict[str, Path]) -> dict[str, dict[str, int]]:
    """module → {imported shared module: first line}. An import of `a.b.c` also runs `a.b`, but that
    edge is only counted when a package `__init__` is imported by name (packages here are docstrings)."""
    graph: dict[str, dict[str, int]] = {}
    for name, path in modules.items():
        edges: dict[str, int] = {}
        for line, target in imported(path.read_text(encoding="utf-8"), name, path.name == "__init__.py", modules):
            while target and target not in modules:  # `import shared.core.sync.X`-like: the nearest module
                target = target.rpartition(".")[0]
            if target and target != name:
                edges.setdefault(target, line)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One concrete cycle (a → b → ... → a) per strongly connected component with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(node: str) -> None:  # Tarjan; the graph is small, recursion is fine
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, {}):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return [_cycle_in(graph, set(component), component[0]) for component in components]


def _cycle_in(graph: dict[str, dict[str, int]], members: set[str], start: str) -> list[str]:
    """The shortest path start → ... → start inside one component (breadth first)."""
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph[node]):
                if nxt not in members:
                    continue
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start] if node != start else [start, start]
                if nxt not in previous:
                    previous[nxt] = node
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"no cycle through {start}")  # unreachable for a real component


def _describe(graph: dict[str, dict[str, int]], cycle: list[str]) -> str:
    return " → ".join(f"{a} (line {graph[a][b]})" for a, b in pairwise(cycle)) + f" → {cycle[-1]}"


# --- the rules, on the real package -------------------------------------------------------------

MODULES = shared_modules()


def test_the_package_is_found() -> None:
    assert {"shared.core", "shared.adapters", "shared.flows", "shared.core.sync"} <= set(MODULES)


def test_core_is_pure() -> None:
    problems = layer_violations(MODULES, "shared.core", CORE_FORBIDDEN)
    assert not problems, "shared/core must not do I/O or reach outside the core:\n" + "\n".join(problems)


def test_adapters_do_not_reach_up_into_flows_or_the_composition_root() -> None:
    problems = layer_violations(MODULES, "shared.adapters", ADAPTERS_FORBIDDEN)
    assert not problems, "shared/adapters must not import flows or the composition root:\n" + "\n".join(problems)


def test_no_import_cycles() -> None:
    graph = import_graph(MODULES)
    found = cycles(graph)
    assert not found, "import cycles among shared modules:\n" + "\n".join(_describe(graph, c) for c in found)


def test_modules_are_at_most_400_lines() -> None:
    sizes = {path.relative_to(ROOT): len(path.read_text(encoding="utf-8").splitlines()) for path in MODULES.values()}
    over = [f"{path}: {lines} lines" for path, lines in sorted(sizes.items()) if lines > MAX_LINES]
    assert not over, f"modules over {MAX_LINES} lines (split them):\n" + "\n".join(over)


# --- the checker itself, on literal sources ------------------------------------------------------

KNOWN = {"shared", "shared.config", "shared.core", "shared.core.sync", "shared.core.models", "shared.flows",
         "shared.flows.inbound"}


@pytest.mark.parametrize(
    ("source", "name", "is_package", "expected"),
    [
        pytest.param("import azure.functions as func", "shared.core.x", False, ["azure.functions"], id="import-as"),
        pytest.param("import json, requests", "shared.core.x", False, ["json", "requests"], id="several"),
        pytest.param("from shared import config", "shared.core.x", False, ["shared.config"], id="from-package"),
        pytest.param("from shared.core.models import Link", "shared.core.x", False, ["shared.core.models"],
                     id="from-module-import-name"),
        pytest.param("from . import sync", "shared.core.x", False, ["shared.core.sync"], id="relative-module"),
        pytest.param("from .models import Link", "shared.core.x", False, ["shared.core.models"],
                     id="relative-name"),
        pytest.param("from ..flows import inbound", "shared.core.x", False, ["shared.flows.inbound"],
                     id="relative-parent"),
        pytest.param("from . import sync", "shared.core", True, ["shared.core.sync"], id="relative-in-init"),
        pytest.param("def f():\n    import requests\n", "shared.core.x", False, ["requests"], id="in-function"),
        pytest.param("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from shared.flows import inbound\n",
                     "shared.core.x", False, ["typing", "shared.flows.inbound"], id="type-checking-block"),
        pytest.param("from __future__ import annotations", "shared.core.x", False, [], id="future-ignored"),
    ],
)
def test_imports_are_resolved(source: str, name: str, is_package: bool, expected: list[str]) -> None:
    assert [target for _, target in imported(source, name, is_package, KNOWN)] == expected


def _tree(tmp_path: Path, files: dict[str, str]) -> dict[str, Path]:
    for relative, source in files.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source, encoding="utf-8")
    return shared_modules(tmp_path)


def test_checker_reports_a_cycle_through_a_function_level_import(tmp_path: Path) -> None:
    modules = _tree(tmp_path, {
        "shared/__init__.py": "",
        "shared/core/__init__.py": "",
        "shared/core/a.py": "from shared.core import b\n",
        "shared/core/b.py": "def f():\n    from shared.core.c import x\n",
        "shared/core/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import shared.core.a\n",
        "shared/core/d.py": "from shared.core import a\n",
    })
    graph = import_graph(modules)
    assert cycles(graph) == [["shared.core.a", "shared.core.b", "shared.core.c", "shared.core.a"]]
    assert _describe(graph, cycles(graph)[0]) == ("shared.core.a (line 1) → shared.core.b (line 2) → "
                                                  "shared.core.c (line 3) → shared.core.a")


def test_checker_reports_layer_violations(tmp_path: Path) -> None:
    modules = _tree(tmp_path, {
        "shared/__init__.py": "",
        "shared/config.py": "",
        "shared/core/__init__.py": "",
        "shared/core/pure.py": "import json\nfrom shared.core import other\n",
        "shared/core/other.py": "from shared import config\ndef f():\n    import urllib3.util\n",
        "shared/adapters/__init__.py": "",
        "shared/adapters/io.py": "import requests\nfrom shared.core import pure\n",
    })
    assert layer_violations(modules, "shared.core", CORE_FORBIDDEN, tmp_path) == [
        "shared/core/other.py:1 imports shared.config (nothing from shared.config in shared.core)",
        "shared/core/other.py:3 imports urllib3.util (nothing from urllib3 in shared.core)",
    ]
    assert layer_violations(modules, "shared.adapters", ADAPTERS_FORBIDDEN, tmp_path) == []
