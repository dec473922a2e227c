"""The layering docs/architecture.md describes: no import circle in morph/, the network packages import nothing
above the contract (but each other), and nothing imports a front end. Every import statement counts, the lazy ones too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "morph"
BELOW_NETWORKS = {"morph.core.model", "morph.core.errors", "morph.core.files", "morph.core.arrays", "morph.core.limits", "morph.core.progress",
                  "morph.core.runtime", "morph.core.devices"}
FRONT_ENDS = ("morph.cli",)
NETWORKS = ("morph.stylegan2", "morph.stylegan3")  # the families, and the checkpoint readers they share


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module → the morph modules it imports (resolved to the deepest existing module)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package
                for _ in range(node.level - 1):
                    base = base.rsplit(".", 1)[0]
                full = (f"{base}.{node.module}" if node.module else base) if node.level else node.module or ""
                targets = [f"{full}.{a.name}" if f"{full}.{a.name}" in modules else full for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for target in targets:
                while target not in modules and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target in modules and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
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
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


def test_the_checker_sees_imports(graph):
    assert "morph.stylegan2.networks" in graph["morph.stylegan2"] and "morph.core.model" in graph["morph.render.job"]
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]


def test_no_import_circle(graph):
    assert cycles(graph) == []


def test_networks_import_nothing_above_the_contract(graph):
    for name, targets in graph.items():
        if name.startswith(NETWORKS):
            above = {t for t in targets if not t.startswith(NETWORKS) and t not in BELOW_NETWORKS}
            assert not above, f"{name} imports {sorted(above)}"


def test_nothing_imports_a_front_end(graph):
    for name, targets in graph.items():
        assert not [t for t in targets if t.startswith(FRONT_ENDS) and not name.startswith(FRONT_ENDS)], name
