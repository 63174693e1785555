"""Read-only copies laid out by someone else: each gets its own bookkeeping in the user's cache
(two copies called ``imagenet`` on two mounts never share an index), and a copy that fails
verification is refused, never used as if it had passed. Real read-only tmpfs mounts, as in
test_storage.py."""

from __future__ import annotations

import pytest

from jepa_datamodules import ImageNetDataModule
from jepa_datamodules.storage.files import user_cache_path
from jepa_datamodules.storage.verify import VerificationError
from tests.helpers.fake_imagenet import make_imagenet_layout
from tests.helpers.fakes import catalog_override
from tests.test_preparation_read_only import SMALL, remount_read_only, snapshot, tmpfs  # noqa: F401 - tmpfs: a fixture

WNIDS = ["n01440764", "n01443537", "n01484850"]


def test_user_cache_entries_follow_the_real_path_not_the_name(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    first, second = tmp_path / "mnt-a" / "imagenet" / "train", tmp_path / "mnt-b" / "imagenet" / "train"
    for folder in (first, second):
        folder.mkdir(parents=True)
    assert user_cache_path("index", first, "{digest}-train.npz") != user_cache_path("index", second, "{digest}-train.npz")
    # The same folder however it is spelled: through a symlink, or relative to the working directory.
    (tmp_path / "alias").symlink_to(tmp_path / "mnt-a")
    monkeypatch.chdir(tmp_path / "mnt-a")
    for spelling in (tmp_path / "alias" / "imagenet" / "train", "imagenet/train"):
        assert user_cache_path("index", spelling, "{digest}-train.npz") == user_cache_path("index", first,
                                                                                           "{digest}-train.npz")


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
