"""``storage/files.py``'s free-space check: the message names what is needed, what is free and
where (with the facts ``setting`` and ``path`` for callers), measured on the real disk."""

from __future__ import annotations

import shutil
import types

import pytest

from jepa_datamodules.storage import files as storage
from jepa_datamodules.storage.download import StorageError, check_free_space


def test_free_space_message_names_needed_free_and_path(tmp_path, monkeypatch):
    folder = tmp_path / "not" / "yet"
    check_free_space(folder, 1, "download x.tar")  # a byte always fits; measured on tmp_path
    usage = types.SimpleNamespace(total=10**13, used=0, free=1_100_000_000)
    monkeypatch.setattr(storage.shutil, "disk_usage", lambda path: usage)
    with pytest.raises(StorageError) as err:
        check_free_space(folder, 2_700_000_000, "download x.tar")
    assert str(err.value) == (f"Not enough free space to download x.tar: needs 2.7 GB at {folder}, only 1.1 GB free; "
                              "free space there or point data_dir (or $JEPA_DATA_DIR) at a disk "
                              "with room.")
    assert (err.value.setting, err.value.path) == ("data_dir", folder)  # the facts, for callers that act on them
    assert not folder.exists()


def test_free_space_check_measures_real_disk(tmp_path):
    free = shutil.disk_usage(tmp_path).free
    with pytest.raises(StorageError, match=f"at {tmp_path}"):
        check_free_space(tmp_path, free + 10**15, "extract y")
