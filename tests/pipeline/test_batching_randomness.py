"""Augmentations and masks: reproducible for a seed, independent of the worker count,
different across epochs, ranks and seeds (no numpy-seed-copied-into-workers bug)."""

from __future__ import annotations

import pytest
import torch

from jepa_datamodules import MultiBlockMaskGenerator, SyntheticDataModule
from jepa_datamodules.pipeline.sampling import EpochBatchSampler


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
