"""``formats/imagenet/unpack.py``'s ``prepare_imagenet``: the official archives unpacked into
``train/<wnid>/`` and ``val/<wnid>/`` (val sorted by the devkit's ground truth, non-leaf synsets
never classes), a rerun rebuilding only what is missing, interrupted extractions and a val swap
cut between its renames recovered, a flat val folder sorted, incomplete inputs and unsafe class
tars refused, and a ready layout used as it is without writing."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from jepa_datamodules.errors import ExtractError
from jepa_datamodules.formats.imagenet import ImageNetSetupError, detect_source, prepare_imagenet, unpack
from tests.formats.imagenet.conftest import WNIDS
from tests.helpers.fake_imagenet import (DEVKIT, TRAIN_TAR, VAL_TAR, make_imagenet_archives, make_imagenet_layout,
                                         tar_bytes)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones included), relative path -> bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def expected_layout(info: dict) -> dict[str, bytes]:
    """The files prepare_imagenet must produce, from what make_imagenet_archives wrote."""
    files = {f"train/{w}/{name}": data for w, images in info["train_bytes"].items() for name, data in images.items()}
    files.update({f"val/{info['val_assignment'][name]}/{name}": data for name, data in info["val_bytes"].items()})
    return files


def layout_files(root: Path) -> dict[str, bytes]:
    return {k: v for k, v in snapshot(root).items() if k.startswith(("train/", "val/"))}


# --------------------------------------------------------------------------- prepare


def test_prepare_from_archives_builds_the_layout_with_val_in_ground_truth_classes(archives):
    root, info = archives
    prepare_imagenet(root, workers=2, progress=False)  # two processes: the parallel path

    assert layout_files(root) == expected_layout(info)
    assert info["num_train"] == 15 and info["num_val"] == 10
    assert sorted(p.name for p in (root / "val").iterdir()) == WNIDS
    # Non-leaf synsets of meta.mat own no images and must not become classes.
    for wnid in info["non_leaf_wnids"]:
        assert not (root / "train" / wnid).exists() and not (root / "val" / wnid).exists()
    # Nothing temporary is left; the archives stay. The lock is the dataset's, beside the folder.
    assert [p.name for p in root.rglob(".*")] == []
    assert sorted(p.name for p in root.parent.iterdir()) == [".imagenet.lock", "imagenet"]
    for name in (TRAIN_TAR, VAL_TAR, DEVKIT):
        assert (root / name).is_file()


def test_rerun_rebuilds_only_the_missing_class(archives, monkeypatch):
    root, info = archives
    prepare_imagenet(root, workers=1, progress=False)
    before = {w: os.stat(root / "train" / w / f"{w}_1.JPEG") for w in WNIDS}
    val_before = os.stat(root / "val")
    shutil.rmtree(root / "train" / "n01484850")

    calls: list[str] = []
    real = unpack._extract_class

    def spy(train_tar, wnid, *args):
        calls.append(wnid)
        return real(train_tar, wnid, *args)

    monkeypatch.setattr(unpack, "_extract_class", spy)
    prepare_imagenet(root, workers=1, progress=False)

    assert calls == ["n01484850"]
    assert layout_files(root) == expected_layout(info)
    for wnid in WNIDS:
        if wnid != "n01484850":
            after = os.stat(root / "train" / wnid / f"{wnid}_1.JPEG")
            assert (after.st_ino, after.st_mtime_ns) == (before[wnid].st_ino, before[wnid].st_mtime_ns)
    assert os.stat(root / "val").st_ino == val_before.st_ino  # val was complete: not rebuilt


def test_interrupted_extractions_are_redone(archives):
    root, info = archives
    prepare_imagenet(root, workers=1, progress=False)
    # Simulate a kill mid-way through one class and through the val build (storage's staging names).
    shutil.rmtree(root / "train" / "n02102040")
    partial = root / "train" / ".n02102040.partial-0a1b2c3d"
    partial.mkdir()
    (partial / "n02102040_1.JPEG").write_bytes(b"\xff\xd8half")
    (partial / "n02102040_999.JPEG").write_bytes(b"\xff\xd8stale")
    shutil.rmtree(root / "val")
    val_partial = root / ".val.partial-4e5f6a7b"
    (val_partial / "n01440764").mkdir(parents=True)
    (val_partial / "n01440764" / "junk.JPEG").write_bytes(b"junk")

    assert detect_source(root) == "archives"
    prepare_imagenet(root, workers=2, progress=False)

    assert layout_files(root) == expected_layout(info)
    assert [p.name for p in root.rglob(".*")] == []


def test_flat_val_folder_is_sorted_into_classes(archives):
    root, info = archives
    prepare_imagenet(root, workers=1, progress=False)
    # Turn it into the common "train unpacked, val unpacked flat" state, without the tars.
    (root / TRAIN_TAR).unlink()
    (root / VAL_TAR).unlink()
    for path in list((root / "val").glob("*/*.JPEG")):
        path.rename(root / "val" / path.name)
    for folder in list((root / "val").iterdir()):
        if folder.is_dir():
            folder.rmdir()

    assert detect_source(root) == "flat_val"
    prepare_imagenet(root, progress=False)

    assert layout_files(root) == expected_layout(info)
    assert [p.name for p in root.iterdir() if p.name.startswith(".val")] == []
    assert detect_source(root) == "layout"


def test_val_swap_interrupted_between_its_renames_is_recovered(archives):
    root, info = archives
    prepare_imagenet(root, workers=1, progress=False)
    (root / VAL_TAR).unlink()
    # The flat folder had been set aside by storage's swap and the sorted one not yet moved in.
    old = root / ".val.old-0a1b2c3d"
    old.mkdir()
    for path in (root / "val").glob("*/*.JPEG"):
        shutil.copy(path, old / path.name)
    (root / "val").rename(root / ".val.partial-4e5f6a7b")

    assert detect_source(root) == "archives"  # the flat copy aside still counts as the val images
    prepare_imagenet(root, workers=1, progress=False)

    assert layout_files(root) == expected_layout(info)
    assert [p.name for p in root.rglob(".*")] == []


def test_incomplete_flat_val_folder_is_reported_with_counts(archives):
    root, info = archives
    with tarfile.open(root / VAL_TAR) as tar:
        tar.extractall(root / "val", filter="data")
    (root / VAL_TAR).unlink()
    (root / "val" / "ILSVRC2012_val_00000004.JPEG").unlink()

    with pytest.raises(ImageNetSetupError, match="holds 9 of the 10 validation images"):
        prepare_imagenet(root, workers=1, progress=False)
    assert len(list((root / "val").iterdir())) == 9  # the user's files are untouched


def test_cut_short_train_download_is_reported(archives):
    root, _ = archives
    data = (root / TRAIN_TAR).read_bytes()
    (root / TRAIN_TAR).write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(ImageNetSetupError, match=f"{TRAIN_TAR} is incomplete"):
        prepare_imagenet(root, workers=1, progress=False)
    assert not (root / "train").exists() or list((root / "train").iterdir()) == []


@pytest.mark.parametrize(
    "member",
    ["../evil", "../../../evil", "ABSOLUTE", "symlink"],
)
def test_unsafe_member_in_a_class_tar_is_refused(tmp_path, member):
    root = tmp_path / "imagenet"
    make_imagenet_archives(root, WNIDS[:2])
    good = tar_bytes({"n01440764_1.JPEG": b"fine"})
    if member == "symlink":
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
            info = tarfile.TarInfo("evil")
            info.type, info.linkname = tarfile.SYMTYPE, str(tmp_path / "outside")
            tar.addfile(info)
        bad = buffer.getvalue()
    else:
        name = str(tmp_path / "evil") if member == "ABSOLUTE" else member
        bad = tar_bytes({"n01443537_1.JPEG": b"fine", name: b"pwned"})
    (root / TRAIN_TAR).write_bytes(tar_bytes({"n01440764.tar": good, "n01443537.tar": bad}))

    with pytest.raises(ExtractError, match="Refusing to unpack.*n01443537.tar") as caught:
        prepare_imagenet(root, workers=1, progress=False)
    assert caught.value.path == root / TRAIN_TAR

    assert sorted(p.name for p in tmp_path.iterdir()) == [".imagenet.lock", "imagenet"]  # the dataset lock
    assert [p for p in tmp_path.rglob("*evil*")] == []
    assert not (root / "train" / "n01443537").exists()
    assert [p.name for p in root.rglob(".*")] == []  # its staging folder went with the refusal
    assert not (root / "val").exists()


# --------------------------------------------------------------------------- detection


def test_ready_layout_is_used_as_is_without_writing(tmp_path):
    root = tmp_path / "imagenet"
    make_imagenet_layout(root, WNIDS[:2])
    before = snapshot(tmp_path)
    # Not even a lock file: shared read-only copies of ImageNet are common on clusters.
    prepare_imagenet(root, progress=False)
    assert snapshot(tmp_path) == before
