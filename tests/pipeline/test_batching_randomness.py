"""``pipeline/batching.py``: augmentations and masks (seeded per sample and per batch from seed,
epoch, rank and index) are reproducible for a seed, independent of the worker count, and
different across epochs, ranks and seeds (no numpy-seed-copied-into-workers bug)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jepa_datamodules import MultiBlockMaskGenerator, SyntheticDataModule
from jepa_datamodules.formats.base import ArraySource
from jepa_datamodules.pipeline.batching import JEPACollate, ViewDataset
from jepa_datamodules.pipeline.device_views import DeviceViews
from jepa_datamodules.pipeline.sampling import BatchKey, EpochBatchSampler
from jepa_datamodules.pipeline.transforms import TrainView


def _datamodule(tmp_path, **kwargs):
    options = dict(data_dir=tmp_path, num_train=64, num_test=16, image_size=32, patch_size=4, batch_size=8,
                   num_workers=0, mask=MultiBlockMaskGenerator(min_keep=4), progress=False)
    dm = SyntheticDataModule(**{**options, **kwargs})
    dm.prepare_data()
    dm.setup()
    return dm


def _epoch(dm, epoch: int = 0) -> list[dict]:
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(epoch)
    return list(loader)


def _same(a: dict, b: dict) -> bool:
    views = [(a["views"][k], b["views"][k]) for k in a.get("views", {})]  # views_on="device": view parameters
    return (torch.equal(a["images"], b["images"]) and torch.equal(a["indices"], b["indices"])
            and all(torch.equal(x, y) for x, y in zip(a["context_masks"] + a["target_masks"],
                                                     b["context_masks"] + b["target_masks"]))
            and all(torch.equal(x, y) for x, y in views) and len(a.get("views", {})) == len(b.get("views", {})))


@pytest.mark.slow
@pytest.mark.parametrize("views_on", ["workers", "device"])
def test_same_seed_same_batches_whatever_the_worker_count(tmp_path, views_on):
    single = _epoch(_datamodule(tmp_path, num_workers=0, views_on=views_on))
    workers = _epoch(_datamodule(tmp_path, num_workers=2, views_on=views_on))
    assert ("views" in single[0]) == (views_on == "device")
    assert len(single) == len(workers) == 8
    assert all(_same(a, b) for a, b in zip(single, workers))


def test_views_and_masks_change_with_epoch_and_seed(tmp_path):
    dm = _datamodule(tmp_path)
    first, second = _epoch(dm, 0), _epoch(dm, 1)
    # A new epoch reshuffles: compare the views of the same item in both epochs.
    index = int(first[0]["indices"][0])
    where = [(b, int((batch["indices"] == index).nonzero()[0])) for b, batch in enumerate(second)
             if (batch["indices"] == index).any()][0]
    assert not torch.equal(first[0]["images"][0], second[where[0]]["images"][where[1]])
    assert not all(torch.equal(a["context_masks"][0], b["context_masks"][0]) for a, b in zip(first, second))
    other_seed = _epoch(_datamodule(tmp_path, seed=1), 0)
    assert not torch.equal(first[0]["indices"], other_seed[0]["indices"])


def test_different_workers_draw_different_augmentations(tmp_path):
    # Every item identical: any two views differ only through their random draws.
    dm = _datamodule(tmp_path, num_workers=2, batch_size=4)
    dm.datasets["train"].source.images = torch.zeros(64, 32, 32, 3, dtype=torch.uint8).numpy()
    dm.datasets["train"].source.images[:, :16] = 255  # top half white: crops differ visibly
    batches = _epoch(dm)
    views = torch.cat([b["images"] for b in batches[:4]])  # batches 0..3 come from both workers
    distinct = {bytes(v.numpy().tobytes()) for v in views}
    assert len(distinct) > len(views) // 2


def test_ranks_get_different_masks_for_the_same_batch_position(tmp_path):
    dm = _datamodule(tmp_path)
    collate = dm.train_dataloader().collate_fn
    keys = [EpochBatchSampler(64, 8, shuffle=True, drop_last=True, seed=0, num_replicas=2, rank=r) for r in (0, 1)]
    batches = [collate(dm.datasets["train"][next(iter(sampler))]) for sampler in keys]
    assert not set(batches[0]["indices"].tolist()) & set(batches[1]["indices"].tolist())
    assert not torch.equal(batches[0]["context_masks"][0], batches[1]["context_masks"][0])


@pytest.mark.parametrize("compact", [False, True], ids=["views-in-workers", "views-on-device"])
def test_masks_and_augmentations_differ_per_rank(compact):
    rng = np.random.default_rng(0)
    source = ArraySource(rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8), np.arange(8))
    dataset = ViewDataset(source, TrainView(32), seed=0, compact=compact)
    collate = JEPACollate(MultiBlockMaskGenerator(min_keep=4).with_grid((8, 8)), seed=0)
    finish = DeviceViews(32, (0.5,) * 3, (0.5,) * 3) if compact else (lambda batch: batch)
    batches = [finish(collate(dataset[BatchKey(tuple(range(8)), epoch=0, batch_index=3, rank=rank)])) for rank in (0, 1)]
    assert not torch.equal(batches[0]["images"], batches[1]["images"])
    assert not all(torch.equal(a, b) for a, b in zip(batches[0]["target_masks"], batches[1]["target_masks"]))
    again = finish(collate(dataset[BatchKey(tuple(range(8)), epoch=0, batch_index=3, rank=1)]))
    assert torch.equal(again["images"], batches[1]["images"])  # and each rank is reproducible
