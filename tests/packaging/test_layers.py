"""The package's layers, as docs/architecture.md states them, hold in the source.

Every import inside the package is read from the AST (in-function imports included, since
a lazy import is still a dependency), then: no module may import one of a higher layer,
and no two modules may import each other, directly or round a longer loop.
"""

from __future__ import annotations

import ast
from pathlib import Path

import jepa_datamodules

PACKAGE = Path(jepa_datamodules.__file__).parent

# Lowest first. A module may import its own layer and the ones below it.
LAYERS = {
    "jepa_datamodules": 0,  # the root: public names, imported lazily by name (see __init__.py)
    "jepa_datamodules._version": 0,
    "jepa_datamodules.catalog": 0,
    "jepa_datamodules.choices": 0,
    "jepa_datamodules.errors": 0,
    "jepa_datamodules.notices": 0,
    "jepa_datamodules.progress": 0,
    "jepa_datamodules.units": 0,
    "jepa_datamodules.storage": 1,
    "jepa_datamodules.formats": 2,
    "jepa_datamodules.pipeline": 3,
    "jepa_datamodules.adapters": 3,
    "jepa_datamodules.streaming": 4,
    "jepa_datamodules.preparation": 4,
    "jepa_datamodules.datamodule": 5,
    "jepa_datamodules.evaluation": 5,
    "jepa_datamodules.cli": 6,
    "jepa_datamodules.bench": 6,
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the package modules it imports (a name imported from a package that is itself
    a module counts as that module)."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                for alias in node.names:
                    found.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in modules else target)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
        graph[name] = {target for target in found if target in modules and target != name}
    return graph


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
GRAPH = _imports(MODULES)


def _layer(module: str) -> int:
    for prefix in sorted(LAYERS, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return LAYERS[prefix]
    raise AssertionError(f"{module} is in no layer; add it to LAYERS and to docs/architecture.md")


def test_every_module_belongs_to_a_layer():
    for module in MODULES:
        _layer(module)


def test_no_module_imports_a_higher_layer():
    upward = sorted(f"{m} (layer {_layer(m)}) imports {t} (layer {_layer(t)})"
                    for m, targets in GRAPH.items() for t in targets if _layer(t) > _layer(m))
    assert upward == []


def test_library_layers_never_import_the_console_or_the_benchmark():
    library = [m for m in MODULES if _layer(m) < LAYERS["jepa_datamodules.cli"]]
    leaks = sorted(f"{m} imports {t}" for m in library for t in GRAPH[m]
                   if t.startswith(("jepa_datamodules.cli", "jepa_datamodules.bench")))
    assert leaks == []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycles():
    assert _cycles(GRAPH) == []


def test_the_cycle_finder_finds_a_cycle():
    """The check above can fail: a loop of three is reported, a chain is not."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
