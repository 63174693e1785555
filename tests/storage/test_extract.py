"""``storage/extract.py``'s ``safe_extract``: unsafe tar and zip members (``..``, absolute paths,
links pointing outside, devices, FIFOs, chained symlinks) refused before anything is written,
tar.gz and zip extracted and swapped in place of an old copy, leftovers of a killed extraction
removed, a crash mid-way leaving the target as it was, and an unreadable archive named."""

from __future__ import annotations

import errno
import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from jepa_datamodules.errors import ExtractError
from jepa_datamodules.storage.download import StorageError
from jepa_datamodules.storage.extract import safe_extract


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], mode: str = "w") -> Path:
    with tarfile.open(path, mode) as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name: str) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), f"content of {name}".encode()


def _link(name: str, target: str, kind: bytes) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


def _special(name: str, kind: bytes) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    return info, None


def _snapshot(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


UNSAFE = {  # case: (member, its name, the reason the message must give)
    "parent": (_file("../evil"), "../evil", "'..' component"),
    "absolute": (_file("/abs"), "/abs", "absolute path"),
    "symlink-outside": (_link("link", "../outside", tarfile.SYMTYPE), "link", "points outside"),
    "symlink-absolute": (_link("link", "/etc", tarfile.SYMTYPE), "link", "is an absolute path"),
    "hardlink-outside": (_link("hard", "../outside", tarfile.LNKTYPE), "hard", "points outside"),
    "char-device": (_special("null", tarfile.CHRTYPE), "null", "device file"),
    "fifo": (_special("pipe", tarfile.FIFOTYPE), "pipe", "FIFO"),
}


@pytest.mark.parametrize("case", sorted(UNSAFE))
def test_unsafe_tar_member_is_refused_before_writing(tmp_path, case):
    member, name, reason = UNSAFE[case]
    archive = _tar(tmp_path / "bad.tar", [_file("good.txt"), member])
    target = tmp_path / "work" / "ds"
    before = _snapshot(tmp_path)
    with pytest.raises(ExtractError) as err:
        safe_extract(archive, target, progress=False)
    # Our own check fires (not only tarfile's filter), so Pythons without the filter are safe too.
    assert f"member {name!r}" in str(err.value) and reason in str(err.value)
    assert not target.exists()
    assert _snapshot(tmp_path) - before <= {"work"}  # at most the (empty) parent was created
    assert not any((tmp_path / "work").iterdir())


def test_chained_symlink_escape_is_refused(tmp_path):
    # "here" -> "." is harmless alone, but "up" -> "here/.." resolves to the parent on disk.
    archive = _tar(tmp_path / "chain.tar", [
        _link("here", ".", tarfile.SYMTYPE),
        _link("up", "here/..", tarfile.SYMTYPE),
    ])
    with pytest.raises(ExtractError, match="'up'.*passes through the symlink 'here'"):
        safe_extract(archive, tmp_path / "ds", progress=False)
    assert not (tmp_path / "ds").exists()


def test_member_under_a_symlink_is_refused(tmp_path):
    archive = _tar(tmp_path / "under.tar", [_link("d", "sub", tarfile.SYMTYPE), _file("d/x")])
    with pytest.raises(ExtractError, match="'d/x' lies under the symlink 'd'"):
        safe_extract(archive, tmp_path / "ds", progress=False)


def test_zip_with_parent_component_is_refused(tmp_path):
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok.txt", "fine")
        zf.writestr("../evil.txt", "bad")
    with pytest.raises(ExtractError, match="'../evil.txt'"):
        safe_extract(archive, tmp_path / "ds", progress=False)
    assert not (tmp_path / "ds").exists() and not (tmp_path.parent / "evil.txt").exists()


def _good_tgz(path: Path) -> Path:
    return _tar(path, [
        _file("top/a.txt"),
        _file("top/sub/b.txt"),
        _link("top/alias.txt", "a.txt", tarfile.SYMTYPE),
        _link("top/copy.txt", "top/a.txt", tarfile.LNKTYPE),
    ], mode="w:gz")


def test_tgz_and_zip_extract_and_replace_existing_target(tmp_path):
    target = tmp_path / "ds"
    target.mkdir()
    (target / "old.txt").write_text("from an earlier version")
    safe_extract(_good_tgz(tmp_path / "a.tgz"), target, progress=False)
    assert (target / "top/sub/b.txt").read_text() == "content of top/sub/b.txt"
    assert (target / "top/alias.txt").read_text() == "content of top/a.txt"
    assert (target / "top/copy.txt").read_text() == "content of top/a.txt"
    assert not (target / "old.txt").exists()

    archive = tmp_path / "b.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("images/0.txt", "zero")
    safe_extract(archive, target, progress=False, members_filter=lambda n: n.startswith("images/"))
    assert _snapshot(target) == {"images", "images/0.txt"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tgz", "b.zip", "ds"]


def test_leftover_partial_folder_is_removed_and_extraction_completes(tmp_path):
    leftover = tmp_path / ".ds.partial-xyz"
    (leftover / "half").mkdir(parents=True)
    (leftover / "half" / "file").write_bytes(b"junk")
    target = safe_extract(_good_tgz(tmp_path / "a.tgz"), tmp_path / "ds", progress=False)
    assert not leftover.exists()
    assert (target / "top/a.txt").read_text() == "content of top/a.txt"


@pytest.mark.parametrize("crash", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()])
def test_crash_mid_extraction_leaves_target_as_it_was(tmp_path, monkeypatch, crash):
    archive = _good_tgz(tmp_path / "a.tgz")
    real_extractall = tarfile.TarFile.extractall

    def extract_two_then_crash(self, path=".", members=None, **kwargs):
        real_extractall(self, path, members=list(members)[:2], **kwargs)
        assert any(Path(path).rglob("*.txt"))  # the crash really happens mid-way
        raise crash

    monkeypatch.setattr(tarfile.TarFile, "extractall", extract_two_then_crash)
    existing = tmp_path / "kept"
    existing.mkdir()
    (existing / "v1.txt").write_text("v1")
    for target in (tmp_path / "fresh", existing):
        with pytest.raises(StorageError if isinstance(crash, OSError) else KeyboardInterrupt):
            safe_extract(archive, target, progress=False)
    assert not (tmp_path / "fresh").exists()
    assert _snapshot(existing) == {"v1.txt"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tgz", "kept"]


def test_unreadable_archive_is_reported(tmp_path):
    archive = tmp_path / "broken.tar.gz"
    archive.write_bytes(b"this is not gzip data at all")
    with pytest.raises(ExtractError, match="broken.tar.gz is not a readable"):
        safe_extract(archive, tmp_path / "ds", progress=False)
    assert not (tmp_path / "ds").exists()


@pytest.mark.parametrize("member, reason", [("tiny-imagenet-200/../../evil.txt", "has a '..' component"),
                                            ("/tmp/evil.txt", "has an absolute path")])
def test_zip_with_an_escaping_member_is_refused_before_anything_is_written(tmp_path, member, reason):
    archive = tmp_path / "tiny-imagenet-200.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("tiny-imagenet-200/wnids.txt", "n01443537\n")
        info = zipfile.ZipInfo(member)  # ZipFile.writestr would strip the leading "/" and the ".."
        zf.writestr(info, b"escaped")
    target = tmp_path / "out" / "tiny-imagenet-200"
    with pytest.raises(ExtractError) as caught:
        safe_extract(archive, target, progress=False)
    message = str(caught.value)
    assert message.startswith(f"Refusing to extract tiny-imagenet-200.zip: member {member!r} {reason}")
    assert message.count(". ") <= 2 and "\n" not in message
    assert not target.exists() and not (tmp_path / "evil.txt").exists()
    assert not list((tmp_path / "out").iterdir())
