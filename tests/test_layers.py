"""The layers of docs/ARCHITECTURE.md, enforced over every import in the code (function-level and TYPE_CHECKING
imports included): nothing imports a layer above its own, no group of modules imports itself in a circle, and a
package's private modules are imported from inside that package only (its ``__init__`` is the door)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# bottom to top; a module belongs to the longest matching prefix
LAYERS: tuple[tuple[str, ...], ...] = (
    (
        "hwpareto",
        "hwpareto.errors",
        "hwpareto.plugins",
        "hwpareto.resources",
        "hwpareto.options",
        "hwpareto.safeload",
        "hwpareto.checks",
        "hwpareto.data",
    ),
    ("supernet",),
    ("hwpareto.store",),
    ("profilers",),
    ("predictors",),
    ("pareto",),
    ("dashboard",),
    ("hwpareto.cli",),
)
TOP_LEVEL = ("hwpareto", "supernet", "profilers", "predictors", "pareto", "dashboard")
# the packages whose private modules (a ``_name`` part) only they import; subpackages (supernet.llama,
# dashboard.views) belong to their package. tests/ and benchmarks/ are not checked: they test and time internals.
PACKAGES = ("hwpareto", "hwpareto.store", "hwpareto.cli", *TOP_LEVEL[1:])


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
    assert layer_of("hwpareto.cli.search") > layer_of("dashboard") > layer_of("pareto.search._search")
    assert layer_of("hwpareto.store._db") < layer_of("profilers") and layer_of("hwpareto.errors") == 0
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _package_of(module: str) -> str:
    return max((p for p in PACKAGES if module == p or module.startswith(p + ".")), key=len)


def _private(module: str) -> bool:
    return any(part.startswith("_") and not part.startswith("__") for part in module.split("."))


def _private_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{m} imports {t}"
        for m, targets in graph.items()
        for t in targets
        if _private(t) and _package_of(t) != _package_of(m)
    )


def test_private_modules_are_imported_from_their_package_only() -> None:
    """``from pkg._private import x`` / ``import pkg._private`` from another package: 0 such imports."""
    found = _private_imports(_graph())
    assert not found, "private modules imported from another package (import from its __init__):\n" + "\n".join(found)


def _lazy_doors() -> dict[str, tuple[dict[str, str], dict[str, str], set[str]]]:
    """Per ``__init__`` with a ``_LAZY`` table: that table, its ``TYPE_CHECKING`` imports (name -> module) and
    ``__all__``."""
    out = {}
    for module, path in _modules().items():
        if path.name != "__init__.py":
            continue
        tree = ast.parse(path.read_text())
        lazy: dict[str, str] = {}
        typed: dict[str, str] = {}
        exported: set[str] = set()
        for node in tree.body:
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
                if node.targets[0].id == "_LAZY":
                    lazy = eval(compile(ast.Expression(node.value), str(path), "eval"))  # a literal table
                elif node.targets[0].id == "__all__":
                    exported = set(ast.literal_eval(node.value))
            elif isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
                for imp in node.body:
                    if isinstance(imp, ast.ImportFrom) and imp.module:
                        typed |= {a.asname or a.name: imp.module for a in imp.names}
        if lazy:
            out[module] = (lazy, typed, exported)
    return out


def test_lazy_names_are_typed_and_exported() -> None:
    """A name a package serves on first use (module ``__getattr__``) is also imported under ``TYPE_CHECKING`` from
    the same module, so type checkers see it typed, not ``Any``; and it is in ``__all__``."""
    doors = _lazy_doors()
    assert {"pareto", "hwpareto.store", "supernet.llama"} <= set(doors)
    for module, (lazy, typed, exported) in doors.items():
        assert lazy == typed, f"{module}: _LAZY and the TYPE_CHECKING imports differ"
        assert set(lazy) <= exported, f"{module}: lazy names missing from __all__: {sorted(set(lazy) - exported)}"


def test_the_command_line_and_the_doors_do_not_import_optuna_or_torch() -> None:
    code = (
        "import sys, hwpareto.cli, hwpareto.store, pareto, supernet, supernet.llama; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'optuna', 'torch'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert done.stdout.strip() == "[]"


def test_the_private_import_check_sees_what_it_checks() -> None:
    # private imports are seen (allowed: same package)
    assert "pareto._objectives" in _graph()["pareto.analysis._analysis"]
    graph = {
        "dashboard._data.fronts": {"hwpareto.store._optuna", "dashboard._ui", "pareto"},
        "supernet.llama._x": {"supernet._types"},
    }
    assert _private_imports(graph) == ["dashboard._data.fronts imports hwpareto.store._optuna"]
    assert _private("hwpareto.store._optuna") and not _private("hwpareto.store")
    assert _package_of("supernet.llama._model") == _package_of("supernet._types") == "supernet"
    assert _package_of("hwpareto.store._optuna") != _package_of("pareto.analysis._analysis")
    assert _package_of("hwpareto.safeload") == "hwpareto" != _package_of("hwpareto.cli.search")
