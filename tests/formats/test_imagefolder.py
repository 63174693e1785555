"""``formats/imagefolder.py``: ``index_image_folder`` labels by sorted class names (suffixes matched
case-insensitively, staging folders skipped), relabels a class subset from zero and reuses its
``.npz`` cache while the key is unchanged; ``check_images`` finds truncated and non-image files
and samples with a seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from jepa_datamodules.formats import imagefolder
from jepa_datamodules.formats.imagefolder import check_images, index_image_folder
from tests.helpers.fake_imagenet import write_jpeg


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
