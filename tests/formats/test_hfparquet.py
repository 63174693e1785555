"""``formats/hfparquet.py``: ImageNet-1k (and ImageNet-100) from the Hugging Face parquet release, on shards written
with pyarrow in the release's schema; counts come through $JEPA_CATALOG as in other tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jepa_datamodules import ImageNet100DataModule, ImageNetDataModule
from jepa_datamodules.catalog import get_spec
from jepa_datamodules.formats.hfparquet import imagenet1k_wnids
from jepa_datamodules.cli.inventory import disk_state
from jepa_datamodules.pipeline.transforms import decode_pixels
from tests.helpers.bench import bench_cli, check_report
from tests.helpers.fake_ownimages import HF_CLASSES, HF_ROWS, HF_SHARDS

SMALL = dict(image_size=32, patch_size=4, batch_size=4, num_workers=0, progress=False)
CLASSES, ROWS, SHARDS = HF_CLASSES, HF_ROWS, HF_SHARDS  # the release of the `release` fixture (conftest.py)
BIN = Path(sys.executable).parent


def test_labels_and_pixels_equal_what_was_written(release):
    data_dir, written = release
    dm = ImageNetDataModule(data_dir=data_dir, **SMALL)
    assert dm.spec.reader == "hfparquet" and dm.spec.splits == ROWS
    dm.prepare_data()
    for split in ROWS:
        source = dm.open_split(split)
        assert len(source) == ROWS[split]
        np.testing.assert_array_equal(source.labels, [label for label, _, _ in written[split]])
        for index in range(len(source)):
            np.testing.assert_array_equal(decode_pixels(source.load(index)), written[split][index][2])
    # Labels were shuffled before being cut into shards: every shard holds several classes.
    train = dm.open_split("train")
    for shard in range(SHARDS["train"]):
        rows = np.flatnonzero(train.group_shard[np.searchsorted(train.group_start, np.arange(30), side="right") - 1] == shard)
        assert len(np.unique(train.labels[rows])) > 2
    assert train.group_start.size - 1 > SHARDS["train"]  # several row groups per shard
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert batch["images"].shape == (4, 3, 32, 32) and (batch["labels"] >= 0).all()


def test_a_worker_holds_at_most_its_row_group_cache(release):
    data_dir, _ = release
    source = ImageNetDataModule(data_dir=data_dir, **SMALL).open_split("train")
    for index in np.random.default_rng(0).permutation(len(source)):
        source.read_bytes(int(index))
        assert len(source._groups) <= source.row_group_cache
    assert source.__getstate__()["_groups"] == {} and source.__getstate__()["_files"] == {}


def test_verification_checks_shards_rows_and_decoding(release):
    data_dir, _ = release
    shards = data_dir / "imagenet" / "data"
    assert disk_state(get_spec("imagenet"), data_dir).state == "downloaded"
    ImageNetDataModule(data_dir=data_dir, **SMALL).prepare_data()
    assert disk_state(get_spec("imagenet"), data_dir).state == "verified"  # what jepa-datasets shows
    report = ImageNetDataModule(data_dir=data_dir, **SMALL).verify()
    assert report.ok, report.table()
    names = {c.name for c in report.checks}
    assert {"shards train", "shards validation", "shards test", "rows train", "rows val", "rows test",
            "decode train", "labels test"} <= names
    (shards / "validation-00001-of-00002.parquet").unlink()
    report = ImageNetDataModule(data_dir=data_dir, **SMALL).verify()
    failed = {c.name: c.found for c in report.failures}
    assert failed == {"shards validation": "1 of 2: missing 00001"}


def test_label_ids_are_the_sorted_wnid_order_of_the_folder_layout():
    wnids = imagenet1k_wnids()
    assert len(wnids) == 1000 == len(set(wnids)) and wnids == sorted(wnids)
    assert wnids[0] == "n01440764" and wnids[1] == "n01443537" and wnids[-1] == "n15075141"  # tench, goldfish, toilet tissue


def test_imagenet100_over_parquet_maps_its_wnids_to_label_ids(release, tmp_path):
    data_dir, written = release
    wnids = imagenet1k_wnids()
    class_list = tmp_path / "three.txt"
    class_list.write_text("\n".join([wnids[4], wnids[1], wnids[3]]))  # in any order: labels follow sorted wnids
    dm = ImageNet100DataModule(data_dir=data_dir, class_list=class_list, **SMALL)
    dm.prepare_data()
    train = dm.open_split("train")
    expected = [(label, pixels) for label, _, pixels in written["train"] if label in (1, 3, 4)]
    assert len(train) == len(expected) == 15
    np.testing.assert_array_equal(train.labels, [{1: 0, 3: 1, 4: 2}[label] for label, _ in expected])
    for index, (_, pixels) in enumerate(expected):
        np.testing.assert_array_equal(decode_pixels(train.load(index)), pixels)
    assert dm.verify().ok


def test_instructions_name_the_hugging_face_download(tmp_path):
    result = subprocess.run([str(BIN / "jepa-prepare"), "data=imagenet", "instructions=true",
                             f"paths.data_dir={tmp_path / 'data'}", f"paths.log_dir={tmp_path / 'runs'}"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    assert (f"huggingface-cli download ILSVRC/imagenet-1k --repo-type dataset --include 'data/*.parquet' "
            f"--local-dir {tmp_path / 'data' / 'imagenet'}") in result.stdout
    assert "ILSVRC2012_img_train.tar" in result.stdout  # the image-net.org route is still there
    with pytest.raises(Exception, match="huggingface-cli download ILSVRC/imagenet-1k"):
        ImageNetDataModule(data_dir=tmp_path / "data", **SMALL).prepare_data()


@pytest.mark.slow
def test_jepa_fit_reads_the_parquet_release_from_the_command_line(release, tmp_path):
    data_dir, _ = release
    result = subprocess.run(
        [str(BIN / "jepa-fit"), "data=imagenet", f"paths.data_dir={data_dir}", f"paths.log_dir={tmp_path / 'runs'}",
         "data.image_size=32", "data.patch_size=4", "data.batch_size=4", "data.num_workers=1", "mask.min_keep=4",
         "trainer.max_steps=2", "model.embed_dim=32", "model.depth=1", "model.predictor_dim=16",
         "model.predictor_depth=1", "model.num_heads=2"],
        capture_output=True, text=True, cwd=tmp_path, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "dataset:        imagenet" in result.stdout and "steps:          2" in result.stdout


@pytest.mark.slow
def test_jepa_bench_measures_the_parquet_release_on_a_stand_in(tmp_path):
    result, report = bench_cli(tmp_path, "data=imagenet", "data.source=parquet", "bench.synthetic_like=imagenet")
    check_report(result.stdout, report)
    shards = sorted(p.name for p in (Path(report["data"]["folder"]) / "data").iterdir())
    assert shards == ["test-00000-of-00001.parquet", "train-00000-of-00001.parquet", "validation-00000-of-00001.parquet"]
    assert report["data"]["catalog_override"]["splits"] == {"train": 50, "val": 10, "test": 10}
