"""``cli/console.py``: what a researcher sees of the console scripts. Logs without adverts,
framework noise or carriage returns when the output is not a terminal, useful ``--help``
(answered before torch is imported), and run folders only for commands that make something.
Commands run as subprocesses with pipes (no TTY), as in a SLURM job."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.helpers.console import batch_job as cli, run_command as _cli


COMMANDS = ("jepa-fit", "jepa-prepare", "jepa-verify", "jepa-bench", "jepa-datasets")
NOISE = re.compile(r"Tip:|litlogger|litmodels|tensorboardX|[Dd]eprecat|Warning:|warn\(")


@pytest.mark.parametrize("command", COMMANDS)
def test_help_says_what_the_command_does(command, tmp_path):
    shown = cli(command, "--help", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert text.startswith(f"{command}: ") and len(text.split("\n\n")[0]) > 200  # a paragraph
    assert "== Most used keys (key=value) ==" in text and "paths.data_dir=DIR" in text
    if command != "jepa-datasets":
        assert re.search(r"^data: .*cifar10, cifar100, .*synthetic, tinyimagenet$", text, flags=re.M)
        assert re.search(r"^mask: hierarchical, multiblock, none$", text, flags=re.M)
        assert "_base_" not in text  # the shared data keys are not a dataset to pick
    assert list(tmp_path.iterdir()) == []  # --help makes no run folder


def test_help_and_typos_do_not_import_torch(tmp_path):
    """--help and a refused override are answered before torch or Lightning is imported."""
    probe = (
        "import sys\n"
        "from jepa_datamodules.cli import apps\n"
        "for argv in (['jepa-fit', '--help'], ['jepa-fit', 'dat=cifar10'], ['jepa-prepare', '--help']):\n"
        "    sys.argv = argv\n"
        "    try:\n"
        "        {'jepa-fit': apps.fit, 'jepa-prepare': apps.prepare}[argv[0]]()\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print('heavy:', sorted(m for m in ('torch', 'lightning', 'torchvision') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert "Trains the tiny JEPA" in result.stdout
    assert "error: dat is not a setting; did you mean data=cifar10?" in result.stderr
    assert result.stdout.strip().splitlines()[-1] == "heavy: []", result.stdout[-500:]


def test_commands_that_make_nothing_leave_no_run_folder(tmp_path):
    env = {"JEPA_DATA_DIR": str(tmp_path / "data"), "JEPA_LOG_DIR": str(tmp_path / "runs")}
    listed = cli("jepa-datasets", cwd=tmp_path, env=env)
    assert listed.returncode == 0, listed.stderr
    checked = cli("jepa-verify", "data=synthetic", cwd=tmp_path, env=env)  # nothing prepared: it fails
    assert checked.returncode == 1 and "jepa-prepare data=synthetic" in checked.stderr
    refused = cli("jepa-fit", "data=all-auto", cwd=tmp_path, env=env)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines()[-1].startswith("error: data=all-auto only works with jepa-prepare")
    made = [p for p in tmp_path.rglob("*") if p.relative_to(tmp_path).parts[0] != "data" and not p.is_dir()]
    assert made == []  # no .hydra/, no log, no run folder (an empty runs/ at most)
    assert not (tmp_path / "runs").exists() or list((tmp_path / "runs").iterdir()) == []


def test_a_failed_run_keeps_its_folder_and_logs_the_error(tmp_path):
    """jepa-prepare makes a dataset; when that fails, the run folder says why (as the terminal does)."""
    env = {"JEPA_DATA_DIR": str(tmp_path / "data"), "JEPA_LOG_DIR": str(tmp_path / "runs")}
    failed = cli("jepa-prepare", "data=cifar10", "data.download=false", cwd=tmp_path, env=env)
    assert failed.returncode == 2, failed.stderr
    error = failed.stderr.strip().splitlines()[-1]
    assert error.startswith("error: ")
    (run,) = (tmp_path / "runs" / "jepa-prepare").iterdir()
    assert error in (run / "jepa-prepare.log").read_text()


@pytest.mark.slow
def test_short_fit_log_is_quiet_and_its_summary_honest(tmp_path):
    """`jepa-fit data=synthetic trainer.max_steps=3` with the default set (1,024 validation images),
    as a batch job would run it: our lines and Lightning's own, each once, nothing else."""
    # Every step reports, however quick: three steps of the tiny model can take under the 2 s
    # below which a step says nothing, and this test is about the lines' form, not the machine.
    env = {"JEPA_DATA_DIR": str(tmp_path / "data"), "JEPA_LOG_DIR": str(tmp_path / "runs"),
           "JEPA_PROGRESS_MIN_SECONDS": "0"}
    result = cli("jepa-fit", "data=synthetic", "trainer.max_steps=3", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert "\r" not in log  # (decoded from bytes: see cli())
    # Nor Lightning's bar drawn once at the end (Rich's, on a pipe, writes no carriage return).
    assert not re.search(r"\d(it/s|s/it)\b", log), re.search(r".*\d(it/s|s/it)\b.*", log).group(0)
    assert not NOISE.search(log), NOISE.search(log).group(0) + "\n" + log[-3000:]
    # No framework noise: Lightning's device INFO lines, its model summary table, the
    # logging-interval warning of a 3-step run; stderr holds our progress lines and nothing else.
    for noise in ("GPU available", "Trainable params", "| Name", "logging interval", "`Trainer.fit` stopped"):
        assert noise not in log, noise + "\n" + log[-3000:]
    assert all(re.match(r"(generate synthetic 32px|epoch 0|validation): ", line)
               for line in result.stderr.splitlines()), result.stderr
    # Steps report as plain lines.
    assert re.search(r"^epoch 0: done, 100 % \(3 of 3 steps\), \d+ s, loss \d\.\d{4}$", result.stderr, flags=re.M)
    summary = result.stdout[result.stdout.index("== jepa-fit summary =="):]
    fields = dict(line.split(":", 1) for line in summary.splitlines()[1:] if ":" in line)
    assert re.fullmatch(r" 0\.\d{3}: not distinguishable from chance 0\.100 \(n=1,024 validation images, .*\)",
                        fields["probe accuracy"])
    assert re.fullmatch(r" +(\d+\.\d s|\d+ min \d+ s)", fields["wall time"])
    run = Path(fields["run directory"].strip())
    assert run.parent == tmp_path / "runs" / "jepa-fit"
    assert Path(fields["checkpoint"].strip()).is_file() and run in Path(fields["checkpoint"].strip()).parents
    # The pictures are real, readable PNGs.
    with Image.open(run / "masks.png") as masks, Image.open(run / "training.png") as training:
        assert masks.width >= 4 * 192 and masks.height >= 4 * 192  # 16 views of 32 px, enlarged 6x
        assert training.width >= 900


def test_framework_info_lines_are_off_in_a_command_unless_verbose():
    """Lightning's and LitData's INFO lines are dropped inside a command (verbose=true keeps them);
    the package's own log warnings print as one ``warning:`` line, once, without the log prefix."""
    import logging

    from jepa_datamodules.cli.console import known_noise_filtered

    root = logging.getLogger()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)  # as Hydra's terminal handler
    handler.setFormatter(logging.Formatter("[%(name)s][%(levelname)s] - %(message)s"))
    root.addHandler(handler)
    level, root.level = root.level, logging.INFO
    try:
        for verbose in (False, True):
            with known_noise_filtered(verbose=verbose):
                logging.getLogger("lightning.pytorch.utilities.rank_zero").info("GPU available: False, used: False")
                logging.getLogger("litdata.streaming.dataset").info("max_cache_size is unset")
                for _ in range(2):
                    logging.getLogger("jepa_datamodules.storage.download").warning("Giving up on a mirror.")
            lines = stream.getvalue().splitlines()
            stream.seek(0), stream.truncate()
            framework = [line for line in lines if "GPU available" in line or "max_cache_size" in line]
            assert len(framework) == (2 if verbose else 0), lines
            assert [line for line in lines if "mirror" in line] == ["warning: Giving up on a mirror."]
        logging.getLogger("jepa_datamodules.storage.download").warning("Outside a command.")
        assert stream.getvalue() == "[jepa_datamodules.storage.download][WARNING] - Outside a command.\n"
    finally:
        root.removeHandler(handler)
        root.level = level


def test_cfg_job_after_overrides_and_runs_named_after_the_command(tmp_path):
    shown = _cli("jepa-fit", "data=stl10", "mask=hierarchical", "--cfg", "job", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "_target_: jepa_datamodules.STL10DataModule" in shown.stdout
    assert "_target_: jepa_datamodules.HierarchicalMaskGenerator" in shown.stdout
    # jepa-verify gets its no-run-folder settings from us: flags before or after the overrides still work.
    for args in (("--cfg", "job", "data=cifar10"), ("data=cifar10", "--cfg", "job")):
        shown = _cli("jepa-verify", *args, cwd=tmp_path)
        assert shown.returncode == 0 and "_target_: jepa_datamodules.CIFAR10DataModule" in shown.stdout, shown.stderr
    made = _cli("jepa-prepare", "data=synthetic", "data.num_train=20", "data.num_test=10",
                f"paths.data_dir={tmp_path / 'data'}", f"paths.log_dir={tmp_path / 'runs'}", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["jepa-prepare"]


@pytest.mark.slow
def test_jepa_fit_with_ddp_writes_one_run_directory(tmp_path):
    # Lightning's DDP launcher runs the script again for rank 1; it must reuse rank 0's run dir.
    runs = tmp_path / "runs"
    script = Path(sys.executable).parent / "jepa-fit"
    result = subprocess.run(
        [str(script), "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", f"paths.data_dir={tmp_path / 'data'}",
         f"paths.log_dir={runs}", "data.num_train=64", "data.num_test=16", "data.batch_size=8", "data.num_workers=0",
         "mask.min_keep=4", "trainer.max_steps=3", "model.embed_dim=32", "model.depth=1", "model.predictor_dim=16",
         "model.predictor_depth=1", "model.num_heads=2"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    run_dirs = [p.parent for p in runs.rglob("*.log")]
    assert len(set(run_dirs)) == 1, sorted(set(map(str, run_dirs)))
    run_dir = run_dirs[0]
    assert (run_dir / "train_ddp_process_1.log").exists()  # rank 1 wrote into rank 0's directory
    assert (run_dir / "summary.json").exists()
