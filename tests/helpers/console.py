"""The console scripts run as subprocesses, the way the ``tests/cli`` tests call them: as a batch
job (pipes, no terminal), as a user types them in a folder of their own, and the one ``error:``
line a user mistake must end with."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

#: The folder of the venv's console scripts (``jepa-fit``, ``jepa-prepare``, ...).
BIN = Path(sys.executable).parent


def batch_job(command: str, *args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """A console script with stdin, stdout and stderr not terminals, as in a batch job.

    The output is decoded from bytes, not read with ``text=True``: universal newlines would
    turn every carriage return into a newline, and a check for ``\\r`` could never fail."""
    result = subprocess.run([str(BIN / command), *args], capture_output=True, cwd=cwd, timeout=900,
                            stdin=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})
    result.stdout, result.stderr = result.stdout.decode(errors="replace"), result.stderr.decode(errors="replace")
    return result


def typed(command: str, *args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """A console script typed in ``cwd``, its data under ``cwd/data`` and its runs under ``cwd/runs``."""
    return subprocess.run([str(BIN / command), *args], capture_output=True, text=True, cwd=cwd, timeout=300,
                          stdin=subprocess.DEVNULL,
                          env={**os.environ, "JEPA_DATA_DIR": str(cwd / "data"), "JEPA_LOG_DIR": str(cwd / "runs"),
                               **(env or {})})


def run_command(*args: str, env: dict | None = None, cwd: Path) -> subprocess.CompletedProcess:
    """``args[0]`` (a console script) with the rest as its arguments, one thread for torch."""
    script = BIN / args[0]
    return subprocess.run([str(script), *args[1:]], capture_output=True, text=True, cwd=cwd, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The single ``error:`` line of a refused command (exit status 2, nothing on stdout)."""
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-2000:]
    assert result.stdout == ""
    return lines[0]
