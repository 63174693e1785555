"""``jepa_datamodules.progress``: the one progress rule. Bars on a terminal, plain lines
otherwise (every tenth, after a long silence, none for quick steps), the threshold from the
environment, and synthetic generation reporting through it."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest

from jepa_datamodules import progress
from jepa_datamodules.formats.synthetic import generate


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
