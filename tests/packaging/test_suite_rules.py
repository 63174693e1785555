"""The test suite's own rules, read from its source: tests use the package's public names
only, find their helpers as the ``tests.helpers`` package (never by editing ``sys.path``),
and every marker they use is declared (``--strict-markers``)."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

from tests.helpers import REPO

TESTS = REPO / "tests"


def _trees() -> dict[Path, ast.AST]:
    return {path: ast.parse(path.read_text(), str(path)) for path in sorted(TESTS.rglob("*.py"))}


def _private(module: str, name: str = "") -> bool:
    return any(part.startswith("_") and part != "__init__" for part in [*module.split("."), name] if part)


def test_no_test_imports_a_private_name_of_the_package():
    found = []
    for path, tree in _trees().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "jepa_datamodules":
                found += [f"{path.relative_to(REPO)}:{node.lineno} {node.module}.{alias.name}"
                          for alias in node.names if _private(node.module, alias.name)]
            elif isinstance(node, ast.Import):
                found += [f"{path.relative_to(REPO)}:{node.lineno} {alias.name}" for alias in node.names
                          if alias.name.split(".")[0] == "jepa_datamodules" and _private(alias.name)]
    assert found == []


def test_no_test_edits_sys_path():
    found = []
    for path, tree in _trees().items():
        for node in ast.walk(tree):
            # sys.path.insert(...), sys.path.append(...), sys.path[:0] = ..., sys.path = ...
            target = node.func.value if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) else None
            if isinstance(node, (ast.Assign, ast.AugAssign)):
                target = node.targets[0] if isinstance(node, ast.Assign) else node.target
                target = target.value if isinstance(target, ast.Subscript) else target
            if isinstance(target, ast.Attribute) and target.attr == "path" and getattr(target.value, "id", "") == "sys":
                found.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert found == []


def test_every_test_folder_is_a_package_and_markers_are_strict():
    folders = {path.parent for path in TESTS.rglob("*.py")}
    assert sorted(str(f.relative_to(REPO)) for f in folders if not (f / "__init__.py").is_file()) == []
    settings = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert "--strict-markers" in settings["addopts"].split() and settings["pythonpath"] == ["."]


# Folders of tests that are about the package as a whole, not one module of it: the wheel and
# the suite's own rules, the README and notebook as a user runs them, the contract every catalog
# dataset meets, and the shared fakes.
CROSS_CUTTING = {"packaging", "docs", "datasets", "helpers"}


def _package_modules(folder: Path) -> set[str]:
    """The module and subpackage names directly in the package folder ``folder``."""
    return {p.stem for p in folder.glob("*.py") if p.stem != "__init__"} | \
        {p.name for p in folder.iterdir() if (p / "__init__.py").is_file()}


def test_tests_mirror_the_package_module_by_module():
    """``tests/<package path>/test_<module>[_<aspect>].py`` for a module (or subpackage) that
    exists at ``jepa_datamodules/<package path>/<module>``, so the tests of a module are found
    by its name and a moved module takes its tests along."""
    package = REPO / "jepa_datamodules"
    misplaced = []
    for path in sorted(TESTS.rglob("test_*.py")):
        folder = path.parent.relative_to(TESTS)
        if folder.parts and folder.parts[0] in CROSS_CUTTING:
            continue
        mirror = package / folder
        stem = path.stem[len("test_"):]
        modules = _package_modules(mirror) if (mirror / "__init__.py").is_file() else set()
        if not any(stem == m or stem.startswith(f"{m}_") for m in modules):
            misplaced.append(f"{path.relative_to(REPO)}: no module jepa_datamodules/{folder.as_posix()}/"
                             f"{stem.split('_')[0]}[...] for it to test")
    assert misplaced == []
