"""``streaming/convert.py``'s ``convert_to_litdata``: a dataset converted to optimized chunks reads
back with the same items and labels (JPEG files byte for byte), pre-resized conversion stores
smaller JPEGs and trains in both view modes, bad arguments say what is allowed, converting twice
needs ``force``, and ``jepa-prepare format=litdata`` converts from the command line (``resize``
without it is one sentence)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jepa_datamodules import ImageNetDataModule
from jepa_datamodules.pipeline.masks import MultiBlockMaskGenerator
from jepa_datamodules.streaming import LitDataSource, convert_to_litdata, resized_storage_report, split_url
from tests.helpers.fake_imagenet import make_imagenet_layout
from tests.helpers.fakes import catalog_override
from tests.helpers.litdata import synthetic


def test_round_trip_from_a_local_folder_keeps_items_and_labels(converted):
    data_dir, chunks = converted
    files = synthetic(data_dir)
    for split in ("train", "test"):
        original = files.open_split(split)
        streamed = LitDataSource(split_url(chunks, split))
        assert len(streamed) == len(original)
        np.testing.assert_array_equal(streamed.labels, original.labels)
        for index in range(len(original)):
            np.testing.assert_array_equal(streamed.load(index), original.load(index))
            assert streamed.dataset[index]["index"] == index  # stored in source order
    assert len(list((chunks / "train").glob("*.bin"))) > 1  # several chunks: order is kept across them


def test_round_trip_keeps_jpeg_files_byte_for_byte(tmp_path, monkeypatch):
    wnids = ["n01440764", "n01443537", "n01484850"]
    make_imagenet_layout(tmp_path / "data" / "imagenet", wnids, train_per_class=3, val_per_class=2)
    monkeypatch.setenv("JEPA_CATALOG", str(catalog_override(tmp_path / "catalog.yaml", {
        "imagenet": {"splits": {"train": 9, "val": 6}, "num_classes": 3}})))
    dm = ImageNetDataModule(data_dir=tmp_path / "data", image_size=32, patch_size=4, batch_size=3, num_workers=0,
                            progress=False)
    dm.prepare_data()
    convert_to_litdata(dm, tmp_path / "chunks", num_workers=1)
    for split in ("train", "val"):
        original = dm.open_split(split)
        streamed = LitDataSource(split_url(tmp_path / "chunks", split))
        np.testing.assert_array_equal(streamed.labels, original.labels)
        for index in range(len(original)):
            assert streamed.dataset[index]["image"] == (original.root / original.paths[index]).read_bytes()
        image = streamed.load(0)
        assert isinstance(image, Image.Image) and image.format == "JPEG"  # still lazily decodable


def test_pre_resized_conversion_stores_smaller_jpegs_and_trains_in_both_view_modes(tmp_path, monkeypatch, capsys):
    wnids = ["n01440764", "n01443537"]
    make_imagenet_layout(tmp_path / "data" / "imagenet", wnids, train_per_class=4, val_per_class=2, size=(200, 150))
    make_imagenet_layout(tmp_path / "small" / "imagenet", wnids[:1], train_per_class=1, val_per_class=0, size=(50, 40))
    small = next((tmp_path / "small/imagenet/train").rglob("*.JPEG"))
    os.replace(small, tmp_path / "data/imagenet/train" / wnids[0] / "small.JPEG")  # already below the short side
    monkeypatch.setenv("JEPA_CATALOG", str(catalog_override(tmp_path / "catalog.yaml", {
        "imagenet": {"splits": {"train": 9, "val": 4}, "num_classes": 2}})))
    options = dict(image_size=32, patch_size=4, batch_size=4, num_workers=0, progress=False,
                   mask=MultiBlockMaskGenerator(min_keep=4))
    dm = ImageNetDataModule(data_dir=tmp_path / "data", **options)
    dm.prepare_data()
    convert_to_litdata(dm, tmp_path / "chunks", num_workers=1, resize=64, quality=80)
    printed = capsys.readouterr().out
    assert "imagenet train: stored at short side 64 px, quality 80:" in printed and "for the original files" in printed
    original = dm.open_split("train")
    streamed = LitDataSource(split_url(tmp_path / "chunks", "train"))
    np.testing.assert_array_equal(streamed.labels, original.labels)
    for index in range(len(original)):
        stored = streamed.dataset[index]["image"]
        source_bytes = (original.root / original.paths[index]).read_bytes()
        with Image.open(io.BytesIO(stored)) as image:
            if original.paths[index].endswith("small.JPEG"):
                assert stored == source_bytes  # smaller than the short side: kept byte for byte
            else:
                assert image.format == "JPEG" and image.size == (85, 64) and len(stored) < len(source_bytes)
    report = resized_storage_report(original, 64, 80, samples=4)
    assert report["resized"]["kb_per_image"] < report["original"]["kb_per_image"]
    assert report["resized"]["decode_ms_per_image"] > 0 and report["original"]["total_gb"] > report["resized"]["total_gb"]
    for views_on in ("workers", "device"):
        streamed_dm = ImageNetDataModule(data_dir=tmp_path / "data", format="litdata", input=str(tmp_path / "chunks"),
                                         views_on=views_on, **options)
        batch = next(iter(streamed_dm.train_dataloader()))
        assert ("encoded" in batch) == (views_on == "device")  # LitData hands the JPEG bytes over undecoded
        assert streamed_dm.on_after_batch_transfer(batch, 0)["images"].shape == (4, 3, 32, 32)


@pytest.mark.parametrize("kwargs, message", [
    (dict(resize=0), r"resize=0 is invalid; allowed is a positive integer"),
    (dict(resize=64, quality=101), r"quality=101 is invalid; allowed is an integer from 1 to 100"),
    (dict(quality=80), r"quality=80 only applies with resize=<short side>"),
    (dict(resize=64), r"resize=64 applies to datasets stored as image files .* synthetic stores raw pixel arrays"),
])
def test_bad_resize_arguments_say_what_is_allowed(converted, tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        convert_to_litdata(synthetic(converted[0]), tmp_path / "resized", **kwargs)


# --------------------------------------------------------------------------- errors
def test_converting_twice_needs_force(converted, tmp_path):
    data_dir, _ = converted
    dm = synthetic(data_dir)
    convert_to_litdata(dm, tmp_path / "chunks", splits=["test"], num_workers=1)
    with pytest.raises(ValueError, match=r"already holds a converted dataset; allowed is a new output, or force=True"):
        convert_to_litdata(dm, tmp_path / "chunks", splits=["test"], num_workers=1)
    convert_to_litdata(dm, tmp_path / "chunks", splits=["test"], num_workers=1, force=True)
    assert len(LitDataSource(split_url(tmp_path / "chunks", "test"))) == 16


def test_conversion_needs_an_output(converted):
    with pytest.raises(ValueError, match=r"output=None is invalid for a LitData conversion"):
        convert_to_litdata(synthetic(converted[0]), None)


@pytest.mark.slow
def test_jepa_prepare_converts_from_the_command_line(tmp_path):
    script = Path(sys.executable).parent / "jepa-prepare"
    result = subprocess.run(
        [str(script), "data=synthetic", "data.num_train=64", "data.num_test=16", f"paths.data_dir={tmp_path / 'data'}",
         f"paths.log_dir={tmp_path / 'runs'}", "format=litdata", f"output={tmp_path / 'chunks'}"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1", "DATA_OPTIMIZER_CACHE_FOLDER": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr[-3000:]
    source = LitDataSource(split_url(tmp_path / "chunks", "train"))
    assert len(source) == 64


def test_jepa_prepare_resize_without_litdata_is_one_sentence(tmp_path):
    script = Path(sys.executable).parent / "jepa-prepare"
    result = subprocess.run([str(script), "data=synthetic", "resize=256", f"paths.data_dir={tmp_path / 'data'}",
                             f"paths.log_dir={tmp_path / 'runs'}"], capture_output=True, text=True, cwd=tmp_path,
                            timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 2
    assert result.stderr.strip() == ("error: resize=256 only applies to format=litdata (it sets the stored short side); "
                                     "add format=litdata output=<where>, or leave resize unset.")
    assert not (tmp_path / "data").exists()
