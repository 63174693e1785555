"""The storage helpers' small promises, each as a user meets it in a message or on disk:
sizes in decimal units as disk tools print them, two sizes that would read alike told apart,
removal that never follows a link, the user's cache under ~/.cache by default and keyed by a
folder's real path (not its name or spelling), and leftovers told by their lock (held, released,
or never made): ``storage/files.py``."""

from __future__ import annotations

import time
import types

import pytest

from jepa_datamodules import StorageError
from jepa_datamodules.storage import files
from jepa_datamodules.storage.files import (TEMP_GRACE_S, check_free_space, human_bytes, remove_path,
                                            remove_stale_staging, staging_entries, staging_folder, temp_name,
                                            user_cache_path)
from jepa_datamodules.storage.locks import dataset_lock


@pytest.mark.parametrize("n, digits, shown", [
    (0, 1, "0 B"), (999, 1, "999 B"), (1000, 1, "1.0 kB"), (999_999, 1, "1000.0 kB"), (1_000_000, 1, "1.0 MB"),
    (2_700_000_000, 1, "2.7 GB"), (2_712_345_678, 3, "2.712 GB"), (5 * 10**15, 1, "5000.0 TB"),
])
def test_sizes_are_shown_in_decimal_units_as_disk_tools_show_them(n, digits, shown):
    assert human_bytes(n, digits) == shown


def test_two_sizes_that_would_read_alike_are_shown_with_three_decimals(tmp_path, monkeypatch):
    monkeypatch.setattr(files.shutil, "disk_usage", lambda path: types.SimpleNamespace(free=2_700_000_000))
    with pytest.raises(StorageError, match=r"needs 2\.712 GB at .*, only 2\.700 GB free;"):
        check_free_space(tmp_path, 2_712_000_000, "extract x.tar")


def test_free_space_is_enough_when_it_equals_the_need_and_one_byte_can_be_too_much(tmp_path, monkeypatch):
    monkeypatch.setattr(files.shutil, "disk_usage", lambda path: types.SimpleNamespace(free=1000))
    check_free_space(tmp_path, 1000, "download x.tar")  # exactly fits
    check_free_space(tmp_path, 0, "download x.tar")
    monkeypatch.setattr(files.shutil, "disk_usage", lambda path: types.SimpleNamespace(free=0))
    with pytest.raises(StorageError, match="needs 1 B at .*, only 0 B free"):
        check_free_space(tmp_path, 1, "download x.tar")


def test_a_staging_folder_is_a_fresh_hidden_sibling_with_its_parents_made(tmp_path):
    target = tmp_path / "not" / "yet" / "ds"  # synthetic.generate calls it on a folder whose parents may not exist
    first, second = staging_folder(target), staging_folder(target)
    assert first != second and first.parent == second.parent == target.parent
    assert first.is_dir() and list(first.iterdir()) == [] and first.name.startswith(".ds.partial-")
    assert not target.exists()


def test_remove_path_removes_links_not_what_they_point_to_and_tolerates_absence(tmp_path):
    kept = tmp_path / "kept"
    (kept / "sub").mkdir(parents=True)
    (kept / "sub" / "f").write_text("x")
    (tmp_path / "dir-link").symlink_to(kept, target_is_directory=True)
    (tmp_path / "file-link").symlink_to(kept / "sub" / "f")
    for name in ("dir-link", "file-link", "never-there"):
        remove_path(tmp_path / name)
    remove_path(kept / "sub")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"] and list(kept.iterdir()) == []


def test_the_user_cache_is_under_home_dot_cache_when_xdg_is_unset(tmp_path, monkeypatch):
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    entry = user_cache_path("index", tmp_path / "data", "{digest}-train.npz")
    assert entry.parent == tmp_path / "home" / ".cache" / "jepa_datamodules" / "index"
    assert len(entry.name) == len("0123456789abcdef-train.npz")


def test_staging_without_any_lock_file_is_a_leftover_and_age_is_measured_from_now(tmp_path):
    beside = tmp_path / ".stl10.partial-0a1b2c3d"  # its run never made a lock, or it was deleted
    beside.mkdir()
    assert staging_entries(tmp_path) == [beside]
    fresh = temp_name(tmp_path / "stl10" / "x.npy")
    fresh.parent.mkdir()
    fresh.write_bytes(b"")
    assert staging_entries(fresh.parent) == []
    assert staging_entries(fresh.parent, now=time.time() + TEMP_GRACE_S + 60) == [fresh]  # an hour from now


def test_staging_inside_the_folder_goes_even_though_its_lock_is_held(data_dir):
    imagenet = data_dir / "imagenet"
    inside = [imagenet / ".val.partial-5e6f7a8b", imagenet / ".train.partial-1a2b3c4d", imagenet / ".n01440764.partial-9c0d1e2f"]
    for path in inside:
        (path / "half").mkdir(parents=True)
    (imagenet / "train").mkdir()
    with dataset_lock(imagenet):  # held by this very process: every writer of imagenet is this one
        removed = remove_stale_staging(imagenet)
    assert sorted(removed) == sorted(inside) and sorted(p.name for p in imagenet.iterdir()) == ["train"]


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
