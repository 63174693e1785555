"""What the storage, preparation and format tests share beyond the fakes: real mounts, a fresh
loopback mirror per test, and console scripts run the way a user runs them.

* :func:`tmpfs` (a fixture): ``tmpfs(name, size)`` mounts a fresh tmpfs (a tiny one is a full
  disk); :func:`remount_read_only` makes it a real read-only mount (the tests run as root, where
  permission bits do not stop writes); :func:`snapshot` records every entry's mode, size and
  mtime, so any write shows.
* :func:`mirror` (a fixture): a fresh ``LoopbackServer`` over the session's fake archives, so
  request counts start at zero and injected faults never leak into another test;
  :func:`prepared`: a DataModule prepared from it; :func:`assert_labels`: its labels against
  what the fake wrote.
* :func:`run_cli`: a console script with pipes (no TTY) in its own run folder;
  :func:`last_error`: its one ``error:`` sentence; :func:`cifar10_cli`: the arguments that
  point ``jepa-*`` at CIFAR-10 on the mirror.

Test modules import the fixtures by name (``from tests.helpers.storage import mirror``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from jepa_datamodules.storage.verify import STAMP_NAME
from tests.helpers.loopback import LoopbackServer

BIN = Path(sys.executable).parent


@pytest.fixture
def tmpfs(tmp_path):
    """``tmpfs(name, size)`` mounts a fresh tmpfs under tmp_path; all are unmounted afterwards."""
    mounted: list[Path] = []

    def mount(name: str = "mnt", size: str = "512m") -> Path:  # tmpfs takes memory only as it fills
        path = tmp_path / name
        path.mkdir()
        try:
            subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
                           check=True, capture_output=True, text=True)
        except (OSError, subprocess.CalledProcessError) as error:
            pytest.skip(f"mounting a tmpfs is not possible here ({error}); these tests need real mounts")
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def remount_read_only(path: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True, capture_output=True)
    with pytest.raises(OSError):  # really read-only, even for root
        (path / "probe").write_text("x")


@pytest.fixture
def mirror(served):
    """A fresh loopback server over the fake archives: counts start at 0, faults die with it."""
    upstream, fakes = served
    with LoopbackServer(upstream.root) as server:
        yield server, fakes


def run_cli(command: str, *args: str, cwd: Path, umask: int | None = None, env: dict | None = None):
    """A console script as a user runs it: pipes, no TTY, its own run folder."""
    argv = [str(BIN / command), *args, f"paths.log_dir={cwd / 'runs'}"]
    preexec = (lambda: os.umask(umask)) if umask is not None else None
    return subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=600, preexec_fn=preexec,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def last_error(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.startswith("error: ")]
    assert lines and "Traceback" not in stderr, stderr[-3000:]
    return lines[-1][len("error: "):]


def snapshot(folder: Path) -> dict[str, tuple[int, int, int]]:
    """Every entry under ``folder`` with its mode, size and mtime: any write changes it."""
    state = {}
    for path in sorted(folder.rglob("*")):
        st = path.lstat()
        state[str(path.relative_to(folder))] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return state


def cifar10_cli(data_dir: Path, server: LoopbackServer) -> list[str]:
    return ["data=cifar10", f"paths.data_dir={data_dir}", f"data.mirrors=[{server.url}]"]


def prepared(cls, mirror, tmp_path: Path, archive: str, **options):
    """``cls`` with its defaults (and ``options``), prepared from the mirror: the archive fetched
    once, verified, stamped; returns (the DataModule, what the fake wrote per split)."""
    server, fakes = mirror
    dm = cls(data_dir=tmp_path / "data", mirrors=[server.url], **options)
    dm.prepare_data()
    assert server.count(f"/{archive}") == 1 and (dm.folder / STAMP_NAME).is_file()
    return dm, fakes[cls.spec_name].written


def assert_labels(source, written: dict[str, str], wnids: list[str]) -> None:
    """Every written image is read, with the label of its wnid in sorted order (-1 for none)."""
    found = dict(zip(source.paths, source.labels.tolist()))
    assert found == {rel: sorted(wnids).index(wnid) if wnid else -1 for rel, wnid in written.items()}
