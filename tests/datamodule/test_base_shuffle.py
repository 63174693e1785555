"""``datamodule/base.py``: ``shuffle`` on a real source with blocks: the Hugging Face parquet shards
read in place, whose row groups are decompressed once per window instead of once per image, with
every guarantee of the full order kept through Lightning (workers, resume, DDP ranks)."""

from __future__ import annotations

import json

import lightning
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from jepa_datamodules import ImageNetDataModule, SyntheticDataModule
from jepa_datamodules.pipeline.masks import MultiBlockMaskGenerator
from tests.datamodule.test_base_ddp import RankRecorder, _tupled
from tests.helpers.recorder import fit, interrupted_and_resumed

SMALL = dict(image_size=32, patch_size=4, batch_size=4, progress=False, mask=MultiBlockMaskGenerator(min_keep=4))


def parquet(data_dir, **kwargs) -> ImageNetDataModule:
    return ImageNetDataModule(data_dir=data_dir, **{"num_workers": 0, **SMALL, **kwargs})


def epoch_batches(dm, epoch: int = 0) -> list[tuple]:
    dm.setup()
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(epoch)
    return [(tuple(b["indices"].tolist()), b["images"].numpy().tobytes(), tuple(m.numpy().tobytes() for m in b["target_masks"]))
            for b in loader]


def test_auto_reads_parquet_row_group_by_row_group_and_decompresses_each_once(release, monkeypatch):
    data_dir, _ = release
    reads = []
    original = pq.ParquetFile.read_row_group
    monkeypatch.setattr(pq.ParquetFile, "read_row_group", lambda self, i, *a, **k: reads.append(i) or original(self, i, *a, **k))
    dm = parquet(data_dir, shuffle_window=2)
    dm.prepare_data()
    dm.setup()
    assert dm.train_order == "blocks"
    groups = len(set(dm.datasets["train"].source.block_ids().tolist()))
    assert groups > 30 // 4 // 2  # several row groups: there is an order to get right
    reads.clear()
    batches = epoch_batches(dm, 1)
    assert len(batches) == 30 // 4
    assert len(reads) <= groups  # every row group decompressed at most once in the epoch
    full = parquet(data_dir, shuffle="full", shuffle_window=2)
    full.setup()
    reads.clear()
    epoch_batches(full, 1)
    assert len(reads) > 2 * groups  # the full permutation goes back to the same row groups again and again


@pytest.mark.parametrize("shuffle", ["full", "blocks"])
def test_order_views_and_masks_do_not_depend_on_the_worker_count(release, shuffle):
    data_dir, _ = release
    zero = epoch_batches(parquet(data_dir, shuffle=shuffle, num_workers=0), 2)
    two = epoch_batches(parquet(data_dir, shuffle=shuffle, num_workers=2), 2)
    assert zero == two
    assert epoch_batches(parquet(data_dir, shuffle=shuffle), 3) != zero  # a new order every epoch


@pytest.mark.slow
@pytest.mark.parametrize("shuffle", ["full", "blocks"])
def test_resuming_mid_epoch_through_a_checkpoint_gives_the_uninterrupted_batches(release, tmp_path, shuffle):
    data_dir, _ = release
    reference = fit(parquet(data_dir, shuffle=shuffle), 12, tmp_path / "reference").seen
    resumed = interrupted_and_resumed(lambda: parquet(data_dir, shuffle=shuffle, num_workers=2), tmp_path, 12,
                                      checkpoint_at=3, stop_at=5)
    assert len(reference) == 12 > 30 // 4  # past an epoch's end
    assert resumed == reference


@pytest.mark.slow
@pytest.mark.parametrize("shuffle", ["blocks"])  # "full": tests/datamodule/test_base_ddp.py
def test_two_gloo_ranks_read_disjoint_equal_shares_reshuffled_each_epoch(release, tmp_path, shuffle):
    data_dir, _ = release
    out = tmp_path / "records"
    out.mkdir()
    dm = parquet(data_dir, shuffle=shuffle, batch_size=3)
    trainer = lightning.Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", max_epochs=2, logger=False,
                                enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                                limit_val_batches=0, default_root_dir=tmp_path)
    trainer.fit(RankRecorder(str(out)), datamodule=dm)
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    seen = [[tuple(map(_tupled, batch)) for batch in r["seen"]] for r in ranks]
    assert len(seen[0]) == len(seen[1]) == 2 * 5  # 30 rows, 2 ranks x 5 batches of 3 per epoch
    for epoch in (0, 1):
        ids = [[i for e, _, batch_ids, *_ in rank if e == epoch for i in batch_ids] for rank in seen]
        assert len(ids[0]) == len(ids[1]) == 15 and not set(ids[0]) & set(ids[1])
    for rank in seen:
        assert [b for b in rank if b[0] == 0] != [b for b in rank if b[0] == 1]


@pytest.mark.parametrize("kwargs, message", [
    (dict(shuffle="random"), r"^Unknown value 'random' for argument shuffle. Valid values are \{auto, full, blocks\}.$"),
    (dict(shuffle_window=0), r"^shuffle_window=0 is invalid; allowed is a positive integer"),
    (dict(shuffle_window=2.5), r"^shuffle_window=2.5 is invalid; allowed is a positive integer"),
])
def test_bad_shuffle_settings_are_one_sentence(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        SyntheticDataModule(data_dir=tmp_path, **kwargs)


def test_blocks_on_a_source_without_blocks_is_one_sentence(tmp_path):
    dm = SyntheticDataModule(data_dir=tmp_path, num_train=64, num_test=16, shuffle="blocks", **SMALL)
    dm.prepare_data()
    with pytest.raises(ValueError, match=r"^shuffle='blocks' needs a source that declares blocks \(parquet row groups, "
                                         r"LitData chunks\), and synthetic \(its own files\) has none; allowed here is "
                                         r"shuffle='auto' or shuffle='full'.$"):
        dm.setup()
    auto = SyntheticDataModule(data_dir=tmp_path, num_train=64, num_test=16, **SMALL)
    auto.setup()
    assert auto.train_order == "full"  # auto: the full permutation where there are no blocks
