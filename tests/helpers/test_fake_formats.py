"""``tests/helpers/fake_formats.py``'s ``pack_archive``: packed archives are reproducible (no
time in the gzip header), hold their folders and keep the member order asked for."""

from __future__ import annotations

import tarfile
import zipfile

import pytest

from tests.helpers.fake_formats import archive_members, pack_archive


@pytest.mark.parametrize("name", ["a.tar.gz", "a.tgz", "a.tar", "a.zip"])
def test_packed_archives_are_reproducible_hold_folders_and_keep_the_order_asked(tmp_path, name):
    top = tmp_path / "src"
    for rel in ("top/b/2.txt", "top/a/1.txt", "top/c.txt"):
        (top / rel).parent.mkdir(parents=True, exist_ok=True)
        (top / rel).write_text(rel)
    members = archive_members(top)
    assert members == ["top/", "top/c.txt", "top/a/", "top/a/1.txt", "top/b/", "top/b/2.txt"]
    first = pack_archive(top, tmp_path / "one" / name).read_bytes()
    assert pack_archive(top, tmp_path / "two" / name).read_bytes() == first
    if name.endswith(("gz", "tgz")):
        assert first[4:8] == bytes(4)  # no time in the gzip header: tomorrow's run packs the same bytes
    reverse = pack_archive(top, tmp_path / "reverse" / name, order=members[::-1])
    if name.endswith(".zip"):
        with zipfile.ZipFile(reverse) as zf:
            assert zf.namelist() == members[::-1] and zf.read("top/a/1.txt") == b"top/a/1.txt"
    else:
        with tarfile.open(reverse) as tar:
            assert [m.name + ("/" if m.isdir() else "") for m in tar] == members[::-1]
            assert tar.extractfile("top/b/2.txt").read() == b"top/b/2.txt"
