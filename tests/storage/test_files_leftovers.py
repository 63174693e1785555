"""What killed runs left behind, told from what live runs are writing: a fresh temporary file
may be a writer's that is still running, a folder's own swaps are its own to remove, and a
staging entry deep inside a dataset is guarded by the dataset's lock, not by one of its own
(``storage/files.py``'s ``staging_entries`` and ``remove_stale_staging``); the staging of a killed
prepare is reported as reclaimable by ``jepa-datasets`` and removed by the next prepare."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jepa_datamodules import SyntheticDataModule
from jepa_datamodules.catalog import get_spec
from jepa_datamodules.cli.inventory import disk_state
from jepa_datamodules.storage.files import TEMP_GRACE_S, remove_stale_staging, staging_entries, temp_name
from jepa_datamodules.storage.locks import dataset_lock
from tests.helpers.storage import run_cli

TINY_SYNTHETIC = dict(num_train=64, num_test=32, batch_size=16, num_workers=0, progress=False)
SETTING = "32px-10c-64-32-seed0"  # the folder of TINY_SYNTHETIC under <data_dir>/synthetic


def _aged(path: Path, seconds: float) -> Path:
    then = time.time() - seconds
    os.utime(path, (then, then))
    return path


def test_a_fresh_temporary_file_is_kept_and_an_old_one_removed(tmp_path):
    folder = tmp_path / "cifar10"
    folder.mkdir()
    fresh = temp_name(folder / "labels.npy")
    fresh.write_bytes(b"a writer is still filling this")
    old = temp_name(folder / "images.npy")
    old.write_bytes(b"left by a run killed two hours ago")
    _aged(old, TEMP_GRACE_S + 600)
    _aged(fresh, 60)  # a minute ago: well inside the grace period
    assert staging_entries(folder) == [old]
    with dataset_lock(folder):
        assert remove_stale_staging(folder) == [old]
    assert fresh.read_bytes() == b"a writer is still filling this" and not old.exists()


def test_the_folders_own_swaps_go_while_a_live_neighbours_staging_stays(tmp_path):
    folder, neighbour = tmp_path / "stl10", tmp_path / "cifar10"
    own_old, own_partial = tmp_path / ".stl10.old-1a2b3c4d", tmp_path / ".stl10.partial-5e6f7a8b"
    live = tmp_path / ".cifar10.partial-9c0d1e2f"
    for path in (folder, own_old / "sub", own_partial, live):
        path.mkdir(parents=True)
    (own_old / "sub" / "x.bin").write_bytes(b"old copy")
    with dataset_lock(neighbour):  # another job is extracting cifar10 right now
        with dataset_lock(folder):  # remove_stale_staging is called holding the folder's lock
            removed = remove_stale_staging(folder)
        assert sorted(removed) == sorted([own_old, own_partial])
        assert not own_old.exists() and not own_partial.exists() and live.is_dir()
    with dataset_lock(folder):
        assert remove_stale_staging(folder) == [live]  # its job is gone now


def test_staging_inside_a_dataset_is_live_while_the_dataset_lock_is_held(data_dir):
    imagenet = data_dir / "imagenet"
    partial = imagenet / "train" / ".n01440764.partial-1a2b3c4d"  # one ImageNet class being unpacked
    partial.mkdir(parents=True)
    (partial / "n01440764_1.JPEG").write_bytes(b"\xff\xd8" + b"\0" * 1000)
    with dataset_lock(imagenet):  # jepa-prepare unpacking the class right now
        assert disk_state(get_spec("imagenet"), data_dir).leftovers == ()
    assert disk_state(get_spec("imagenet"), data_dir).leftovers == (partial,)  # its run is gone


def test_a_swap_cut_between_its_renames_is_put_back_not_deleted(tmp_path):
    folder = tmp_path / "imagenet"
    (folder / "train").mkdir(parents=True)
    # swap_in had moved val/ aside and was killed before the new copy was renamed in.
    aside = folder / ".val.old-0a1b2c3d"
    aside.mkdir()
    (aside / "ILSVRC2012_val_00000001.JPEG").write_bytes(b"the user's only copy")
    built = folder / ".val.partial-4e5f6a7b"
    built.mkdir()
    # And an old copy whose replacement did arrive: that one is garbage.
    (folder / ".train.old-5a6b7c8d").mkdir()
    with dataset_lock(folder):
        removed = remove_stale_staging(folder)
    assert sorted(removed) == [folder / ".train.old-5a6b7c8d", built]
    assert (folder / "val" / "ILSVRC2012_val_00000001.JPEG").read_bytes() == b"the user's only copy"
    assert sorted(p.name for p in folder.iterdir()) == ["train", "val"]


_KILLED_GENERATION = """
import sys
from jepa_datamodules import SyntheticDataModule
SyntheticDataModule(data_dir=sys.argv[1], num_train=20000, num_test=20000, num_workers=0).prepare_data()
"""


@pytest.mark.slow
def test_staging_of_a_killed_prepare_is_reclaimable_and_the_next_prepare_removes_it(tmp_path, data_dir):
    script = tmp_path / "generate.py"
    script.write_text(_KILLED_GENERATION)
    synthetic = data_dir / "synthetic"
    proc = subprocess.Popen([sys.executable, str(script), str(data_dir)], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 180
        # Killed once a megabyte is written, so the reclaimable size below is in MB on any machine.
        while not any(p.stat().st_size > 1_000_000 for p in synthetic.glob(".*.partial-*/train_images.npy")):
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "generation never wrote its first file"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)  # as an OOM kill or a pre-empted job: no clean-up runs
        proc.wait(timeout=30)
    finally:
        proc.kill()
        proc.stderr.close()
    staging = list(synthetic.glob(".*.partial-*"))
    assert len(staging) == 1

    shown = run_cli("jepa-datasets", f"paths.data_dir={data_dir}", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr[-2000:]
    row = next(line for line in shown.stdout.splitlines() if line.startswith("synthetic "))
    assert row.split()[-2:] == ["absent", "-"], row  # the staging is not the dataset on disk ...
    note = next(line for line in shown.stdout.splitlines() if line.startswith("reclaimable: "))
    assert " in 1 unfinished staging entry of synthetic left by killed runs " in note  # ... but reclaimable
    assert str(staging[0]) in note and "MB" in note

    SyntheticDataModule(data_dir=data_dir, **TINY_SYNTHETIC).prepare_data()  # another setting, under its lock
    assert not staging[0].exists()
    again = run_cli("jepa-datasets", f"paths.data_dir={data_dir}", cwd=tmp_path)
    assert "reclaimable:" not in again.stdout


def test_staging_being_written_by_a_live_prepare_is_not_reported(data_dir):
    from jepa_datamodules.storage.locks import dataset_lock
    from jepa_datamodules.cli.inventory import disk_state
    from jepa_datamodules.catalog import get_spec
    from jepa_datamodules.storage.files import staging_folder

    target = data_dir / "synthetic" / SETTING
    with dataset_lock(target):  # a prepare in progress holds its setting's lock
        staging = staging_folder(target)
        (staging / "train_images.npy").write_bytes(b"\0" * 10_000)
        assert disk_state(get_spec("synthetic"), data_dir).leftovers == ()
    assert disk_state(get_spec("synthetic"), data_dir).leftovers == (staging,)  # its run is gone
