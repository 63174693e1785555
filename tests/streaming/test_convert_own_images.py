"""``streaming/convert.py``: LitData conversion of your own image folder and of the Hugging Face parquet ImageNet:
the chunks hold the files' own bytes, and training batches read from them equal the
batches read from the original files."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from jepa_datamodules import ImageFolderDataModule, ImageNetDataModule
from jepa_datamodules.pipeline.masks import MultiBlockMaskGenerator
from jepa_datamodules.streaming import LitDataSource, convert_to_litdata, split_url
from tests.helpers.fake_ownimages import make_labelled_folder

SMALL = dict(image_size=32, patch_size=4, batch_size=3, num_workers=0, progress=False, shuffle="full")


@pytest.fixture(autouse=True)
def litdata_scratch(tmp_path, monkeypatch):
    monkeypatch.setenv("DATA_OPTIMIZER_CACHE_FOLDER", str(tmp_path / "optimizer-chunks"))
    monkeypatch.setenv("DATA_OPTIMIZER_DATA_CACHE_FOLDER", str(tmp_path / "optimizer-data"))


def assert_same_batches(files, streamed) -> None:
    for dm in (files, streamed):
        dm.setup()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the corrupt file's skip warning
        pairs = list(zip(files.train_dataloader(), streamed.train_dataloader()))
        pairs.append((next(iter(files.val_dataloader())), next(iter(streamed.val_dataloader()))))
    assert len(pairs) > 1
    for a, b in pairs:
        for key in ("images", "labels", "indices"):
            assert torch.equal(a[key], b[key]), key


def test_own_folder_converts_to_its_files_bytes_and_trains_the_same(tmp_path):
    root = tmp_path / "mine"
    make_labelled_folder(root)
    mask = MultiBlockMaskGenerator(min_keep=4)
    files = ImageFolderDataModule(root=root, data_dir=tmp_path / "data", mask=mask, **SMALL)
    files.prepare_data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        convert_to_litdata(files, tmp_path / "chunks", num_workers=1)
    train = files.open_split("train")
    streamed = LitDataSource(split_url(tmp_path / "chunks", "train"))
    np.testing.assert_array_equal(streamed.labels, train.labels)
    for index, path in enumerate(train.paths):
        stored = streamed.dataset[index]["image"]
        if path == "dog/truncated.jpg":  # its stand-in's bytes: the chunks never hold an undecodable image
            assert stored == (root / "train" / "dog" / "f.JPEG").read_bytes()
        else:
            assert stored == (root / "train" / path).read_bytes(), path
    assert_same_batches(files, ImageFolderDataModule(root=root, mask=mask, format="litdata",
                                                     input=str(tmp_path / "chunks"), **SMALL))


def test_parquet_imagenet_converts_to_its_jpeg_bytes_and_trains_the_same(release, tmp_path):
    data_dir, written = release
    mask = MultiBlockMaskGenerator(min_keep=4)
    files = ImageNetDataModule(data_dir=data_dir, mask=mask, **SMALL)
    files.prepare_data()
    convert_to_litdata(files, tmp_path / "chunks", num_workers=1)
    for split in ("train", "val"):
        streamed = LitDataSource(split_url(tmp_path / "chunks", split))
        assert [streamed.dataset[i]["image"] for i in range(len(streamed))] == [data for _, data, _ in written[split]]
        np.testing.assert_array_equal(streamed.labels, [label for label, _, _ in written[split]])
    assert_same_batches(files, ImageNetDataModule(data_dir=data_dir, mask=mask, format="litdata",
                                                  input=str(tmp_path / "chunks"), **SMALL))


@pytest.mark.slow
def test_jepa_prepare_converts_your_own_folder_from_the_command_line(tmp_path):
    make_labelled_folder(tmp_path / "mine")
    result = subprocess.run(
        [str(Path(sys.executable).parent / "jepa-prepare"), "data=imagefolder", f"data.root={tmp_path / 'mine'}",
         f"paths.data_dir={tmp_path / 'data'}", f"paths.log_dir={tmp_path / 'runs'}", "format=litdata",
         f"output={tmp_path / 'chunks'}"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1", "DATA_OPTIMIZER_CACHE_FOLDER": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(LitDataSource(split_url(tmp_path / "chunks", "train"))) == 11
    assert len(LitDataSource(split_url(tmp_path / "chunks", "val"))) == 2


def test_parquet_imagenet_converts_pre_resized(release, tmp_path):
    data_dir, written = release
    files = ImageNetDataModule(data_dir=data_dir, **SMALL)
    files.prepare_data()
    convert_to_litdata(files, tmp_path / "chunks", num_workers=1, splits=["train"], resize=16, quality=80)
    streamed = LitDataSource(split_url(tmp_path / "chunks", "train"))
    np.testing.assert_array_equal(streamed.labels, [label for label, _, _ in written["train"]])
    for index, (_, original, pixels) in enumerate(written["train"]):
        stored = streamed.dataset[index]["image"]
        with Image.open(io.BytesIO(stored)) as image:
            height, width = pixels.shape[:2]
            assert image.format == "JPEG" and min(image.size) == 16, image.size
            assert image.size == (round(width * 16 / min(width, height)), round(height * 16 / min(width, height)))
        assert len(stored) < len(original)
