"""What a researcher sees: logs without adverts, warnings or carriage returns when the output is
not a terminal, plain progress lines in logs, an honest summary, useful --help, and run folders
only for commands that make something. Commands run as subprocesses with pipes (no TTY), as
in a SLURM job."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jepa_datamodules import progress
from jepa_datamodules.cli.fitting import FitSummary, chance_verdict
from jepa_datamodules.formats.synthetic import generate

BIN = Path(sys.executable).parent
COMMANDS = ("jepa-fit", "jepa-prepare", "jepa-verify", "jepa-bench", "jepa-datasets")
NOISE = re.compile(r"Tip:|litlogger|litmodels|tensorboardX|[Dd]eprecat|Warning:|warn\(")


def cli(command: str, *args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """A console script with stdin, stdout and stderr not terminals, as in a batch job.

    The output is decoded from bytes, not read with ``text=True``: universal newlines would
    turn every carriage return into a newline, and a check for ``\r`` could never fail."""
    result = subprocess.run([str(BIN / command), *args], capture_output=True, cwd=cwd, timeout=900,
                            stdin=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})
    result.stdout, result.stderr = result.stdout.decode(errors="replace"), result.stderr.decode(errors="replace")
    return result


# ----------------------------------------------------------------------------- progress lines
def test_progress_rule_bars_on_a_terminal_lines_otherwise(monkeypatch):
    assert progress.mode(False) == "off" and progress.mode(True) == "bar"
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert progress.mode(None) == "lines"
    with pytest.raises(ValueError, match="Unknown value 'loud' for argument progress"):
        progress.mode("loud")


def test_plain_lines_every_tenth_and_after_long_silence(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    stream = io.StringIO()
    bar = progress.PlainProgress(200, "md5 big.tar", unit="files", stream=stream)
    for _ in range(200):
        clock[0] += 1.0  # one file a second: 20 s per 10 %
        bar.update(1)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert lines[0] == "md5 big.tar: 10 % (20 of 200 files), 20 s"
    assert len(lines) == 10 and lines[-1] == "md5 big.tar: done, 100 % (200 of 200 files), 200 s"
    # Unknown total: a line after 30 s of silence, none before.
    stream = io.StringIO()
    bar = progress.PlainProgress(None, "download x", byte_units=True, stream=stream)
    clock[0] += 29.0
    bar.update(5 << 20)
    assert stream.getvalue() == ""
    clock[0] += 1.0
    bar.update(1 << 20)
    assert stream.getvalue() == "download x: 6.3 MB, 30 s\n"  # 6 MiB, in the units of every other size


def test_quick_steps_say_nothing(monkeypatch):
    stream = io.StringIO()
    with progress.PlainProgress(10, "extract tiny.tgz", unit="files", stream=stream) as bar:
        for _ in range(10):
            bar.update(1)
    assert stream.getvalue() == ""


def test_progress_threshold_comes_from_the_environment_and_refuses_nonsense():
    probe = "from jepa_datamodules import progress; print(progress.LINE_MIN_SECONDS)"
    for value, expected in (("0", "0.0"), ("5", "5.0"), ("", "2.0")):
        result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                                env={**os.environ, "JEPA_PROGRESS_MIN_SECONDS": value})
        assert result.stdout.strip() == expected, result.stderr[-2000:]
    refused = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                             env={**os.environ, "JEPA_PROGRESS_MIN_SECONDS": "soon"})
    assert refused.returncode != 0
    assert ("JEPA_PROGRESS_MIN_SECONDS='soon' is invalid; allowed is a number of seconds, 0 or more."
            in refused.stderr.strip().splitlines()[-1])


def test_synthetic_generation_reports_plain_lines_in_a_log(tmp_path, monkeypatch, capfd):
    monkeypatch.setattr(progress, "LINE_MIN_SECONDS", 0.0)  # a test-sized set is generated in a blink
    generate(tmp_path / "set", num_train=400, num_test=100, resolution=16, num_classes=10, seed=0)
    err = capfd.readouterr().err  # stderr is a pipe here: plain lines, not a bar
    lines = err.splitlines()
    assert "\r" not in err and lines, err
    assert all(line.startswith("generate synthetic 16px: ") for line in lines)
    assert lines[-1].startswith("generate synthetic 16px: done, 100 % (500 of 500 images)")
    generate(tmp_path / "quiet", num_train=40, num_test=10, resolution=16, num_classes=10, seed=0, progress=False)
    assert capfd.readouterr().err == ""


# ----------------------------------------------------------------------------- the summary
def test_above_chance_only_when_the_validation_set_supports_it():
    # 3 training steps on the synthetic set: 0.118 on 1,024 images is within chance's spread.
    smoke = chance_verdict(0.118, 1024, 0.1)
    assert not smoke["above"] and 0.01 < smoke["p_value"] < 0.1
    assert smoke["text"].startswith("not distinguishable from chance 0.100 (n=1,024 validation images, one-sided")
    assert 0.118 < smoke["needed"] < 0.13
    # After `make demo` (256 steps): 0.431 on the same 1,024 images is far above it.
    demo = chance_verdict(0.431, 1024, 0.1)
    assert demo["above"] and demo["p_value"] < 1e-6
    assert demo["text"] == "above chance 0.100 (n=1,024 validation images, one-sided binomial p < 0.001)"
    # The same accuracy on 20 images proves nothing.
    assert not chance_verdict(0.2, 20, 0.1)["above"]
    # One image (a small folder's 1 % carve-out): no accuracy can pass, so no threshold above 1 is printed.
    tiny = chance_verdict(1.0, 1, 0.5)
    assert not tiny["above"] and tiny["needed"] is None
    assert tiny["text"].startswith("not tested, too few validation images (n=1; even 1 of 1 right")


def test_probe_panel_of_a_smoke_run_has_a_chance_line(tmp_path):
    summary = FitSummary(tmp_path)
    summary.probe_curve = [(3, 0.118)]
    path = summary.plot([0.52, 0.42, 0.36], chance=0.1)
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width >= 900 and image.height >= 330
        pixels = np.asarray(image.convert("RGB")).astype(int)
    right = pixels[:, pixels.shape[1] // 2:]
    red = (right[..., 0] - right[..., 1] > 60) & (right[..., 0] - right[..., 2] > 60)  # the dashed red chance line
    assert red.sum(1).max() >= 100, "no horizontal chance line in the probe panel"


# ----------------------------------------------------------------------------- --help
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


# ----------------------------------------------------------------------------- run folders
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


# ----------------------------------------------------------------------------- a short fit
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


def test_prepare_with_nothing_to_do_answers_from_the_stamp_without_torch(tmp_path):
    """A second `jepa-prepare` of a verified dataset reads the stamp only: torch and Lightning are
    never imported (they are most of a command's start-up; `time jepa-prepare data=synthetic`)."""
    small = ["data=synthetic", "data.num_train=64", "data.num_test=16", f"paths.data_dir={tmp_path / 'data'}",
             f"paths.log_dir={tmp_path / 'runs'}"]
    first = cli("jepa-prepare", *small, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    assert len(list((tmp_path / "runs").glob("jepa-prepare/*"))) == 1
    probe = (
        "import sys\n"
        "from jepa_datamodules.cli import apps\n"
        f"sys.argv = ['jepa-prepare', *{small!r}]\n"
        "apps.prepare()\n"
        "print('heavy:', sorted(m for m in ('torch', 'lightning', 'torchvision') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("synthetic: ready and verified at "), result.stdout + result.stderr[-2000:]
    assert lines[-1] == "heavy: []"
    assert len(list((tmp_path / "runs").glob("jepa-prepare/*"))) == 1  # the first run's; the second made nothing
