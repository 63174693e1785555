"""``preparation.py`` on storage it cannot write, met the way a user meets it on a shared cluster.

Read-only datasets are real read-only mounts (a tmpfs prepared, then remounted ``ro``; see
``tests.helpers.storage``). A verified (stamped) copy trains and loads while nothing is written;
an unstamped copy laid out by someone else is verified without a stamp (one ``warning:`` line on
the console), gets its own bookkeeping in the user's cache (two copies called ``imagenet`` on two
mounts never share an index), and is refused when it fails verification; work that needs writing
is one sentence before any download; an unusable ``data_dir`` is one sentence from Python and
exit 2 from the console. Console scripts run with pipes (no TTY) in folders outside the repository.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from jepa_datamodules import CIFAR10DataModule, ImageNetDataModule, StorageError, SyntheticDataModule
from jepa_datamodules.cli.terms import HydraTerms, console_text
from jepa_datamodules.storage.verify import VerificationError
from tests.helpers.fake_imagenet import make_imagenet_layout
from tests.helpers.fakes import catalog_override
from tests.helpers.storage import (  # noqa: F401 - mirror, tmpfs: fixtures
    cifar10_cli, last_error, mirror, remount_read_only, run_cli, snapshot, tmpfs,
)

ARCHIVE = "cifar-10-python.tar.gz"
SMALL = dict(image_size=32, patch_size=4, batch_size=8, num_workers=0, progress=False)
TINY_SYNTHETIC = dict(num_train=64, num_test=32, batch_size=16, num_workers=0, progress=False)
TINY_SYNTHETIC_ARGS = ["data=synthetic", "data.num_train=64", "data.num_test=32", "data.batch_size=16",
                       "data.num_workers=0"]
SETTING = "32px-10c-64-32-seed0"  # the folder of TINY_SYNTHETIC under <data_dir>/synthetic


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


# ------------------------------------------------------- copies laid out by someone else


WNIDS = ["n01440764", "n01443537", "n01484850"]


def _read_only_imagenet(tmpfs, name: str, wnids: list[str], drop: int = 0):
    data = tmpfs(name, size="64m")
    make_imagenet_layout(data / "imagenet", wnids, train_per_class=2, val_per_class=1)
    for image in sorted((data / "imagenet" / "train").rglob("*.JPEG"))[:drop]:
        image.unlink()  # lost in a copy made by hand
    remount_read_only(data)
    return data


def test_two_read_only_copies_with_the_same_name_keep_separate_indexes(tmpfs, tmp_path, monkeypatch):
    monkeypatch.setenv("JEPA_CATALOG", str(catalog_override(
        tmp_path / "catalog.yaml", {"imagenet": {"splits": {"train": 6, "val": 3}, "num_classes": 3}})))
    cache = tmp_path / "user-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    copies = [_read_only_imagenet(tmpfs, "a", WNIDS), _read_only_imagenet(tmpfs, "b", WNIDS[::-1])]
    for data in copies:
        with pytest.warns(UserWarning, match=r"is on a read-only file system: imagenet at .* passed verification"):
            ImageNetDataModule(data_dir=data, **SMALL).prepare_data()
    index = cache / "jepa_datamodules" / "index"
    written = {p: p.stat().st_mtime_ns for p in index.iterdir()}
    assert len(written) == 4  # train and val of each copy: four files, none shared
    for data in copies:
        files = ImageNetDataModule(data_dir=data, **SMALL).open_split("train")
        assert len(files) == 6 and files.root == data / "imagenet" / "train"
    assert {p: p.stat().st_mtime_ns for p in index.iterdir()} == written  # each read back, none rewritten


def test_a_read_only_unstamped_copy_that_fails_verification_is_refused(tmpfs, tmp_path, monkeypatch):
    monkeypatch.setenv("JEPA_CATALOG", str(catalog_override(
        tmp_path / "catalog.yaml", {"imagenet": {"splits": {"train": 6, "val": 3}, "num_classes": 3}})))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))
    data = _read_only_imagenet(tmpfs, "mnt", WNIDS, drop=1)
    before = snapshot(data)
    with pytest.raises(VerificationError, match=r"imagenet at .* failed verification \(.*expected 6, found 5"):
        ImageNetDataModule(data_dir=data, **SMALL).prepare_data()
    assert snapshot(data) == before
