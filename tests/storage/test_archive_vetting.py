"""Archive members that would land outside the destination, as other platforms and older
Pythons make them: a zip written on Windows (backslashes, drive letters) and a tar hard link
nested in folders, extracted by a Python without ``tarfile.data_filter`` (3.10.0-3.10.11 and
3.11.0-3.11.3, which ``requires-python`` admits), where our own vetting is the only defence."""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
from pathlib import Path

import pytest

from jepa_datamodules.storage.download import DownloadError
from jepa_datamodules.storage.extract import safe_extract


def _zip(path: Path, names: list[str]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ok.txt", "fine")
        for name in names:
            zf.writestr(zipfile.ZipInfo(name), "bad")  # ZipInfo keeps the name exactly as given
    return path


@pytest.mark.parametrize("name, reason", [
    ("..\\..\\evil.txt", "'..' component"),        # a traversal made on Windows
    ("images\\..\\..\\evil.txt", "'..' component"),
    ("C:/Windows/evil.txt", "absolute path"),      # a drive letter
    ("c:\\evil.txt", "absolute path"),
])
def test_windows_made_zip_escape_is_refused_before_anything_is_written(tmp_path, name, reason):
    archive = _zip(tmp_path / "windows.zip", [name])
    target = tmp_path / "work" / "ds"
    with pytest.raises(DownloadError) as err:
        safe_extract(archive, target, progress=False)
    assert f"member {name!r}" in str(err.value) and reason in str(err.value)
    assert not target.exists() and list((tmp_path / "work").iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["windows.zip", "work"]


@pytest.fixture
def python_without_data_filter(monkeypatch):
    """This Python as 3.11.3 was: no ``tarfile.data_filter``, and extraction trusts every member."""
    monkeypatch.delattr(tarfile, "data_filter")
    monkeypatch.setattr(tarfile.TarFile, "extraction_filter", staticmethod(tarfile.fully_trusted_filter),
                        raising=False)


def _tar(path: Path, members: list[tarfile.TarInfo], data: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tf:
        for info in members:
            content = data.get(info.name)
            if content is not None:
                info.size = len(content)
            tf.addfile(info, io.BytesIO(content) if content is not None else None)
    return path


def _hard_link(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.LNKTYPE, target
    return info


def test_nested_hard_link_to_a_file_outside_is_refused_without_the_data_filter(tmp_path,
                                                                               python_without_data_filter):
    # A hard link's target is a path from the archive's root, not from the link's folder:
    # from the staging folder tmp/work/.ds.partial-*, '../../outside' is tmp/outside.
    victim = tmp_path / "outside"
    victim.write_text("a file of the user's, outside the dataset")
    archive = _tar(tmp_path / "nested.tar", [tarfile.TarInfo("a/b/file"), _hard_link("a/b/hard", "../../outside")],
                   {"a/b/file": b"data"})
    target = tmp_path / "work" / "ds"
    with pytest.raises(DownloadError) as err:
        safe_extract(archive, target, progress=False)
    assert "member 'a/b/hard'" in str(err.value) and "points outside the target folder" in str(err.value)
    assert os.stat(victim).st_nlink == 1  # no second name for the user's file anywhere
    assert not target.exists() and list((tmp_path / "work").iterdir()) == []


def test_nested_hard_link_inside_the_archive_extracts_without_the_data_filter(tmp_path, python_without_data_filter):
    archive = _tar(tmp_path / "good.tar", [tarfile.TarInfo("top/a.txt"), _hard_link("top/sub/copy.txt", "top/a.txt")],
                   {"top/a.txt": b"content of a"})
    target = safe_extract(archive, tmp_path / "ds", progress=False)
    assert (target / "top/sub/copy.txt").read_bytes() == b"content of a"
    assert os.path.samefile(target / "top/sub/copy.txt", target / "top/a.txt")
