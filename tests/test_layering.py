"""The package's import graph: no cycles, and blocks never reach the containers.

Every module of ``src/invertible`` is parsed with :mod:`ast`; every ``import`` statement counts,
wherever it stands (module level, inside a function, under ``if TYPE_CHECKING:``), because each
one is a dependency a reader has to follow and a lazy import is a cycle in disguise. Only the
imports written in the source are edges: importing ``a.b.c`` also runs ``a/__init__.py`` and
``a/b/__init__.py``, but that implicit step is not a cycle of its own, so a package whose
``__init__`` imports its own submodules is fine, while a submodule that imports names from its
parent package's ``__init__`` closes a cycle and is caught.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Set

import pytest

ROOT = Path(__file__).resolve().parents[1] / "src"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> Dict[str, Set[str]]:
    """``module -> modules of invertible it imports`` for every module of the package."""
    files = {_module_name(p): p for p in sorted((ROOT / "invertible").rglob("*.py"))}
    graph: Dict[str, Set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: Set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                for alias in node.names:  # `from p import m` names module p.m when it exists
                    targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in files
                                else base)
        graph[name] = {_known(t, files) for t in targets if t.split(".")[0] == "invertible"}
    return graph


def _known(target: str, files: Dict[str, Path]) -> str:
    """The longest prefix of ``target`` that is a module of the package."""
    while target not in files:
        target = target.rpartition(".")[0]
    return target


def _cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """One cycle per strongly connected component with a cycle (Tarjan's algorithm)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    found: List[List[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _reachable(graph: Dict[str, Set[str]], start: str) -> Set[str]:
    seen: Set[str] = set()
    todo = [start]
    while todo:
        for w in graph[todo.pop()] - seen:
            seen.add(w)
            todo.append(w)
    return seen


GRAPH = _import_graph()


def test_parser_sees_function_level_and_type_checking_imports() -> None:
    """The graph is not vacuous: known edges of every kind are found."""
    assert "invertible.modules.base" in GRAPH["invertible.framework.sequence_inn"]
    assert "invertible.framework" in GRAPH["invertible"]  # `from . import framework`
    assert len(GRAPH) > 40
    tree = ast.parse("def f():\n    from .x import y\nif T:\n    import invertible.z\n")
    assert sum(isinstance(n, (ast.Import, ast.ImportFrom)) for n in ast.walk(tree)) == 2


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles() -> None:
    assert _cycles(GRAPH) == []


@pytest.mark.parametrize("name", sorted(n for n in GRAPH if n.startswith("invertible.modules")))
def test_blocks_never_reach_the_containers(name: str) -> None:
    """Nothing under invertible.modules imports the framework, directly or through helpers."""
    reached = _reachable(GRAPH, name)
    assert not {m for m in reached if m.startswith("invertible.framework")}, sorted(reached)
    assert "invertible.testing" not in reached


def test_containers_depend_on_the_contract_only() -> None:
    """The framework imports no concrete block: capabilities are attributes of the blocks."""
    for name in (n for n in GRAPH if n.startswith("invertible.framework")):
        blocks = {m for m in GRAPH[name] if m.startswith("invertible.modules")}
        assert blocks <= {"invertible.modules.base", "invertible.modules.inverse"}, (name, blocks)


def test_import_loads_neither_dynamo_nor_scipy_stats() -> None:
    """``import invertible`` stays cheap: the compiler stack and scipy.stats load on use."""
    code = ("import sys, invertible; print(sorted(m for m in ('torch._dynamo', 'scipy.stats') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
