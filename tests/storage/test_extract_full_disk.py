"""``storage/extract.py`` on a small disk (a tiny tmpfs): a disk filling up mid-extraction leaves
nothing half-extracted, and an archive whose contents cannot fit is refused before extraction
(one sentence, the same from Python and ``jepa-prepare``), keeping the archive for the next try."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest
import yaml

from jepa_datamodules import CIFAR10DataModule, StorageError
from jepa_datamodules.cli.terms import HydraTerms, console_text
from jepa_datamodules.storage.extract import safe_extract
from tests.helpers.fakes import catalog_override
from tests.helpers.storage import cifar10_cli, last_error, mirror, run_cli, tmpfs  # noqa: F401 - fixtures

ARCHIVE = "cifar-10-python.tar.gz"
SMALL = dict(image_size=32, patch_size=4, batch_size=8, num_workers=0, progress=False)


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
