"""The layers of docs/ARCHITECTURE.md, enforced over every import in the code (function-level and TYPE_CHECKING
imports included): nothing imports a layer above its own, and no group of modules imports itself in a circle."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# bottom to top; a module belongs to the longest matching prefix
LAYERS: tuple[tuple[str, ...], ...] = (
    ("hwpareto", "hwpareto.errors", "hwpareto.plugins", "hwpareto.resources", "hwpareto.options", "hwpareto.data"),
    ("supernet",),
    ("hwpareto.store",),
    ("profilers",),
    ("predictors",),
    ("pareto",),
    ("dashboard",),
    ("hwpareto.cli",),
)
TOP_LEVEL = ("hwpareto", "supernet", "profilers", "predictors", "pareto", "dashboard")


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = ("hwpareto", "data", *rel.parts[1:]) if rel.parts[0] == "data" else rel.parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    found = {}
    for top in (*TOP_LEVEL, "data"):
        for path in (ROOT / top).rglob("*.py"):
            if "__pycache__" not in path.parts:
                found[_module_name(path)] = path
    return found


def layer_of(module: str) -> int:
    best, level = -1, -1
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, level = len(prefix), i
    assert level >= 0, f"{module}: in no layer of {LAYERS}"
    return level


def _imports(module: str, path: Path, known: set[str]) -> set[str]:
    """Project modules imported by ``module``: ``from a.b import c`` counts as ``a.b.c`` when that is a module."""
    out: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != module:
                out.add(target)
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {m: _imports(m, p, known) for m, p in modules.items()}


def test_no_import_runs_up_a_layer() -> None:
    upward = sorted(
        f"{m} (layer {layer_of(m)}) imports {t} (layer {layer_of(t)})"
        for m, targets in _graph().items()
        for t in targets
        if layer_of(t) > layer_of(m)
    )
    assert not upward, "imports running up a layer:\n" + "\n".join(upward)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_modules_import_each_other() -> None:
    """A package's ``__init__`` re-exporting its own submodules is the one allowed direction: a submodule never
    imports its package (so no circle runs through an ``__init__``)."""
    cycles = _cycles(_graph())
    assert not cycles, "modules importing each other (in a circle):\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_checker_sees_what_it_checks() -> None:
    """The graph is real: known edges are found, and a made-up upward import or circle would be reported."""
    graph = _graph()
    assert "hwpareto.store" in graph["profilers._lut"]
    assert "hwpareto.errors" in graph["supernet._space"]
    assert layer_of("hwpareto.cli.search") > layer_of("dashboard") > layer_of("pareto._search")
    assert layer_of("hwpareto.store._db") < layer_of("profilers") and layer_of("hwpareto.errors") == 0
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
