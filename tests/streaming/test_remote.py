"""``streaming/remote.py``: datasets streamed from a loopback S3 endpoint. The synthetic dataset's
chunks read back from the bucket and train with the files' batches; image-file datasets (your own
folder, the ImageNet layout) converted straight to the bucket or converted locally and uploaded,
read by loader workers chunk by chunk on a machine that holds nothing but the chunks; and an
unreachable endpoint is one sentence naming the URL."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jepa_datamodules import ImageFolderDataModule, ImageNetDataModule
from tests.helpers.fake_formats import pattern_jpeg, write_file
from jepa_datamodules.pipeline.masks import MultiBlockMaskGenerator
from jepa_datamodules.storage.download import DownloadError
from jepa_datamodules.streaming import LitDataSource, convert_to_litdata
from tests.helpers.fake_imagenet import make_imagenet_layout
from tests.helpers.fakes import catalog_override
from tests.helpers.litdata import SYNTHETIC, synthetic
from tests.helpers.recorder import fit
from tests.helpers.streams import assert_same_batches, files_in_block_order, s3_server, upload_folder

SMALL = dict(image_size=32, patch_size=4, batch_size=4, progress=False, mask=MultiBlockMaskGenerator(min_keep=4))
CLASSES = ["bird", "Cat", "dog"]  # torchvision's case-sensitive order: Cat, bird, dog
WNIDS = ["n01440764", "n01443537", "n01484850"]


@pytest.fixture(autouse=True)
def litdata_scratch(tmp_path, monkeypatch):
    monkeypatch.setenv("DATA_OPTIMIZER_CACHE_FOLDER", str(tmp_path / "optimizer-chunks"))
    monkeypatch.setenv("DATA_OPTIMIZER_DATA_CACHE_FOLDER", str(tmp_path / "optimizer-data"))


@pytest.fixture(scope="module")
def s3_endpoint():
    with s3_server() as endpoint:
        yield endpoint


def own_folder(root: Path) -> Path:
    """Class after class, as a camera roll sorted into folders: 3 classes x 8 JPEGs, and a val/ folder."""
    rng = np.random.default_rng(5)
    for name in CLASSES:
        for i in range(8):
            write_file(root / "train" / name / f"{i:02d}.jpg", pattern_jpeg(rng, (56, 44)))
        for i in range(2):
            write_file(root / "val" / name / f"v{i}.jpg", pattern_jpeg(rng, (44, 56)))
    return root


def datamodules(kind: str, tmp_path: Path, monkeypatch):
    """(files DataModule, a maker of the same DataModule on chunks with nothing else on disk)."""
    if kind == "imagefolder":
        root = own_folder(tmp_path / "mine")
        files = ImageFolderDataModule(root=root, num_workers=0, **SMALL)

        def streamed(**kwargs):  # no root: the chunks are all this machine has
            return ImageFolderDataModule(root=tmp_path / "absent", data_dir=tmp_path / "empty", **SMALL, **kwargs)
    else:
        make_imagenet_layout(tmp_path / "data" / "imagenet", WNIDS, train_per_class=7, val_per_class=2)
        monkeypatch.setenv("JEPA_CATALOG", str(catalog_override(tmp_path / "catalog.yaml", {
            "imagenet": {"splits": {"train": 21, "val": 6}, "num_classes": 3}})))
        files = ImageNetDataModule(data_dir=tmp_path / "data", num_workers=0, **SMALL)

        def streamed(**kwargs):
            return ImageNetDataModule(data_dir=tmp_path / "empty", **SMALL, **kwargs)
    files.prepare_data()
    return files, streamed


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["imagefolder", "imagenet"])
@pytest.mark.parametrize("route", ["to-the-bucket", "uploaded"])
def test_image_datasets_stream_from_s3_with_the_files_batches(kind, route, s3_endpoint, tmp_path, monkeypatch):
    files, streamed = datamodules(kind, tmp_path, monkeypatch)
    options = {"endpoint_url": s3_endpoint}
    url = f"s3://jepa/{kind}-{route}"
    if route == "to-the-bucket":
        convert_to_litdata(files, url, storage_options=options, chunk_bytes="8KB", num_workers=1)
    else:
        convert_to_litdata(files, tmp_path / "chunks", chunk_bytes="8KB", num_workers=1)
        upload_folder(tmp_path / "chunks", s3_endpoint, url)
    remote = dict(format="litdata", input=url, storage_options=options, stream_cache_dir=str(tmp_path / "cache"))

    full = streamed(shuffle="full", num_workers=2, **remote)  # loader workers read the bucket (the first batch failed there)
    assert full.classes == files.classes and full.num_classes == files.num_classes == 3
    with pytest.warns(UserWarning, match="shuffle='full' on"):
        assert assert_same_batches(ImageFolderDataModule(root=tmp_path / "mine", num_workers=0, shuffle="full", **SMALL)
                                   if kind == "imagefolder" else files, full) > 1
    files.setup()
    assert {k: len(v) for k, v in full.datasets.items()} == {k: len(v) for k, v in files.datasets.items()}

    blocks = streamed(shuffle="blocks", num_workers=0, **remote)
    assert assert_same_batches(files_in_block_order(files, blocks), blocks) > 1
    assert not (tmp_path / "absent").exists() and not (tmp_path / "empty").exists()  # nothing written, nothing needed


def test_own_folder_chunks_train_through_jepa_fit_without_the_folder(tmp_path):
    root = own_folder(tmp_path / "mine")
    files = ImageFolderDataModule(root=root, num_workers=0, **SMALL)
    files.prepare_data()
    convert_to_litdata(files, tmp_path / "chunks", chunk_bytes="8KB", num_workers=1)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = subprocess.run(
        [str(Path(sys.executable).parent / "jepa-fit"), "data=imagefolder", "data.format=litdata",
         f"data.input={tmp_path / 'chunks'}", "data.batch_size=4", "data.num_workers=0", "data.image_size=32",
         "data.patch_size=4", "trainer.max_steps=3", f"paths.data_dir={elsewhere / 'data'}",
         f"paths.log_dir={elsewhere / 'runs'}"],
        capture_output=True, text=True, cwd=elsewhere, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert re.search(r"^steps: +3$", result.stdout, re.M), result.stdout[-2000:]
    assert not (elsewhere / "data").exists()  # the chunks are all it read; no folder was made for the images


def test_an_unreachable_endpoint_is_one_sentence_naming_the_url(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(DownloadError, match=rf"^Could not read s3://jepa/nowhere/facts: the endpoint "
                                            rf"http://127.0.0.1:{port} does not answer \(.*\); check the endpoint_url of storage_options"):
        ImageFolderDataModule(root=tmp_path / "absent", format="litdata", input="s3://jepa/nowhere",
                              storage_options={"endpoint_url": f"http://127.0.0.1:{port}"},
                              stream_cache_dir=str(tmp_path / "cache"), **SMALL)


@pytest.mark.slow
def test_streams_from_an_s3_endpoint(converted, s3_endpoint, tmp_path):
    data_dir, _ = converted
    options = {"endpoint_url": s3_endpoint}  # LitData's documented way: boto3 client arguments
    files = synthetic(data_dir)
    convert_to_litdata(files, "s3://jepa/synthetic", storage_options=options, chunk_bytes="40KB", num_workers=2)

    streamed = LitDataSource("s3://jepa/synthetic/train", storage_options=options, cache_dir=str(tmp_path / "cache"))
    original = files.open_split("train")
    np.testing.assert_array_equal(streamed.labels, original.labels)
    indices = [5, 0, 95, 42]
    for index, image in zip(indices, streamed.load_many(indices)):
        np.testing.assert_array_equal(image, original.load(index))

    # Training through loader workers reads the bucket and sees the files' batches (full
    # order) or the local chunks' batches (chunk by chunk, the default).
    reference = fit(synthetic(data_dir), 6, tmp_path / "reference").seen
    remote = dict(format="litdata", input="s3://jepa/synthetic", storage_options=options,
                  stream_cache_dir=str(tmp_path / "cache"))
    with pytest.warns(UserWarning, match=r"shuffle='full' on synthetic \(LitData chunks at s3://jepa/synthetic\) reads a whole chunk"):
        assert fit(synthetic(data_dir, 2, shuffle="full", **remote), 6, tmp_path / "remote").seen == reference
    local = fit(synthetic(data_dir, format="litdata", input=str(converted[1])), 6, tmp_path / "local").seen
    assert fit(synthetic(data_dir, 2, **remote), 6, tmp_path / "blocks").seen == local

    # Chunk by chunk, one epoch in this process: one download per chunk, none per item.
    dm = synthetic(data_dir, 0, **{**remote, "stream_cache_dir": str(tmp_path / "fresh-cache")})
    batches = sum(1 for _ in dm.train_dataloader())
    source = dm.datasets["train"].source
    assert batches == len(source) // SYNTHETIC["batch_size"]
    assert source.gets() == 1 + len(source.sizes)  # the index, then each chunk once
