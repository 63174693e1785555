"""LitData: converting any dataset to optimized chunks (local folder or S3), reading them
back with the same items, labels and batches as the dataset's own files, training on them,
and resuming mid-epoch."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import lightning
import numpy as np
import pytest
import torch
from PIL import Image

from jepa_datamodules import ImageNetDataModule, SyntheticDataModule, TinyJEPA
from jepa_datamodules.pipeline.masks import MultiBlockMaskGenerator
from jepa_datamodules.streaming import ChunkCache, LitDataSource, convert_to_litdata, resized_storage_report, split_url
from jepa_datamodules.cli.terms import HydraTerms, console_text
from tests.helpers.fake_imagenet import make_imagenet_layout
from tests.helpers.fakes import catalog_override
from tests.helpers.recorder import fit, interrupted_and_resumed
from tests.helpers.streams import assert_same_batches, files_in_block_order, s3_server

SYNTHETIC = dict(num_train=96, num_test=16, image_size=32, patch_size=4, batch_size=8, progress=False)


def synthetic(data_dir: Path, num_workers: int = 0, **kwargs) -> SyntheticDataModule:
    return SyntheticDataModule(data_dir=data_dir, num_workers=num_workers, mask=MultiBlockMaskGenerator(min_keep=4),
                               **SYNTHETIC, **kwargs)


@pytest.fixture(autouse=True)
def litdata_scratch(tmp_path, monkeypatch):
    # LitData stages chunks for remote outputs in these folders (default: under $HOME).
    monkeypatch.setenv("DATA_OPTIMIZER_CACHE_FOLDER", str(tmp_path / "optimizer-chunks"))
    monkeypatch.setenv("DATA_OPTIMIZER_DATA_CACHE_FOLDER", str(tmp_path / "optimizer-data"))


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> tuple[Path, Path]:
    """The synthetic dataset, prepared as files and converted into a local LitData folder."""
    root = tmp_path_factory.mktemp("litdata")
    dm = synthetic(root / "data")
    dm.prepare_data()
    written = convert_to_litdata(dm, root / "chunks", chunk_bytes="40KB", num_workers=2)
    assert set(written) == {"train", "test"}
    return root / "data", root / "chunks"


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


def test_litdata_batches_equal_the_files_batches(converted):
    data_dir, chunks = converted
    # shuffle="full": the same permutation as the files.
    assert_same_batches(synthetic(data_dir, shuffle="full"),
                        synthetic(data_dir, format="litdata", input=str(chunks), shuffle="full"))
    # The default on chunks is chunk by chunk: the files read in the same block order give the same batches.
    streamed = synthetic(data_dir, format="litdata", input=str(chunks))
    assert_same_batches(files_in_block_order(synthetic(data_dir), streamed), streamed)


def test_trainer_fits_a_few_steps_on_litdata(converted, tmp_path):
    data_dir, chunks = converted
    dm = synthetic(data_dir, format="litdata", input=str(chunks))
    model = TinyJEPA(32, 4, 10, embed_dim=32, depth=1, num_heads=2, predictor_dim=16, predictor_depth=1)
    trainer = lightning.Trainer(max_steps=3, accelerator="cpu", logger=False, enable_progress_bar=False,
                                enable_model_summary=False, enable_checkpointing=False, limit_val_batches=1,
                                default_root_dir=tmp_path)
    trainer.fit(model, datamodule=dm)
    assert len(model.losses) == 3 and all(np.isfinite(model.losses))


def test_resuming_mid_epoch_on_litdata_gives_the_uninterrupted_batches(converted, tmp_path):
    data_dir, chunks = converted
    # The reference is the uninterrupted run on the dataset's own files: both formats give
    # the same stream, so this also checks that nothing in the format shifts it.
    reference = fit(synthetic(data_dir), 20, tmp_path / "reference").seen
    resumed = interrupted_and_resumed(lambda: synthetic(data_dir, 2, format="litdata", input=str(chunks),
                                                        shuffle="full"), tmp_path / "full", 20, checkpoint_at=5, stop_at=8)
    assert len(reference) == 20 > SYNTHETIC["num_train"] // SYNTHETIC["batch_size"]
    assert resumed == reference
    # Chunk by chunk (the default on chunks), with 2 workers resumed against 0 uninterrupted.
    blocks = fit(synthetic(data_dir, format="litdata", input=str(chunks)), 20, tmp_path / "blocks").seen
    assert blocks != reference
    assert interrupted_and_resumed(lambda: synthetic(data_dir, 2, format="litdata", input=str(chunks)),
                                   tmp_path / "resumed", 20, checkpoint_at=5, stop_at=8) == blocks


# ------------------------------------------------------------------------------ S3
@pytest.fixture(scope="module")
def s3_endpoint():
    with s3_server() as endpoint:
        yield endpoint


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


@pytest.mark.slow
def test_remote_chunks_on_disk_stay_within_stream_cache_bytes(converted, s3_endpoint, tmp_path, monkeypatch):
    data_dir, chunks = converted
    options = {"endpoint_url": s3_endpoint}
    convert_to_litdata(synthetic(data_dir), "s3://jepa/bounded", storage_options=options, chunk_bytes="40KB",
                       num_workers=1)
    chunk = max(p.stat().st_size for p in (chunks / "train").glob("*.bin"))
    monkeypatch.setattr(ChunkCache, "GRACE_SECONDS", 0.0)  # one process: nobody else is reading
    peaks = []
    evict = ChunkCache.evict
    monkeypatch.setattr(ChunkCache, "evict", lambda self, keep=frozenset(): (evict(self, keep),
                                                                             peaks.append(self.cached_bytes())))
    dm = synthetic(data_dir, 0, format="litdata", input="s3://jepa/bounded", storage_options=options,
                   stream_cache_dir=str(tmp_path / "cache"), stream_cache_bytes=6 * chunk, shuffle_window=2)
    seen = [i for batch in dm.train_dataloader() for i in batch["indices"].tolist()]
    assert len(seen) == len(set(seen)) == SYNTHETIC["num_train"]
    source = dm.datasets["train"].source
    assert len(source.sizes) == 8 and peaks and max(peaks) <= 6 * chunk and source.cached_bytes() <= 6 * chunk
    # The window (2 chunks, +1 at its edge) and the chunks fetched ahead always fitted: each read once.
    assert source.gets() == 1 + len(source.sizes)
    too_small = synthetic(data_dir, 0, format="litdata", input="s3://jepa/bounded", storage_options=options,
                          stream_cache_dir=str(tmp_path / "cache"), stream_cache_bytes=2 * chunk, shuffle_window=2)
    with pytest.warns(UserWarning, match=r"stream_cache_bytes=.* holds fewer than 4 chunks of s3://jepa/bounded/train"):
        too_small.setup()


# --------------------------------------------------------------------------- errors
def test_converting_twice_needs_force(converted, tmp_path):
    data_dir, _ = converted
    dm = synthetic(data_dir)
    convert_to_litdata(dm, tmp_path / "chunks", splits=["test"], num_workers=1)
    with pytest.raises(ValueError, match=r"already holds a converted dataset; allowed is a new output, or force=True"):
        convert_to_litdata(dm, tmp_path / "chunks", splits=["test"], num_workers=1)
    convert_to_litdata(dm, tmp_path / "chunks", splits=["test"], num_workers=1, force=True)
    assert len(LitDataSource(split_url(tmp_path / "chunks", "test"))) == 16


@pytest.mark.parametrize("kwargs, message", [
    (dict(format="tfrecord"), r"Unknown value 'tfrecord' for argument format. Valid values are \{files, litdata\}"),
    (dict(format="litdata"), r"input=None is invalid with format='litdata'; allowed is the folder or URL .* given as "
                             r"output to `convert_to_litdata\(dm, output\)`"),
    (dict(input="s3://bucket/x"), r"input='s3://bucket/x' is only read with format='litdata'"),
])
def test_bad_format_arguments_say_what_is_allowed(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        synthetic(tmp_path, **kwargs)


def test_reading_a_folder_that_was_never_converted_says_how_to_convert(tmp_path):
    dm = synthetic(tmp_path, format="litdata", input=str(tmp_path / "nothing-here"))
    dm.prepare_data()  # nothing to download in this format
    with pytest.raises(FileNotFoundError, match=r"is not a LitData dataset \(labels missing: .*\); allowed is the "
                                                 r"output of a conversion, `convert_to_litdata\(dm, output\)`") as error:
        dm.setup()
    # The console names the command that converts (tests/cli/test_terms.py renders every mark).
    assert "`jepa-prepare data=<name> format=litdata output=<where>`" in console_text(error.value, HydraTerms())


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
