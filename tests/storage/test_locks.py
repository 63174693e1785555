"""``storage/locks.py``'s ``dataset_lock``: two processes preparing one folder take turns, the
second waiting until the first releases it (the lock file beside the folder)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import filelock
import pytest

import jepa_datamodules.storage.locks as locks
from jepa_datamodules.storage.locks import dataset_lock


# The child imports locks.py alone (the package imports its modules lazily, so no torch is
# loaded: that would cost seconds per process on a small CI machine and is irrelevant to locking).
_LOCK_CHILD = r"""
import importlib, sys, time
from pathlib import Path
module = importlib.import_module(sys.argv[1])
assert "torch" not in sys.modules
folder, log, name, release = sys.argv[2:6]
def note(text):
    with open(log, "a") as fh:
        fh.write(text + "\n")
note(name + " trying")
with module.dataset_lock(Path(folder)):
    note(name + " start")
    while release != "-" and not Path(release).exists():
        time.sleep(0.02)
    note(name + " end")
"""


def _wait_for_line(log: Path, line: str, procs: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if log.exists() and line in log.read_text().splitlines():
            return
        if any(proc.poll() not in (None, 0) for proc in procs):
            raise AssertionError("a lock child failed; see its stderr above")
        time.sleep(0.02)
    raise AssertionError(f"{line!r} never appeared in {log}")


def test_dataset_lock_serialises_two_processes(tmp_path):
    folder, log, release = tmp_path / "data" / "cifar10", tmp_path / "log.txt", tmp_path / "release"
    script = [sys.executable, "-c", _LOCK_CHILD, locks.__name__, str(folder), str(log)]
    # Children inherit this process's stderr, so a crash in one shows up in pytest's report.
    first = subprocess.Popen([*script, "A", str(release)])
    procs = [first]
    try:
        _wait_for_line(log, "A start", procs)
        assert (tmp_path / "data" / ".cifar10.lock").exists()
        with pytest.raises(filelock.Timeout):
            dataset_lock(folder, timeout=0).acquire()
        procs.append(subprocess.Popen([*script, "B", "-"]))
        _wait_for_line(log, "B trying", procs)
        time.sleep(0.3)  # give a broken lock the chance to let B in while A still holds it
        release.touch()
        assert [proc.wait(timeout=60) for proc in procs] == [0, 0]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert log.read_text().splitlines() == ["A trying", "A start", "B trying", "A end", "B start", "B end"]
