"""ImageNet setup from the official archives, folder indexing, image checks and class lists."""

from __future__ import annotations

import hashlib
import importlib.resources
import io
import os
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

from jepa_datamodules.cli.terms import HydraTerms, console_text
from jepa_datamodules.errors import ConfigError, ExtractError
from jepa_datamodules.formats import imagefolder
from jepa_datamodules.formats.imagefolder import check_images, index_image_folder
from jepa_datamodules.formats.imagenet import (
    IMAGENET100_SHA256,
    ImageNetSetupError,
    datasets,
    detect_source,
    load_class_list,
    parse_devkit,
    prepare_imagenet,
    unpack,
)
from tests.helpers.fake_imagenet import (
    DEVKIT,
    TRAIN_TAR,
    VAL_TAR,
    make_imagenet_archives,
    make_imagenet_layout,
    tar_bytes,
    write_jpeg,
)

WNIDS = ["n01440764", "n01443537", "n01484850", "n02102040", "n03000134"]


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


@pytest.fixture
def archives(tmp_path):
    root = tmp_path / "imagenet"
    return root, make_imagenet_archives(root, WNIDS, train_per_class=3, val_per_class=2)


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


def test_parse_devkit_keeps_only_leaf_synsets(archives):
    root, info = archives
    id_to_wnid, truth = parse_devkit(root / DEVKIT)
    assert id_to_wnid == {i: w for w, i in info["ilsvrc_ids"].items()}
    assert [id_to_wnid[i] for i in truth] == list(info["val_assignment"].values())


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


def test_detect_source_recognises_each_starting_point(tmp_path):
    assert detect_source(tmp_path / "does-not-exist") is None
    empty = tmp_path / "empty"
    empty.mkdir()
    assert detect_source(empty) is None

    archives = tmp_path / "archives"
    make_imagenet_archives(archives, WNIDS[:2])
    assert detect_source(archives) == "archives"
    (archives / DEVKIT).unlink()  # the val tar cannot be sorted without the devkit
    assert detect_source(archives) is None

    layout = tmp_path / "layout"
    make_imagenet_layout(layout, WNIDS[:2])
    assert detect_source(layout) == "layout"

    flat = tmp_path / "flat"
    make_imagenet_layout(flat, WNIDS[:2], val_per_class=0)
    assert detect_source(flat) is None  # train alone is not enough
    make_imagenet_archives(tmp_path / "src", WNIDS[:2])
    shutil.copy(tmp_path / "src" / DEVKIT, flat / DEVKIT)
    shutil.copy(tmp_path / "src" / VAL_TAR, flat / VAL_TAR)
    assert detect_source(flat) == "flat_val"  # val as the tar
    with tarfile.open(flat / VAL_TAR) as tar:
        tar.extractall(flat / "val", filter="data")
    (flat / VAL_TAR).unlink()
    assert detect_source(flat) == "flat_val"  # val as a flat folder


def test_missing_data_gives_step_by_step_instructions(tmp_path):
    root = tmp_path / "imagenet"
    root.mkdir()
    (root / TRAIN_TAR).write_bytes(b"")  # only one of the three files: still not usable
    with pytest.raises(ImageNetSetupError) as caught:
        prepare_imagenet(root, progress=False)
    message = str(caught.value)
    for needed in (TRAIN_TAR, VAL_TAR, DEVKIT, "138 GB", "6.3 GB", "2.5 MB", "image-net.org",
                   "$JEPA_DATA_DIR", str(root)):
        assert needed in message
    assert "train/<wnid>" in message and "val/<wnid>" in message
    assert caught.value.path == root
    # Python speaks Python; the console gives the command line.
    assert "Run `prepare_data()` of the imagenet DataModule" in message and "point\n     data_dir at" in message
    console = console_text(caught.value, HydraTerms())
    assert "Run `jepa-prepare data=imagenet`" in console and "point\n     paths.data_dir at" in console
    assert sorted(p.name for p in root.iterdir()) == [TRAIN_TAR]  # nothing was written


def test_ready_layout_is_used_as_is_without_writing(tmp_path):
    root = tmp_path / "imagenet"
    make_imagenet_layout(root, WNIDS[:2])
    before = snapshot(tmp_path)
    # Not even a lock file: shared read-only copies of ImageNet are common on clusters.
    prepare_imagenet(root, progress=False)
    assert snapshot(tmp_path) == before


# --------------------------------------------------------------------------- indexing


def make_folder(split: Path, files: dict[str, int]) -> None:
    rng = np.random.default_rng(0)
    for cls, n in files.items():
        for k in range(n):
            write_jpeg(split / cls / f"{cls}_{k}.JPEG", rng, (16, 16))


def test_index_labels_follow_sorted_class_names(tmp_path):
    split = tmp_path / "train"
    make_folder(split, {"n02000000": 2, "n01000000": 3, "n03000000": 1})
    (split / "n01000000" / "notes.txt").write_text("not an image")
    (split / "n01000000" / "extra.png").write_bytes(b"png")  # suffixes are matched case-insensitively
    (split / ".n04000000.partial").mkdir()  # an interrupted extraction is not a class
    write_jpeg(split / ".n04000000.partial" / "x.JPEG", np.random.default_rng(1), (8, 8))

    paths, labels, classes = index_image_folder(split)

    assert classes == ["n01000000", "n02000000", "n03000000"]
    assert paths == sorted(paths) and len(paths) == 7
    assert "n01000000/extra.png" in paths and not any("notes" in p or "partial" in p for p in paths)
    assert labels.dtype == np.int64
    assert [classes[label] for label in labels] == [p.split("/")[0] for p in paths]
    assert all((split / p).is_file() for p in paths)


def test_index_subset_is_relabelled_from_zero(tmp_path):
    split = tmp_path / "train"
    make_folder(split, {"n01000000": 1, "n02000000": 2, "n03000000": 3, "n04000000": 1})

    paths, labels, classes = index_image_folder(split, classes=["n04000000", "n02000000"])

    assert classes == ["n02000000", "n04000000"]
    assert labels.tolist() == [0, 0, 1]
    assert paths == ["n02000000/n02000000_0.JPEG", "n02000000/n02000000_1.JPEG", "n04000000/n04000000_0.JPEG"]
    with pytest.raises(ValueError, match="n09999999"):
        index_image_folder(split, classes=["n01000000", "n09999999"])


def test_index_cache_is_reused_and_rebuilt_when_the_key_changes(tmp_path, monkeypatch):
    split = tmp_path / "train"
    make_folder(split, {"n01000000": 2, "n02000000": 2})
    cache = tmp_path / ".index-train.npz"
    first = index_image_folder(split, cache=cache, cache_key="stamp-1")
    assert cache.is_file()

    write_jpeg(split / "n02000000" / "n02000000_9.JPEG", np.random.default_rng(2), (8, 8))

    def no_listing(*args, **kwargs):
        raise AssertionError("the folder was listed although the cache is valid")

    with monkeypatch.context() as patch:
        patch.setattr(imagefolder.os, "scandir", no_listing)
        again = index_image_folder(split, cache=cache, cache_key="stamp-1")
        subset = index_image_folder(split, classes=["n02000000"], cache=cache, cache_key="stamp-1")
    assert again[0] == first[0] and again[2] == first[2] and np.array_equal(again[1], first[1])
    assert subset[0] == ["n02000000/n02000000_0.JPEG", "n02000000/n02000000_1.JPEG"]

    rebuilt = index_image_folder(split, cache=cache, cache_key="stamp-2")
    assert "n02000000/n02000000_9.JPEG" in rebuilt[0] and len(rebuilt[0]) == 5
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


# --------------------------------------------------------------------------- image checks


def test_check_images_finds_truncated_and_non_images(tmp_path):
    rng = np.random.default_rng(0)
    good = [tmp_path / f"good{i}.JPEG" for i in range(3)]
    for path in good:
        write_jpeg(path, rng, (64, 48))
    truncated = tmp_path / "truncated.JPEG"
    data = write_jpeg(truncated, rng, (64, 48))
    truncated.write_bytes(data[: len(data) // 2])
    text = tmp_path / "text.JPEG"
    text.write_text("this is not a picture")

    failures = dict(check_images([*good, truncated, text]))
    assert set(failures) == {truncated, text}
    assert "truncated" in failures[truncated]
    assert check_images(good) == []


def test_check_images_sample_is_seeded(tmp_path):
    paths = [tmp_path / f"{i}.JPEG" for i in range(20)]
    for path in paths:
        path.write_bytes(b"broken")  # every file fails, so the report shows which were sampled
    first = [p for p, _ in check_images(paths, sample=5, seed=3)]
    assert len(first) == 5 and first == [p for p, _ in check_images(paths, sample=5, seed=3)]
    assert {p for p, _ in check_images(paths, sample=50)} == set(paths)
    assert check_images(paths, sample=0) == []


# --------------------------------------------------------------------------- class lists


def test_packaged_imagenet100_list():
    wnids = load_class_list()
    assert len(wnids) == 100 and len(set(wnids)) == 100
    assert all(len(w) == 9 and w.startswith("n") and w[1:].isdigit() for w in wnids)
    data = importlib.resources.files("jepa_datamodules").joinpath("resources", "imagenet100.txt").read_bytes()
    assert hashlib.sha256(data).hexdigest() == IMAGENET100_SHA256
    assert wnids == data.decode().split()


def test_packaged_list_with_a_wrong_checksum_is_refused(monkeypatch):
    monkeypatch.setattr(datasets, "IMAGENET100_SHA256", "0" * 64)
    with pytest.raises(ImageNetSetupError, match="expected 0{64}"):
        load_class_list()


def test_user_class_list_is_validated_line_by_line(tmp_path):
    good = tmp_path / "mine.txt"
    good.write_text("# my classes\nn01440764\n\n  n01443537  # tench's friend\n")
    assert load_class_list(good) == ["n01440764", "n01443537"]

    bad = tmp_path / "bad.txt"
    bad.write_text("n01440764\n# comment\ngoldfish\n")
    with pytest.raises(ConfigError, match=r"line 3: 'goldfish' is not a WordNet id") as caught:
        load_class_list(bad)
    assert caught.value.setting == "class_list" and caught.value.path == bad
    repeated = tmp_path / "repeated.txt"
    repeated.write_text("n01440764\nn01443537\nn01440764\n")
    with pytest.raises(ValueError, match="line 3: n01440764 already appears on line 1"):
        load_class_list(repeated)
    with pytest.raises(ConfigError, match="class_list='.*missing.txt' cannot be read"):
        load_class_list(tmp_path / "missing.txt")
