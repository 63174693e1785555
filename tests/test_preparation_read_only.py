"""Shared cluster storage and hostile filesystems, met the way a user meets them.

Read-only datasets are real read-only mounts (a tmpfs prepared, then remounted ``ro``): the
tests run as root, where permission bits do not stop writes. A full disk is a tiny tmpfs.
Shared permissions are the real modes of what ``jepa-prepare`` / ``jepa-fit`` create in a
subprocess started under ``umask 022`` or ``umask 002``. Console scripts run with pipes (no
TTY) in folders outside the repository.
"""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from jepa_datamodules import CIFAR10DataModule, ImageNetDataModule, SyntheticDataModule
from jepa_datamodules.storage import download as dl
from jepa_datamodules.storage.extract import safe_extract
from jepa_datamodules.formats.base import FormatError
from jepa_datamodules import StorageError
from jepa_datamodules.cli.terms import HydraTerms, console_text
from jepa_datamodules.storage.verify import STAMP_NAME, VerificationError
from tests.helpers.fake_imagenet import make_imagenet_layout
from tests.helpers.fakes import catalog_override
from tests.helpers.loopback import LoopbackServer

ARCHIVE = "cifar-10-python.tar.gz"
EXTRACTED = "cifar-10-python"
BIN = Path(sys.executable).parent
SMALL = dict(image_size=32, patch_size=4, batch_size=8, num_workers=0, progress=False)
TINY_SYNTHETIC = dict(num_train=64, num_test=32, batch_size=16, num_workers=0, progress=False)
TINY_SYNTHETIC_ARGS = ["data=synthetic", "data.num_train=64", "data.num_test=32", "data.batch_size=16",
                       "data.num_workers=0"]
SETTING = "32px-10c-64-32-seed0"  # the folder of TINY_SYNTHETIC under <data_dir>/synthetic


# ------------------------------------------------------------------------------ helpers
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


# ------------------------------------------------------------------------ read-only storage
@pytest.mark.slow
def test_verified_dataset_on_read_only_storage_trains_and_writes_nothing(tmpfs, tmp_path):
    data = tmpfs()
    SyntheticDataModule(data_dir=data, **TINY_SYNTHETIC).prepare_data()
    remount_read_only(data)
    before = snapshot(data)

    result = run_cli("jepa-fit", *TINY_SYNTHETIC_ARGS, f"paths.data_dir={data}", "trainer.max_steps=2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "== jepa-fit summary ==" in result.stdout
    verified = run_cli("jepa-verify", *TINY_SYNTHETIC_ARGS, f"paths.data_dir={data}", cwd=tmp_path)
    assert verified.returncode == 0, verified.stderr[-3000:]
    assert "ok: synthetic is complete and intact" in verified.stdout
    assert f"warning: {data / 'synthetic' / SETTING} is on a read-only file system" in verified.stderr
    assert snapshot(data) == before


def test_verified_cifar10_on_read_only_storage_prepares_sets_up_and_loads(mirror, tmpfs):
    server, fakes = mirror
    data = tmpfs()
    CIFAR10DataModule(data_dir=data, mirrors=[server.url], **SMALL).prepare_data()
    remount_read_only(data)
    before = snapshot(data)

    dm = CIFAR10DataModule(data_dir=data, mirrors=[server.url], download=False, **SMALL)
    dm.prepare_data()  # the stamp matches: no lock file is taken, nothing is written
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["images"].shape == (8, 3, 32, 32)
    np.testing.assert_array_equal(dm.open_split("test").images, fakes["cifar10"].splits["test"])
    assert snapshot(data) == before
    assert server.count(ARCHIVE) == 1


def test_unstamped_imagenet_on_read_only_storage_is_verified_and_indexed_in_the_user_cache(tmpfs, tmp_path,
                                                                                           monkeypatch):
    data = tmpfs()
    wnids = ["n01440764", "n01443537", "n01484850"]
    make_imagenet_layout(data / "imagenet", wnids, train_per_class=2, val_per_class=1)
    monkeypatch.setenv("JEPA_CATALOG", str(catalog_override(
        tmp_path / "catalog.yaml", {"imagenet": {"splits": {"train": 6, "val": 3}, "num_classes": 3}})))
    cache = tmp_path / "user-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    remount_read_only(data)  # laid out by an administrator, never prepared by this package
    before = snapshot(data)

    dm = ImageNetDataModule(data_dir=data, **{**SMALL, "batch_size": 2})
    with pytest.warns(UserWarning, match=r"is on a read-only file system: imagenet .* passed verification, but the "
                                         r"stamp .* cannot be written there"):
        dm.prepare_data()
    dm.setup("fit")
    assert next(iter(dm.train_dataloader()))["images"].shape == (2, 3, 32, 32)
    assert snapshot(data) == before
    # The file-list index went to the user's cache folder, one per split, and is read back from there.
    indexes = sorted(p.name.split("-")[-1] for p in (cache / "jepa_datamodules" / "index").iterdir())
    assert indexes == ["train.npz", "val.npz"]
    written = {p: p.stat().st_mtime_ns for p in (cache / "jepa_datamodules" / "index").iterdir()}
    again = ImageNetDataModule(data_dir=data, **SMALL)
    assert len(again.open_split("train")) == 6
    assert {p: p.stat().st_mtime_ns for p in written} == written


def test_jepa_prepare_says_an_unstamped_read_only_copy_is_verified_in_one_warning_line(tmpfs, tmp_path):
    """The console shows the read-only notice as a plain ``warning:`` line (like ``error:``), not
    as Python's ``file.py:123: UserWarning`` with a source line under it."""
    data = tmpfs()
    make_imagenet_layout(data / "imagenet", ["n01440764", "n01443537"], train_per_class=2, val_per_class=1)
    catalog = catalog_override(tmp_path / "catalog.yaml", {"imagenet": {"splits": {"train": 4, "val": 2}, "num_classes": 2}})
    remount_read_only(data)
    result = run_cli("jepa-prepare", "data=imagenet", f"paths.data_dir={data}", "data.progress=false", cwd=tmp_path,
                     env={"JEPA_CATALOG": str(catalog), "XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr[-3000:]
    notices = [line for line in result.stderr.splitlines() if "passed verification" in line]
    assert len(notices) == 1, result.stderr[-3000:]
    assert re.fullmatch(r"warning: \S+ is on a read-only file system: imagenet at \S+ passed verification, but the stamp .*"
                        r"run `jepa-prepare data=imagenet paths\.data_dir=\S+ data\.progress=false` once where it is "
                        r"writable to record it\.", notices[0]), notices[0]
    assert "UserWarning" not in result.stderr and "warnings.warn" not in result.stderr


def test_work_needed_on_read_only_storage_is_one_sentence_before_any_download(mirror, tmpfs, tmp_path):
    server, _ = mirror
    data = tmpfs()
    remount_read_only(data)

    with pytest.raises(StorageError) as error:
        CIFAR10DataModule(data_dir=data, mirrors=[server.url], **SMALL).prepare_data()
    sentence = str(error.value)
    assert sentence.startswith(f"{data} is on a read-only file system, so the download of {ARCHIVE} (")
    assert "and the extracted files (186.2 MB) cannot be written there (to prepare cifar10)" in sentence
    assert "point data_dir (or $JEPA_DATA_DIR) at a writable folder" in sentence
    assert (f"or run `prepare_data()` of the cifar10 DataModule with data_dir='{data}', mirrors=['{server.url}'] "
            f"once from an account or machine that can write in {data / 'cifar10'}.") in sentence

    result = run_cli("jepa-prepare", *cifar10_cli(data, server), cwd=tmp_path)
    assert result.returncode == 2
    shown = last_error(result.stderr)  # the exception's sentence, in the console's words
    assert shown == console_text(error.value, HydraTerms())
    assert "point paths.data_dir (or $JEPA_DATA_DIR) at a writable folder" in shown
    assert (f"or run `jepa-prepare data=cifar10 paths.data_dir={data} 'data.mirrors=[{server.url}]'` once from "
            f"an account or machine that can write in {data / 'cifar10'}.") in shown
    assert server.requests == []


# ------------------------------------------------------------------- data_dir mistakes
@pytest.mark.parametrize("case", ["a file", "under a file", "under a read-only mount"])
def test_unusable_data_dir_is_one_sentence_from_python_and_exit_2_from_the_console(case, tmpfs, tmp_path):
    if case == "a file":
        data = tmp_path / "data"
        data.write_text("not a folder")
        expected = f"data_dir='{data}' is a file, not a folder; point data_dir"
    elif case == "under a file":
        (tmp_path / "plain").write_text("not a folder")
        data = tmp_path / "plain" / "data"
        expected = f"data_dir='{data}' cannot be created: {tmp_path / 'plain'} is a file, not a folder; point data_dir"
    else:
        mount = tmpfs()
        remount_read_only(mount)
        data = mount / "new" / "data"
        expected = (f"{data / 'synthetic'} cannot be created: {mount} is on a read-only file system, so the "
                    f"generated synthetic images and labels (64 + 32 images) cannot be written there")
    with pytest.raises(StorageError) as error:
        SyntheticDataModule(data_dir=data, **TINY_SYNTHETIC).prepare_data()
    sentence = str(error.value)
    assert sentence.startswith(expected), sentence
    assert not re.search(r"\.\s+[A-Z]", sentence) and sentence.endswith(".")  # one sentence

    # Typed in the order the Python API spells its settings, the fix hint comes out the same.
    result = run_cli("jepa-prepare", "data=synthetic", f"paths.data_dir={data}", "data.num_train=64",
                     "data.num_test=32", cwd=tmp_path)
    assert result.returncode == 2
    assert last_error(result.stderr) == console_text(error.value, HydraTerms())


# ------------------------------------------------------------------------------- full disks
def fill_disk_when(part: Path, size: int, filler: Path) -> None:
    """Once ``part`` holds ``size`` bytes, fill its disk with ``filler``: another job on the same scratch."""
    deadline = time.monotonic() + 120
    while not (part.exists() and part.stat().st_size >= size) and time.monotonic() < deadline:
        time.sleep(0.01)
    with open(filler, "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError:
            pass


def test_disk_filling_up_mid_download_names_need_and_place_and_keeps_nothing(tmpfs, tmp_path, monkeypatch):
    www = tmp_path / "www"
    www.mkdir()
    payload = np.random.default_rng(0).bytes(3_000_000)
    (www / "big.bin").write_bytes(payload)
    disk = tmpfs("disk", "4m")  # room for the file when the download starts ...
    monkeypatch.setattr(dl, "_sleep", lambda seconds: None)
    dest = disk / "big.bin"
    part = disk / "big.bin.part"

    with LoopbackServer(www) as server:
        server.stall("big.bin", seconds=1.0, after_bytes=500_000)
        filler = threading.Thread(target=fill_disk_when, args=(part, 500_000, disk / "other-job.bin"))
        filler.start()
        with pytest.raises(StorageError) as error:
            dl.fetch([server.url_for("big.bin")], dest, md5=dl.hashlib.md5(payload).hexdigest(), size=len(payload),
                     progress=False, timeout=10.0)
        filler.join()
    sentence = str(error.value)
    assert sentence.startswith(f"The disk holding {disk} filled up while writing the download of big.bin: "
                               f"it needs 3.0 MB there, "), sentence
    assert sentence.endswith("nothing half-written was kept: free space there or point data_dir "
                             "(or $JEPA_DATA_DIR) at a disk with room.")
    assert sorted(p.name for p in disk.iterdir()) == ["other-job.bin"]


@pytest.mark.slow
def test_jepa_prepare_on_a_disk_filling_up_mid_download_exits_2_with_one_sentence(mirror, tmpfs, tmp_path,
                                                                                  monkeypatch):
    server, fakes = mirror
    entries = yaml.safe_load(Path(os.environ["JEPA_CATALOG"]).read_text())
    entries["cifar10"]["archives"][0]["extracted_size"] = 0  # let the download start on a small disk
    monkeypatch.setenv("JEPA_CATALOG", str(catalog_override(tmp_path / "catalog.yaml", entries)))
    disk = tmpfs("disk", "2m")
    half = fakes["cifar10"].size // 2
    server.stall(ARCHIVE, seconds=1.0, after_bytes=half)
    filler = threading.Thread(target=fill_disk_when, args=(disk / "cifar10" / f"{ARCHIVE}.part", half,
                                                           disk / "other-job.bin"))
    filler.start()
    result = run_cli("jepa-prepare", *cifar10_cli(disk, server), cwd=tmp_path)
    filler.join()
    assert result.returncode == 2
    sentence = last_error(result.stderr)
    assert sentence.startswith(f"The disk holding {disk / 'cifar10'} filled up while writing the download of "
                               f"{ARCHIVE}: it needs "), sentence
    assert "nothing half-written was kept: free space there or point paths.data_dir" in sentence  # console words
    assert sorted(p.name for p in (disk / "cifar10").iterdir()) == []  # no .part, no archive, no stamp


def test_disk_filling_up_mid_extraction_leaves_nothing_half_extracted(tmpfs, tmp_path):
    # 300 small members: each takes a whole 4 kB page on the disk, more than their byte count,
    # which is all an up-front free-space check can know.
    archive = tmp_path / "many.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for i in range(300):
            member = tmp_path / f"file{i:03d}.txt"
            member.write_text("x" * 100)
            tar.add(member, arcname=f"top/file{i:03d}.txt")
    disk = tmpfs("disk", "256k")
    with pytest.raises(StorageError) as error:
        safe_extract(archive, disk / "ds", progress=False)
    sentence = str(error.value)
    assert sentence.startswith(f"The disk holding {disk} filled up while writing the files extracted from "
                               f"many.tar.gz: it needs 30.0 kB there, "), sentence
    assert list(disk.iterdir()) == []  # no target, no .partial-* staging


def test_disk_too_small_for_the_extraction_fails_before_it_and_keeps_the_archive(mirror, tmpfs, tmp_path,
                                                                                   monkeypatch):
    server, fakes = mirror
    size = fakes["cifar10"].size
    # A mirror's re-packed archive whose extracted size the catalog does not know: only the
    # extraction itself can tell, from the archive's member list.
    entries = yaml.safe_load(Path(os.environ["JEPA_CATALOG"]).read_text())
    entries["cifar10"]["archives"][0]["extracted_size"] = 0
    monkeypatch.setenv("JEPA_CATALOG", str(catalog_override(tmp_path / "catalog.yaml", entries)))
    disk = tmpfs("disk", f"{(size * 3 // 2) // 4096 * 4096}")  # the archive fits, its contents do not
    with pytest.raises(StorageError) as error:
        CIFAR10DataModule(data_dir=disk, mirrors=[server.url], **SMALL).prepare_data()
    assert str(error.value).startswith(f"Not enough free space to extract {ARCHIVE}: needs ")
    assert f" at {disk / 'cifar10'}, only " in str(error.value)
    folder = disk / "cifar10"
    assert sorted(p.name for p in folder.iterdir()) == [ARCHIVE]  # nothing half-extracted, no stamp

    result = run_cli("jepa-prepare", *cifar10_cli(disk, server), cwd=tmp_path)
    assert result.returncode == 2
    assert last_error(result.stderr) == console_text(error.value, HydraTerms())
    assert server.count(ARCHIVE) == 1  # the complete archive was kept and reused


# -------------------------------------------------------------------- hand-placed archives
@pytest.mark.parametrize("damage", ["truncated", "same size, other bytes"])
def test_wrong_hand_placed_archive_is_named_before_any_extraction(damage, served, data_dir):
    _, fakes = served
    fake = fakes["cifar10"]
    folder = data_dir / "cifar10"
    folder.mkdir()
    good = fake.path.read_bytes()
    placed = good[: len(good) // 2] if damage == "truncated" else good[:-1] + bytes([good[-1] ^ 0xFF])
    (folder / ARCHIVE).write_bytes(placed)

    with pytest.raises(dl.DownloadError) as error:
        CIFAR10DataModule(data_dir=data_dir, download=False, **SMALL).prepare_data()
    sentence = str(error.value)
    expected = f"expected {fake.size:,} bytes with md5 {fake.md5}"
    if damage == "truncated":
        assert sentence.startswith(f"{folder / ARCHIVE} is not the official {ARCHIVE}: it has {len(placed):,} bytes, "
                                   f"{expected}; it is truncated or another file, so nothing was extracted")
    else:
        found = dl.hashlib.md5(placed).hexdigest()
        assert sentence.startswith(f"{folder / ARCHIVE} is not the official {ARCHIVE}: it has the expected "
                                   f"{fake.size:,} bytes but md5 {found}, {expected}")
    assert f"run `prepare_data()` of the cifar10 DataModule with data_dir='{data_dir}' to download it" in sentence
    assert sorted(p.name for p in folder.iterdir()) == [ARCHIVE]


# ----------------------------------------------------------- errors that need no data
@pytest.mark.parametrize("override, message", [
    ("mask=none", "mask=none gives batches without context and target masks, which the JEPA model of jepa-fit "
                  "needs; allowed are mask=multiblock or mask=hierarchical."),
    ("trainer.max_steps=abc", "trainer.max_steps='abc' is invalid; allowed is a whole number (-1 = no limit)."),
])
def test_settings_errors_fail_before_any_download(override, message, mirror, data_dir, tmp_path):
    server, _ = mirror
    started = time.monotonic()
    result = run_cli("jepa-fit", *cifar10_cli(data_dir, server), override, cwd=tmp_path)
    assert result.returncode == 2
    assert last_error(result.stderr) == message
    assert server.requests == [] and list(data_dir.iterdir()) == []
    assert "Params" not in result.stdout  # no model summary was printed either
    assert time.monotonic() - started < 120


# ------------------------------------------------------------------------------ leftovers
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


def test_truncated_generated_file_is_regenerated_like_a_deleted_one(data_dir):
    dm = SyntheticDataModule(data_dir=data_dir, **TINY_SYNTHETIC)
    dm.prepare_data()
    images = dm.folder / "train_images.npy"
    original = images.read_bytes()
    for damage in ("delete", "truncate"):
        if damage == "delete":
            images.unlink()
        else:
            os.truncate(images, len(original) // 2)
        SyntheticDataModule(data_dir=data_dir, **TINY_SYNTHETIC).prepare_data()
        assert images.read_bytes() == original, damage  # generated again, from the same seed
        assert (dm.folder / STAMP_NAME).is_file()


# ------------------------------------------------------------------ labels and the stamp
def _damage_a_label_keeping_size_and_mtime(path: Path, index: int, value: int) -> None:
    before = path.stat()
    labels = np.load(path, mmap_mode="r+")
    labels[index] = value
    labels.flush()
    del labels
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


@pytest.mark.slow
def test_damaged_label_file_is_one_sentence_at_setup_and_verify_removes_the_stamp(data_dir, tmp_path):
    dm = SyntheticDataModule(data_dir=data_dir, **TINY_SYNTHETIC)
    dm.prepare_data()
    labels = dm.folder / "train_labels.npy"
    _damage_a_label_keeping_size_and_mtime(labels, 17, 200)  # bit rot: the stamp still matches

    fresh = SyntheticDataModule(data_dir=data_dir, **TINY_SYNTHETIC)
    fresh.prepare_data()  # stat only: it cannot see this
    with pytest.raises(FormatError) as error:
        fresh.setup("fit")
    assert str(error.value) == (
        f"The labels of synthetic train ({labels}) are damaged: 1 of 64 outside (e.g. 200 at item 17), allowed is "
        f"0..9; run `verify(full=True)` of the synthetic DataModule with data_dir='{data_dir}', num_train=64, "
        f"num_test=32 to find the damaged file.")
    assert console_text(error.value, HydraTerms()).endswith(
        f"run `jepa-verify data=synthetic paths.data_dir={data_dir} data.num_train=64 data.num_test=32 "
        f"full=true` to find the damaged file.")

    args = [*TINY_SYNTHETIC_ARGS, f"paths.data_dir={data_dir}"]
    fit = run_cli("jepa-fit", *args, "trainer.max_steps=2", cwd=tmp_path)
    assert fit.returncode == 2
    assert last_error(fit.stderr).startswith(f"The labels of synthetic train ({labels}) are damaged")
    verify = run_cli("jepa-verify", *args, "full=true", cwd=tmp_path)
    assert verify.returncode == 1
    assert "train_labels.npy" in last_error(verify.stderr)
    assert not (dm.folder / STAMP_NAME).exists()  # removed: the next prepare checks again
    for attempt in range(2):  # ... and refuses each time, never stamping broken data
        with pytest.raises(VerificationError):
            SyntheticDataModule(data_dir=data_dir, **TINY_SYNTHETIC).prepare_data()
        assert not (dm.folder / STAMP_NAME).exists(), attempt


def test_failed_verification_writes_no_stamp_and_the_next_prepare_checks_again(mirror, data_dir):
    server, _ = mirror
    dm = CIFAR10DataModule(data_dir=data_dir, mirrors=[server.url], keep_archives=False, **SMALL)
    dm.prepare_data()
    (dm.folder / STAMP_NAME).unlink()  # e.g. extracted by hand, or by another tool
    batch = dm.folder / EXTRACTED / "cifar-10-batches-py" / "data_batch_3"
    os.truncate(batch, batch.stat().st_size // 2)
    for attempt in range(2):
        with pytest.raises(VerificationError, match="data_batch_3"):
            CIFAR10DataModule(data_dir=data_dir, mirrors=[server.url], keep_archives=False, **SMALL).prepare_data()
        assert not (dm.folder / STAMP_NAME).exists(), attempt


def test_fetch_replaces_a_same_size_file_with_wrong_bytes_at_its_destination(tmp_path):
    www = tmp_path / "www"
    www.mkdir()
    payload = np.random.default_rng(1).bytes(100_000)
    (www / "f.bin").write_bytes(payload)
    dest = tmp_path / "f.bin"
    dest.write_bytes(payload[:-1] + bytes([payload[-1] ^ 0xFF]))  # the size alone cannot tell
    with LoopbackServer(www) as server:
        dl.fetch([server.url_for("f.bin")], dest, md5=dl.hashlib.md5(payload).hexdigest(), size=len(payload),
                 progress=False)
        assert server.count("f.bin") == 1
    assert dest.read_bytes() == payload


# ------------------------------------------------------------------------ shared permissions
_PREPARE_EVERYTHING = """
import sys
from pathlib import Path
from jepa_datamodules import CIFAR10DataModule, ImageNetDataModule, SyntheticDataModule
from jepa_datamodules.streaming import convert_to_litdata

data_dir, mirror, out = sys.argv[1:4]
small = dict(image_size=32, patch_size=4, batch_size=2, num_workers=0, progress=False)
CIFAR10DataModule(data_dir=data_dir, mirrors=[mirror], **small).prepare_data()
synthetic = SyntheticDataModule(data_dir=data_dir, num_train=64, num_test=32, **small)
synthetic.prepare_data()
imagenet = ImageNetDataModule(data_dir=data_dir, **small)
imagenet.prepare_data()
imagenet.setup()  # writes the file-list indexes
convert_to_litdata(synthetic, out, num_workers=1)
"""


def _modes_under(root: Path) -> list[tuple[Path, int]]:
    return [(p, stat.S_IMODE(p.lstat().st_mode)) for p in [root, *root.rglob("*")] if not p.is_symlink()]


@pytest.mark.slow
@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_everything_created_honours_the_umask(umask, mirror, tmp_path, monkeypatch):
    server, _ = mirror
    data_dir, litdata_out = tmp_path / "data", tmp_path / "chunks"
    make_imagenet_layout(data_dir / "imagenet", ["n01440764", "n01443537"], train_per_class=2, val_per_class=1)
    entries = yaml.safe_load(Path(os.environ["JEPA_CATALOG"]).read_text())
    entries["imagenet"] = {"num_classes": 2, "splits": {"train": 4, "val": 2}}
    monkeypatch.setenv("JEPA_CATALOG", str(catalog_override(tmp_path / "catalog.yaml", entries)))
    users_own = {p for p, _ in _modes_under(tmp_path)}
    script = tmp_path / "prepare.py"
    script.write_text(_PREPARE_EVERYTHING)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    prepared = subprocess.run([sys.executable, str(script), str(data_dir), server.url, str(litdata_out)],
                              capture_output=True, text=True, timeout=600, env=env,
                              preexec_fn=lambda: os.umask(umask))
    assert prepared.returncode == 0, prepared.stderr[-3000:]
    fit = run_cli("jepa-fit", *TINY_SYNTHETIC_ARGS, f"paths.data_dir={data_dir}", "trainer.max_steps=2",
                  cwd=tmp_path, umask=umask)
    assert fit.returncode == 0, fit.stderr[-3000:]

    created = [(p, m) for root in (data_dir, litdata_out, tmp_path / "runs") for p, m in _modes_under(root)
               if p not in users_own]  # the ImageNet files the test put there are the user's, not ours
    names = {p.name for p, _ in created}
    # What the issue names: stamps, indexes, staged and extracted folders, LitData output, pictures.
    for expected in (STAMP_NAME, ".index-train.npz", "data_batch_1", "train_images.npy", "index.json",
                     "masks.png", "training.png", ".cifar10.lock"):
        assert expected in names, expected
    for path, mode in created:
        wanted = (0o777 if path.is_dir() else 0o666) & ~umask
        if not path.is_dir():
            wanted &= ~0o111
        assert mode & wanted == wanted, f"{path} has mode {mode:o}, expected at least {wanted:o} under umask {umask:03o}"
