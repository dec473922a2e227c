"""The layering docs/architecture.md describes, checked on the code: a module's layer is its folder, and no
import runs up the layers. Every import statement counts, the lazy ones inside functions too."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "morph"
MAP = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"

# Bottom to top. A folder's modules share its layer; the few modules at the top of morph/ are named alone.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("contract and plumbing", ("core",)),
    ("networks", ("stylegan2", "stylegan3")),
    ("checkpoints", ("checkpoints",)),
    ("the built-in model", ("builtin",)),
    ("model names", ("models",)),
    ("motion", ("motion",)),
    ("rendering", ("render",)),
    ("sound", ("sound",)),
    ("scene language", ("scene",)),
    ("projection and directions", ("projection", "directions")),
    ("engine", ("engine",)),
    ("front ends", ("cli", "studio", "api", "__main__", "")),
    ("applications", ("training",)),
]
RANK = {room: rank for rank, (_, rooms) in enumerate(LAYERS) for room in rooms}
FRONT_ENDS = ("cli", "studio")
MAX_LINES = 600
MAX_TOP_ENTRIES = 20


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def room(module: str) -> str:
    """The folder (or top-level module) right under morph/ that holds ``module``; "" for the package itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


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


def upward(graph: dict[str, set[str]]) -> list[str]:
    """Every import whose target sits in a higher layer than the importer, as 'a -> b'."""
    return sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets if RANK[room(b)] > RANK[room(a)])


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


def test_the_checker_sees_imports(graph):
    assert "morph.stylegan2.networks" in graph["morph.stylegan2"] and "morph.core.model" in graph["morph.render.job"]
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    assert upward({"morph.core.files": {"morph.engine.scenes"}, "morph.engine.scenes": {"morph.core.files"}}) == [
        "morph.core.files -> morph.engine.scenes"]


def test_every_module_has_a_layer(graph):
    assert not sorted(m for m in graph if room(m) not in RANK), "a new folder needs a row in LAYERS and in the map"


def test_no_import_circle(graph):
    assert cycles(graph) == []


def test_no_import_runs_up_the_layers(graph):
    assert upward(graph) == []


def test_nothing_below_imports_a_front_end(graph):
    below = RANK["cli"]
    for name, targets in graph.items():
        if RANK[room(name)] < below:
            assert not [t for t in targets if room(t) in FRONT_ENDS], name


def test_modules_stay_readable():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}, f"modules over {MAX_LINES} lines"
    top = [p.name for p in PACKAGE.iterdir() if p.name != "__pycache__" and (p.is_dir() or p.suffix == ".py")]
    assert len(top) <= MAX_TOP_ENTRIES, sorted(top)


def test_the_map_places_every_module():
    """docs/architecture.md names every module (as a path under morph/ or a file name in its folder's row)."""
    text = MAP.read_text()
    named = set(re.findall(r"`([\w/.]+\.py)`", text))
    missing = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        if path.name == "__init__.py" or path.name == "__main__.py":
            continue
        if rel not in named and f"{path.parent.name}/{path.name}" not in named and not (
                path.parent == PACKAGE and path.name in named):
            missing.append(rel)
    assert missing == [], "modules the map does not place"
