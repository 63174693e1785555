"""The library's house rules, read from its source (the way test_layers.py reads imports):

- it does not speak Hydra: outside ``cli/`` and ``bench/`` (the console layer), no message
  names a command-line override or a console command; settings and fixes are marked
  (``errors.setting`` / ``errors.action``) and the console renders them;
- one route for a warning a user should read: ``Notice`` (no other ``warnings.warn`` category,
  no ``logger.warning``, no printed ``warning:`` / ``note:`` line);
- an error raised for the user is a ``JEPADataError``: a bare ``ValueError``, ``RuntimeError``,
  ``FileNotFoundError`` or ``OSError`` is what the console treats as a bug (traceback);
- no module over 600 lines: one concern per file.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import jepa_datamodules

PACKAGE = Path(jepa_datamodules.__file__).parent
CONSOLE = ("cli/", "bench/")
HYDRA_WORDS = re.compile(r"\bpaths\.data_dir\b|\bdata\.[a-z_]+=|\btrainer\.[a-z_]+=|\bjepa-(?:prepare|verify|fit|"
                         r"bench|eval|datasets)\b|\+callbacks\.")
# Raised as what they are: a programming error in the caller's code (a wrong type passed to an
# internal helper), never a user's setting or data.
BARE_ERRORS = {"ValueError", "RuntimeError", "FileNotFoundError", "OSError", "Exception"}
ALLOWED_BARE = {
    # A row of a parquet shard without image bytes: caught as an unreadable item and skipped (or
    # reported by verification) like any other undecodable file, never shown raw.
    ("formats/hfparquet.py", "OSError"),
    # The loopback latency proxy of jepa-bench: its own server's failure to start, a bench bug.
    ("bench/latency_proxy.py", "RuntimeError"),
}
MAX_LINES = 600
# Where a Notice becomes the console's one "warning: <sentence>" line.
PRINTER = "cli/console.py"


def _modules() -> dict[str, ast.Module]:
    return {p.relative_to(PACKAGE).as_posix(): ast.parse(p.read_text(), str(p))
            for p in sorted(PACKAGE.rglob("*.py")) if "__pycache__" not in p.parts}


def _docstrings(tree: ast.Module) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def test_the_library_does_not_speak_hydra():
    spoken = []
    for name, tree in _modules().items():
        if name.startswith(CONSOLE):
            continue
        docs = _docstrings(tree)  # docstrings may show a console example to a reader
        spoken += [f"{name}:{node.lineno}: {match.group(0)!r} in {node.value[:70]!r}"
                   for node in ast.walk(tree)
                   if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs
                   for match in [HYDRA_WORDS.search(node.value)] if match]
    assert spoken == []


def _warns_a_notice(call: ast.Call) -> bool:
    first = call.args[0] if call.args else None
    category = call.args[1] if len(call.args) > 1 else next((k.value for k in call.keywords if k.arg == "category"), None)
    made = isinstance(first, ast.Call) and getattr(first.func, "id", "") == "Notice"
    return made or getattr(category, "id", "") == "Notice"


def test_warnings_for_the_user_take_one_route():
    routes = []
    for name, tree in _modules().items():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not isinstance(node.func, (ast.Attribute, ast.Name)):
                continue
            func = node.func
            owner = getattr(getattr(func, "value", None), "id", "")
            called = func.attr if isinstance(func, ast.Attribute) else func.id
            if called == "warn" and owner == "warnings" and not _warns_a_notice(node):
                routes.append(f"{name}:{node.lineno}: warnings.warn without Notice")
            elif called in ("warning", "warn") and owner in ("log", "logger", "logging", "_log"):
                routes.append(f"{name}:{node.lineno}: {owner}.{called}")
            elif called == "print" and name != PRINTER and node.args and isinstance(node.args[0], (ast.Constant, ast.JoinedStr)):
                text = node.args[0].value if isinstance(node.args[0], ast.Constant) else next(
                    (v.value for v in node.args[0].values if isinstance(v, ast.Constant)), "")
                if isinstance(text, str) and text.lstrip().startswith(("warning:", "note:")):
                    routes.append(f"{name}:{node.lineno}: print({text[:30]!r}...)")
    assert routes == []


def test_errors_raised_for_the_user_are_the_packages_own():
    bare = []
    for name, tree in _modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                kind = getattr(node.exc.func, "id", getattr(node.exc.func, "attr", ""))
                if kind in BARE_ERRORS and (name, kind) not in ALLOWED_BARE:
                    bare.append(f"{name}:{node.lineno}: raise {kind}(...)")
    assert bare == []


def test_no_module_does_several_jobs():
    long = {name: n for name in _modules() if (n := len((PACKAGE / name).read_text().splitlines())) > MAX_LINES}
    assert long == {}
