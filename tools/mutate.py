"""Mutation testing of the library's lower layers with mutmut, one module at a time.

Run before a release, not in CI (``make mutate``; minutes per module on two cores, hours for
all of them):

    make mutate                                   # every module below
    make mutate MODULES="storage/extract.py"      # some of them

For each module, mutmut (https://mutmut.readthedocs.io) makes small changes to its code (a
flipped comparison, a changed constant, a dropped call, ...) and runs the test files that
cover it against each change; a change no test notices ("survived") is a promise no test
defends. Each module runs in its own copy of the working tree under ``build/mutate/<module>/``
(``storage__extract`` for ``storage/extract.py``)
(git's tracked and untracked, not ignored files), so the checkout is never changed and other
modules' results are kept. The summary is printed per module; ``cd build/mutate/<module> &&
mutmut show <name>`` shows one survivor's diff. The last results are in docs/mutation.md.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "jepa_datamodules"
WORK = REPO / "build" / "mutate"

# The scope of `make mutate`: the modules of storage/, formats/, pipeline/, adapters.py and
# preparation.py. The tests that cover a module are found by the suite's mirror rule
# (tests/<package path>/test_<module>[_<aspect>].py, see tests/packaging/test_suite_rules.py),
# plus, below, the tests of the layers above that exercise it through them.
SCOPE = ("storage/", "formats/", "pipeline/", "adapters.py", "preparation.py")
ALSO: dict[str, list[str]] = {
    "storage/verify.py": ["tests/test_preparation_stamp.py", "tests/test_preparation_read_only.py",
                          "tests/test_preparation.py"],
    "storage/files.py": ["tests/test_preparation_read_only.py"],
    "formats/base.py": ["tests/formats", "tests/datamodule/test_base.py"],
    "formats/dataset.py": ["tests/test_preparation.py", "tests/test_preparation_stamp.py", "tests/datasets"],
    "formats/images.py": ["tests/formats/test_imagefolder.py", "tests/formats/test_ownfolder.py"],
    "formats/cifar.py": ["tests/datamodule/test_datasets_cifar.py"],
    "formats/synthetic.py": ["tests/datamodule/test_base.py"],
    "formats/imagefolder.py": ["tests/test_preparation_read_only.py"],
    "formats/imagenet/datasets.py": ["tests/datamodule/test_datasets_imagenet.py"],
    "pipeline/sampling.py": ["tests/pipeline/test_batching_randomness.py", "tests/datamodule/test_base_resume.py"],
    "pipeline/transforms.py": ["tests/pipeline/test_device_views_jitter.py"],
    "pipeline/buffers.py": ["tests/pipeline/test_batching_randomness.py", "tests/pipeline/test_device_views.py"],
    "pipeline/masks/levels.py": ["tests/test_adapters.py"],
}


def _mirrored(module: str) -> list[str]:
    """The test files of ``module`` (a path under jepa_datamodules/) by the suite's mirror rule."""
    folder, _, name = module.rpartition("/")
    stem = name.removesuffix(".py")
    tests = REPO / "tests" / folder
    return sorted(str(p.relative_to(REPO)) for p in tests.glob(f"test_{stem}*.py")
                  if p.stem == f"test_{stem}" or p.stem.startswith(f"test_{stem}_"))


def _tests() -> dict[str, list[str]]:
    """Module -> the test files that cover it, for every module of SCOPE that has any."""
    root = REPO / PACKAGE
    modules = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.py")
                     if p.name != "__init__.py" and p.relative_to(root).as_posix().startswith(SCOPE))
    found = {m: _mirrored(m) + ALSO.get(m, []) for m in modules}
    return {m: files for m, files in found.items() if files}


TESTS = _tests()


def _copy_tree(destination: Path) -> None:
    """The working tree as git sees it (tracked + untracked, not ignored), into ``destination``."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)


def _config(module: str, work: Path) -> str:
    """The [tool.mutmut] table that mutates ``module`` only and runs only its tests; everything
    else at the top of the tree goes along (tests read README.md, conf/, docs/, ...)."""
    tests = ", ".join(json.dumps(t) for t in TESTS[module])
    others = ", ".join(json.dumps(p.name) for p in sorted(work.iterdir()) if p.name not in (PACKAGE, "tests"))
    return (f"\n[tool.mutmut]\nsource_paths = [\"{PACKAGE}/\"]\n"
            f"only_mutate = [\"{PACKAGE}/{module}\"]\n"
            f"also_copy = [{others}]\n"
            f"pytest_add_cli_args_test_selection = [{tests}]\n"
            "pytest_add_cli_args = [\"-p\", \"no:cacheprovider\", \"-m\", \"not slow\"]\n")


def mutate(module: str, mutmut: Path, jobs: int) -> dict[str, int]:
    work = WORK / module.replace("/", "__").removesuffix(".py")
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    _copy_tree(work)
    config = _config(module, work)
    with open(work / "pyproject.toml", "a") as handle:
        handle.write(config)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    subprocess.run([str(mutmut), "run", "--max-children", str(jobs)], cwd=work, env=env, check=True)
    subprocess.run([str(mutmut), "export-cicd-stats"], cwd=work, env=env, check=True, capture_output=True)
    stats = json.loads((work / "mutants" / "mutmut-cicd-stats.json").read_text())
    survivors = subprocess.run([str(mutmut), "results"], cwd=work, env=env, capture_output=True, text=True).stdout
    (work / "survivors.txt").write_text(survivors)
    return stats


def main(argv: list[str]) -> int:
    modules = argv or list(TESTS)
    unknown = [m for m in modules if m not in TESTS]
    if unknown:
        print(f"error: unknown module(s) {', '.join(unknown)}; allowed are: {', '.join(TESTS)}.", file=sys.stderr)
        return 2
    mutmut = Path(sys.executable).parent / "mutmut"
    if not mutmut.exists():
        print("error: mutmut is not installed in this environment; `make mutate` installs it.", file=sys.stderr)
        return 2
    jobs = int(os.environ.get("MUTATE_JOBS", "2"))
    rows = []
    for module in modules:
        stats = mutate(module, mutmut, jobs)
        rows.append((module, stats))
    print(f"\n{'module':28s} {'mutants':>8s} {'killed':>7s} {'survived':>9s} {'timeout':>8s} {'other':>6s}")
    for module, s in rows:
        other = s["total"] - s["killed"] - s["survived"] - s["timeout"]
        print(f"{module:28s} {s['total']:8d} {s['killed']:7d} {s['survived']:9d} {s['timeout']:8d} {other:6d}")
    print(f"\nSurvivors per module: build/mutate/<module>/survivors.txt; `mutmut show <name>` there shows one.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
