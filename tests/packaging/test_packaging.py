"""The wheel a user installs: licence, type marker, shipped data and configs, and a clean build."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import jepa_datamodules
from tests.helpers import REPO

ROOT = REPO


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("wheel")
    # Built from a copy: setuptools writes build/ and *.egg-info beside the sources it builds, and
    # `make test` must leave the repository as it found it.
    source = tmp_path_factory.mktemp("source") / "repo"
    skipped = shutil.ignore_patterns("__pycache__", "*.egg-info")
    top = {".git", ".venv", "build", "dist", ".pytest_cache", "data", "outputs"}  # conf/data/ is source: top level only
    shutil.copytree(ROOT, source, ignore=lambda folder, names: set(skipped(folder, names)) | (
        top & set(names) if Path(folder) == ROOT else set()))
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(out), str(source)],
        capture_output=True, text=True, check=True)
    (path,) = out.glob("jepa_datamodules-*.whl")
    return path, build.stdout + build.stderr


def test_wheel_builds_without_setuptools_warnings(wheel: tuple[Path, str]) -> None:
    _, log = wheel
    assert "would be ignored" not in log and "Warning" not in log, log


def test_wheel_ships_license_type_marker_resources_and_configs(wheel: tuple[Path, str]) -> None:
    path, _ = wheel
    names = zipfile.ZipFile(path).namelist()
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    assert "jepa_datamodules/py.typed" in names
    assert "jepa_datamodules/resources/imagenet100.txt" in names
    shipped = {name.rsplit("/", 1)[-1] for name in names if name.startswith("jepa_datamodules/conf/data/")}
    in_repo = {p.name for p in (ROOT / "conf" / "data").glob("*.yaml")}
    assert in_repo <= shipped


def test_version_comes_from_the_installed_metadata() -> None:
    from importlib.metadata import version

    assert jepa_datamodules.__version__ == version("jepa-datamodules")


def test_every_module_of_the_package_ships(wheel: tuple[Path, str]) -> None:
    """A subpackage missing from pyproject's list would install without its modules (an import
    error for the user only, since the editable install used by the tests finds every folder)."""
    path, _ = wheel
    names = set(zipfile.ZipFile(path).namelist())
    package = Path(jepa_datamodules.__file__).parent
    in_repo = {f"jepa_datamodules/{p.relative_to(package).as_posix()}" for p in package.rglob("*.py")
               if "__pycache__" not in p.parts}
    assert in_repo - names == set()


def test_the_wheel_carries_no_test_fixture_writers(wheel: tuple[Path, str]) -> None:
    """Writers of fake datasets belong to tests/helpers (and jepa-bench's stand-ins to bench/):
    no module outside bench/ defines a ``write_<dataset>`` fixture any more."""
    import ast

    path, _ = wheel
    archive = zipfile.ZipFile(path)
    fixtures = []
    for name in archive.namelist():
        if not name.startswith("jepa_datamodules/") or not name.endswith(".py") or "/bench/" in name:
            continue
        tree = ast.parse(archive.read(name))
        fixtures += [f"{name}: {node.name}" for node in tree.body if isinstance(node, ast.FunctionDef)
                     and node.name.startswith("write_") and node.name not in _LIBRARY_WRITERS]
    assert fixtures == []


# Writers the library itself needs (stamps, LitData facts): not fixtures.
_LIBRARY_WRITERS = {"write_stamp", "write_facts", "write_state"}
