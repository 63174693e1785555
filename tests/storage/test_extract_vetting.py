"""``storage/extract.py``'s vetting of archive members that would land outside the destination, as other platforms and older
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

from jepa_datamodules.errors import ExtractError
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
    with pytest.raises(ExtractError) as err:
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
    with pytest.raises(ExtractError) as err:
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


def _symlink(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info


def test_nested_symlink_climbing_out_is_refused(tmp_path):
    archive = _tar(tmp_path / "climb.tar", [tarfile.TarInfo("top/a.txt"), _symlink("top/up", "../../outside")],
                   {"top/a.txt": b"a"})
    with pytest.raises(ExtractError, match="member 'top/up' is a symlink to '../../outside', which points outside"):
        safe_extract(archive, tmp_path / "ds", progress=False)
    assert not (tmp_path / "ds").exists()


def test_symlinks_resolved_from_their_own_folder_and_links_to_links_extract(tmp_path):
    archive = _tar(tmp_path / "links.tar", [
        tarfile.TarInfo("top/a.txt"),
        _symlink("top/alias.txt", "../top/a.txt"),  # up to the root and back down: inside
        _symlink("top/again.txt", "alias.txt"),  # a link to a link (itself vetted) is fine
    ], {"top/a.txt": b"content of a"})
    target = safe_extract(archive, tmp_path / "ds", progress=False)
    assert (target / "top/again.txt").read_bytes() == b"content of a"
    assert os.readlink(target / "top/alias.txt") == "../top/a.txt"


def test_an_archive_without_a_suffix_is_recognised_by_its_content(tmp_path):
    tar = _tar(tmp_path / "download-1", [tarfile.TarInfo("t/x.txt")], {"t/x.txt": b"from a tar"})
    zipped = tmp_path / "download-2"
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr("z/y.txt", "from a zip")
    assert (safe_extract(tar, tmp_path / "a", progress=False) / "t/x.txt").read_bytes() == b"from a tar"
    assert (safe_extract(zipped, tmp_path / "b", progress=False) / "z/y.txt").read_bytes() == b"from a zip"
    # A tar whose last member is a zip also looks like a zip (its end record is near the end): a tar it is.
    both = _tar(tmp_path / "download-3", [tarfile.TarInfo("inner.zip")], {"inner.zip": zipped.read_bytes()})
    assert zipfile.is_zipfile(both)
    assert (safe_extract(both, tmp_path / "d", progress=False) / "inner.zip").read_bytes() == zipped.read_bytes()
    upper = tmp_path / "SHOUTED.ZIP"
    upper.write_bytes(zipped.read_bytes())
    assert (safe_extract(upper, tmp_path / "c", progress=False) / "z/y.txt").read_text() == "from a zip"


def test_a_tar_members_filter_extracts_only_the_chosen_members(tmp_path):
    archive = _tar(tmp_path / "a.tar", [tarfile.TarInfo("images/0.bin"), tarfile.TarInfo("docs/readme")],
                   {"images/0.bin": b"0", "docs/readme": b"r"})
    target = safe_extract(archive, tmp_path / "ds", progress=False, members_filter=lambda n: n.startswith("images/"))
    assert sorted(str(p.relative_to(target)) for p in target.rglob("*")) == ["images", "images/0.bin"]


@pytest.mark.parametrize("filtered", [True, False], ids=["with-data-filter", "without-data-filter"])
def test_extracted_modes_come_from_the_umask_not_the_archive(tmp_path, monkeypatch, filtered):
    if not filtered:
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    elif not hasattr(tarfile, "data_filter"):
        pytest.skip("this Python has no tarfile.data_filter")
    folder, private = tarfile.TarInfo("top"), tarfile.TarInfo("top/secret.txt")
    folder.type, folder.mode, private.mode = tarfile.DIRTYPE, 0o700, 0o600
    archive = _tar(tmp_path / "modes.tar", [folder, private], {"top/secret.txt": b"s"})
    previous = os.umask(0o022)
    try:
        target = safe_extract(archive, tmp_path / "new" / "deeper" / "ds", progress=False)  # parents made too
    finally:
        os.umask(previous)
    assert (os.stat(target / "top").st_mode & 0o777, os.stat(target / "top/secret.txt").st_mode & 0o777) == (0o755, 0o644)


@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_extraction_reports_plain_lines_in_a_log_and_nothing_when_silenced(tmp_path, monkeypatch, capfd, kind):
    from jepa_datamodules import progress

    monkeypatch.setattr(progress, "LINE_MIN_SECONDS", 0.0)
    if kind == "tar":
        archive = _tar(tmp_path / "a.tar", [tarfile.TarInfo(f"f{i}") for i in range(3)], {f"f{i}": b"x" for i in range(3)})
    else:
        archive = tmp_path / "a.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            for i in range(3):
                zf.writestr(f"f{i}", "x")
    safe_extract(archive, tmp_path / "quiet", progress=False)
    assert capfd.readouterr().err == ""
    safe_extract(archive, tmp_path / "logged")  # stderr is not a terminal here: plain lines
    assert capfd.readouterr().err.splitlines()[-1].startswith(f"extract {archive.name}: done, 100 % (3 of 3 files)")
