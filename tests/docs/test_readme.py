"""Every command in the README's shell blocks is exercised: the quick ones run here against
the loopback-served fakes (same overrides a user types, plus where data and runs go and a
tiny model), the long ones are named with the test that runs them."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

README = REPO / "README.md"

# Commands run by another test (or by CI itself), with the test that does it.
ELSEWHERE = {
    "make demo": ".ci/run does not call it; tests/cli/test_fitting_summary.py::test_jepa_fit_cifar10_from_the_command_line "
                 "and the demo's own summary format are checked in tests/docs/test_readme.py::test_demo_summary_fields",
    "make test": ".ci/run",
    "jepa-fit data=cifar10 trainer=ddp": "tests/datamodule/test_base_ddp.py",
    "jepa-bench data=cifar10": "tests/bench/test_run.py",
    "python train.py fit --data jepa_datamodules.CIFAR10DataModule --data.mask jepa_datamodules.MultiBlockMaskGenerator "
    "--data.mask.num_targets 2": "tests/datamodule/test_base_user_apps.py::test_lightning_cli_fits_with_the_default_mask_and_a_mask_given_by_class_path",
    "jepa-eval data=synthetic ckpt_path=<path>":
        "tests/cli/test_evaluate.py::test_jepa_eval_on_a_tiny_jepa_checkpoint_is_above_chance_and_caches_features",
    "jepa-fit trainer.max_steps=100": "tests/datamodule/test_base_resume.py::test_readme_resume_recipe_through_jepa_fit",
    "jepa-fit trainer.max_steps=200 ckpt_path=<path>": "tests/datamodule/test_base_resume.py::test_readme_resume_recipe_through_jepa_fit",
    # The performance table's commands take minutes each: tests/bench/test_run.py runs
    # jepa-bench on the cifar10 and imagenet stand-ins with tiny batch counts and checks what
    # it prints; tests/bench/test_standins.py checks that every stand-in kind (stl10 included)
    # prepares and loads.
    "jepa-bench data=cifar10 data.num_workers=2 data.batch_size=128 bench.batches=40": "tests/bench/test_run.py",
    "jepa-bench data=imagenet bench.synthetic_like=imagenet data.num_workers=2 data.batch_size=64": "tests/bench/test_run.py",
    "jepa-bench data=stl10 data.num_workers=2 bench.standin_images=105000 bench.batches=200": "tests/bench/test_standins.py",
    "jepa-bench data=imagenet data.source=parquet bench.synthetic_like=imagenet bench.standin_images=5000 "
    "data.num_workers=2 data.batch_size=64":
        "tests/formats/test_hfparquet.py::test_jepa_bench_measures_the_parquet_release_on_a_stand_in",
    "jepa-bench data=imagenet data.source=folders bench.synthetic_like=imagenet bench.standin_images=5000 "
    "data.num_workers=2 data.batch_size=64": "tests/bench/test_run.py",
    "jepa-bench bench=sources data=imagenet": "tests/bench/test_sources.py",
    # Streaming from an object store: tests/streaming/test_remote.py converts both ways to a
    # loopback S3 endpoint and streams with nothing but the chunks (jepa-fit included).
    "jepa-prepare data=imagefolder data.root=/path/to/images format=litdata output=s3://bucket/mine "
    "+data.storage_options.endpoint_url=<endpoint>":
        "tests/streaming/test_remote.py::test_image_datasets_stream_from_s3_with_the_files_batches",
    "jepa-fit data=imagefolder data.format=litdata data.input=<output> +data.storage_options.endpoint_url=<endpoint>":
        "tests/streaming/test_remote.py::test_own_folder_chunks_train_through_jepa_fit_without_the_folder",
    # Your own data: the commands need a folder of images; these tests build one in the exact layouts.
    "jepa-fit data=imagefolder data.root=/path/to/images":
        "tests/formats/test_ownfolder.py::test_jepa_fit_and_verify_on_your_own_folder_from_the_command_line",
    "jepa-verify data=imagefolder data.root=/path/to/images":
        "tests/formats/test_ownfolder.py::test_jepa_fit_and_verify_on_your_own_folder_from_the_command_line",
    "jepa-fit data=imagefolder data.root=/path/to/photos data.labels=none":
        "tests/formats/test_ownfolder.py::test_labels_argument_says_what_it_means",
}

TINY_FIT = {"trainer.max_steps": "2", "data.image_size": "32", "data.patch_size": "4", "data.batch_size": "8",
            "data.num_workers": "0", "mask.min_keep": "4", "model.embed_dim": "32", "model.depth": "1",
            "model.num_heads": "2", "model.predictor_dim": "16", "model.predictor_depth": "1"}


def readme_commands() -> list[str]:
    text = README.read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                commands.append(line)
    return commands


def test_readme_starts_with_the_two_commands():
    assert readme_commands()[:2] == ["make demo", "make test"]


def test_every_command_is_run_here_or_named_elsewhere():
    for command in readme_commands():
        if command in ELSEWHERE:
            # Every test file (and test function, where one is named) that the entry names must exist.
            named = re.findall(r"(tests/[\w/]+\.py)(?:::(\w+))?", ELSEWHERE[command]) or [(".ci/run", "")]
            for path, function in named:
                assert (REPO / path).exists(), f"{command!r} is said to be covered by {path}, which is missing"
                if function:
                    assert re.search(rf"^def {function}\(", (REPO / path).read_text(), flags=re.M), \
                        f"{command!r} is said to be covered by {path}::{function}, which is not defined there"
        else:
            assert command.split()[0].startswith("jepa-"), f"README command {command!r} is not exercised by any test"


def _patched(command: str, data_dir: Path, log_dir: Path, mirror: str) -> list[str]:
    words = shlex.split(command)
    flags = [w for w in words[1:] if w.startswith("--")]
    overrides = dict(w.split("=", 1) for w in words[1:] if not w.startswith("--"))
    overrides.update({"paths.data_dir": str(data_dir), "paths.log_dir": str(log_dir)})
    datasets = overrides.get("data", "synthetic").split(",")
    if any(name in ("cifar10", "cifar100", "stl10", "imagenette", "tinyimagenet") for name in datasets):
        overrides["data.mirrors"] = f"[{mirror}]"
    if words[0] == "jepa-fit":
        overrides.update(TINY_FIT)
    script = Path(sys.executable).parent / words[0]
    return [str(script), *flags, *(f"{k}={v}" for k, v in overrides.items())]


@pytest.mark.slow
def test_readme_commands_run(served, tmp_path):
    server, _ = served
    data_dir, log_dir = tmp_path / "data", tmp_path / "runs"
    quick = [c for c in readme_commands() if c not in ELSEWHERE]
    # all-auto uses each dataset's own YAML; point it at the fakes like the others.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for command in quick:
        args = _patched(command, data_dir, log_dir, server.url)
        if "data=all-auto" in command:
            args.append(f"data.mirrors=[{server.url}]")
        result = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, timeout=600, env=env)
        assert result.returncode == 0, f"{command}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
        if command.startswith("jepa-fit"):
            assert "== jepa-fit summary ==" in result.stdout
        if command.startswith("jepa-verify"):
            assert "ok: cifar10 is complete and intact" in result.stdout


def test_demo_summary_fields():
    """The summary the README shows is the one jepa-fit prints (field names and order)."""
    shown = re.search(r"== jepa-fit summary ==\n(.*?)```", README.read_text(), flags=re.S).group(1)
    fields = [line.split(":", 1)[0] for line in shown.splitlines() if ":" in line]
    source = (REPO / "jepa_datamodules" / "cli" / "fitting.py").read_text()
    printed = re.findall(r'f"(\w[\w /]*?):\s', source)
    assert fields[:9] == printed[:9] == ["dataset", "steps", "ended by", "wall time", "images/s", "loss",
                                         "probe accuracy", "checkpoint", "run directory"]
    assert fields[9:] == ["picture", "picture"] and "picture" in printed


@pytest.mark.slow
def test_readme_python_example_trains(served, tmp_path, monkeypatch):
    """The README's Python block, run as written except for where data comes from and
    sizes small enough for a CPU test (each substitution must match, or the README moved)."""
    server, _ = served
    code = re.search(r"```python\n(.*?)```", README.read_text(), flags=re.S).group(1)
    substitutions = {
        'data_dir="data", batch_size=128, num_workers=4,':
            f'data_dir={str(tmp_path / "data")!r}, batch_size=8, num_workers=0, mirrors=[{server.url!r}], '
            'image_size=32, patch_size=4, progress=False,',
        "MultiBlockMaskGenerator()": "MultiBlockMaskGenerator(min_keep=4)",
        "TinyJEPA(image_size=224, patch_size=16, num_classes=10)":
            "TinyJEPA(image_size=32, patch_size=4, num_classes=10, embed_dim=32, depth=1, num_heads=2, "
            "predictor_dim=16, predictor_depth=1)",
        "lightning.Trainer(max_epochs=1)":
            "lightning.Trainer(max_steps=2, accelerator='cpu', logger=False, enable_checkpointing=False, "
            "enable_progress_bar=False, limit_val_batches=1)",
    }
    for old, new in substitutions.items():
        assert old in code, f"the README's Python example no longer contains {old!r}"
        code = code.replace(old, new)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["model"].global_step == 2 and len(namespace["model"].losses) == 2
    assert (tmp_path / "data" / "cifar10" / ".jepa-verified.json").exists()
