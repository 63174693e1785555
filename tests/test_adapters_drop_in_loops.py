"""``jepa_datamodules.adapters`` (``ijepa_loader``, ``hjepa_feed``): our loaders in the training loops
of three public codebases, replayed call for call.

* I-JEPA's ``src/train.py``: ``ipe = len(unsupervised_loader)``, ``sampler.set_epoch(epoch)``,
  the same loader object iterated every epoch, ``for itr, (udata, masks_enc, masks_pred) in
  enumerate(loader)``, ``imgs = udata[0].to(device)``, the masks gathered and concatenated.
* lightly's ``examples/pytorch/ijepa.py``: the same items, two epochs, no ``set_epoch`` at all.
* H-JEPA's ``HJEPATrainer``: ``images = batch[0].to(device)``, then
  ``masking_fn(batch_size=images.size(0), device=device)`` and the ``level_0`` targets combined
  with ``.any(dim=1)``; its picture step asks ``masking_fn(batch_size=4, ...)``.

Their code is not copied: the loops are written here from those call patterns.
"""

from __future__ import annotations

import pytest
import torch

from jepa_datamodules import HierarchicalMaskGenerator, MultiBlockMaskGenerator, SyntheticDataModule
from jepa_datamodules.adapters import hjepa_feed, ijepa_loader
from jepa_datamodules.pipeline.sampling import EpochBatchSampler

NUM_TRAIN, BATCH = 64, 8


def synthetic(tmp_path, **kwargs) -> SyntheticDataModule:
    return SyntheticDataModule(data_dir=tmp_path, num_train=NUM_TRAIN, num_test=16, batch_size=BATCH, num_workers=0,
                               progress=False, mask=kwargs.pop("mask", MultiBlockMaskGenerator(min_keep=4)), **kwargs)


def gather_and_cat(x: torch.Tensor, masks: list[torch.Tensor]) -> torch.Tensor:
    """I-JEPA's apply_masks, from its description: gather each mask's tokens, concatenate along the batch."""
    return torch.cat([torch.gather(x, 1, m.unsqueeze(-1).repeat(1, 1, x.size(-1))) for m in masks], dim=0)


def ijepa_train_loop(loader, epochs: int, set_epoch: bool, num_patches: int) -> list[dict]:
    """What I-JEPA's loop (set_epoch=True) or lightly's (False) does with the loader; a record per epoch."""
    ipe = len(loader)
    device = torch.device("cpu")
    history = []
    for epoch in range(epochs):
        if set_epoch:
            loader.sampler.set_epoch(epoch)
        record = {"steps": 0, "labels": [], "masks": [], "pixels": []}
        for itr, (udata, masks_enc, masks_pred) in enumerate(loader):
            imgs = udata[0].to(device, non_blocking=True)
            masks_1 = [u.to(device, non_blocking=True) for u in masks_enc]
            masks_2 = [u.to(device, non_blocking=True) for u in masks_pred]
            assert imgs.dim() == 4 and imgs.dtype == torch.float32  # a batch, not one image
            tokens = torch.randn(len(imgs), num_patches, 6)  # stands in for the ViT's patch tokens
            z = gather_and_cat(tokens, masks_1)
            h = gather_and_cat(tokens, masks_2)
            assert z.shape == (len(masks_1) * len(imgs), masks_1[0].shape[1], 6)
            assert h.shape == (len(masks_2) * len(imgs), masks_2[0].shape[1], 6)
            record["steps"] = itr + 1
            record["labels"].append(udata[1])
            record["masks"].append(torch.cat([m.flatten() for m in masks_1 + masks_2]))
            record["pixels"].append(imgs)
        assert record["steps"] == ipe
        history.append(record)
    return history


def test_ijepa_train_loop_runs_two_epochs_over_one_loader(tmp_path):
    dm = synthetic(tmp_path)
    loader = ijepa_loader(dm)
    assert len(loader) == NUM_TRAIN // BATCH
    first, second = ijepa_train_loop(loader, 2, set_epoch=True, num_patches=64)
    assert first["steps"] == second["steps"] == NUM_TRAIN // BATCH  # the second epoch is not empty
    assert not torch.equal(torch.cat(first["masks"]), torch.cat(second["masks"]))
    # udata[0] is the batch the LightningModule would get: normalized float32 views.
    reference = dm.train_dataloader()
    reference.sampler.set_epoch(1)
    batch = dm.on_after_batch_transfer(next(iter(reference)), 0)
    assert torch.equal(second["pixels"][0], batch["images"])
    assert torch.equal(second["labels"][0], batch["labels"])


def test_lightly_loop_without_set_epoch_gets_a_new_epoch_each_pass(tmp_path):
    dm = synthetic(tmp_path)
    loader = ijepa_loader(dm)
    first, second = ijepa_train_loop(loader, 2, set_epoch=False, num_patches=64)
    order = EpochBatchSampler(NUM_TRAIN, BATCH, shuffle=True, drop_last=True)
    # The second pass is epoch 1: its order, its masks, its views.
    first_ids = torch.cat(first["labels"])
    assert not torch.equal(torch.cat(first["masks"]), torch.cat(second["masks"]))
    assert not torch.equal(torch.cat(first["pixels"]), torch.cat(second["pixels"]))
    with_set_epoch = ijepa_train_loop(ijepa_loader(synthetic(tmp_path)), 2, set_epoch=True, num_patches=64)
    for without, given in zip((first, second), with_set_epoch):
        assert torch.equal(torch.cat(without["masks"]), torch.cat(given["masks"]))
        assert torch.equal(torch.cat(without["pixels"]), torch.cat(given["pixels"]))
    assert len(first_ids) == len(order.epoch_order(0)) == NUM_TRAIN


def test_a_set_epoch_call_still_decides(tmp_path):
    dm = synthetic(tmp_path)
    dm.prepare_data()
    loader = dm.train_dataloader()
    ids = lambda: [i for batch in loader for i in batch["indices"].tolist()]  # noqa: E731
    epoch0 = ids()
    loader.sampler.set_epoch(0)  # a Trainer repeating an epoch, as told
    assert ids() == epoch0
    epoch1 = ids()  # no set_epoch: the next epoch
    assert sorted(epoch1) == sorted(epoch0) and epoch1 != epoch0
    assert [b["epoch"] for b in loader][:1] == [2]


def test_ijepa_loader_with_hierarchical_masks_takes_one_level(tmp_path):
    dm = synthetic(tmp_path, mask=HierarchicalMaskGenerator(min_keep=4), image_size=48, patch_size=4)
    with pytest.raises(ValueError, match="pass level=0..1"):
        next(iter(ijepa_loader(dm)))
    udata, masks_enc, masks_pred = next(iter(ijepa_loader(dm, level=1)))
    assert len(masks_pred) == 2 and masks_pred[0].shape[0] == len(udata[0]) == BATCH


def test_ijepa_loader_over_val_draws_masks_in_order(tmp_path):
    dm = synthetic(tmp_path)
    loader = ijepa_loader(dm, split="val")
    items = list(loader)
    assert len(items) == len(loader) == 2
    plain = [batch["labels"] for batch in dm.val_dataloader()]  # the same images, in the same order
    assert torch.equal(torch.cat([udata[1] for udata, _, _ in items]), torch.cat(plain))
    assert all(len(masks_enc) and len(masks_pred) for _, masks_enc, masks_pred in items)
    with pytest.raises(ValueError, match="argument split"):
        ijepa_loader(dm, split="unlabeled")


def hjepa_train_epoch(loader, masking_fn, device: str = "cpu") -> list[tuple]:
    """H-JEPA's _train_step data handling, per batch; returns what it computed."""
    seen = []
    for batch in loader:
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        images = images.to(device)
        masks = masking_fn(batch_size=images.size(0), device=device)
        context, targets = masks["level_0"]["context"], masks["level_0"]["targets"]
        prediction_mask = targets.any(dim=1)
        seen.append((images, batch[1], context, targets, prediction_mask, masks))
    return seen


@pytest.mark.parametrize("mask, levels", [(MultiBlockMaskGenerator(min_keep=4), 1),
                                          (HierarchicalMaskGenerator(min_keep=4), 2)], ids=["multiblock", "hierarchical"])
def test_hjepa_trainer_feed(tmp_path, mask, levels):
    dm = synthetic(tmp_path, mask=mask, image_size=48, patch_size=4)
    loader, masking_fn = hjepa_feed(dm)
    with pytest.raises(ValueError, match="none has been yielded yet"):
        masking_fn(batch_size=BATCH, device="cpu")
    assert len(loader) == NUM_TRAIN // BATCH
    seen = hjepa_train_epoch(loader, masking_fn)
    assert len(seen) == len(loader)
    n = dm.grid[0] * dm.grid[1]
    reference = dm.train_dataloader()
    reference.sampler.set_epoch(0)
    for (images, labels, context, targets, prediction, masks), batch in zip(seen, reference):
        batch = dm.on_after_batch_transfer(batch, 0)
        assert torch.equal(images, batch["images"]) and torch.equal(labels, batch["labels"])
        assert sorted(masks) == [f"level_{i}" for i in range(levels)]
        assert context.shape == (BATCH, n) and context.dtype == torch.bool
        level0 = batch["target_masks"][0] if levels > 1 else batch["target_masks"]
        assert targets.shape == (BATCH, len(level0), n)
        for block, indices in enumerate(level0):  # True exactly at our patch indices
            assert torch.equal(targets[:, block].nonzero()[:, 1].view(BATCH, -1), indices)
        assert torch.equal(context.sum(1), torch.full((BATCH,), batch["context_masks"][0].shape[1]))
        assert not (context & prediction).any()  # the context leaves out every target patch
        for level in masks.values():
            assert torch.equal(level["context"], context)
    # The picture step: four images' masks, the first rows of the last batch.
    small = masking_fn(batch_size=4, device="cpu")
    assert torch.equal(small["level_0"]["targets"], seen[-1][3][:4])
    with pytest.raises(ValueError, match="allowed is 1..8"):
        masking_fn(batch_size=BATCH + 1, device="cpu")


def test_hjepa_blocks_form_for_trainers_that_unpack_a_pair(tmp_path):
    dm = synthetic(tmp_path, mask=HierarchicalMaskGenerator(min_keep=4), image_size=48, patch_size=4)
    loader, masking_fn = hjepa_feed(dm, form="blocks")
    levels_loader, levels_fn = hjepa_feed(dm)
    for (images, _), _ in zip(loader, levels_loader):
        context_mask, target_masks = masking_fn(batch_size=images.size(0), device="cpu")
        levels = levels_fn(batch_size=images.size(0), device="cpu")
        assert torch.equal(context_mask, levels["level_0"]["context"])
        # Every level's blocks, stacked level after level: 6 fine + 2 coarse.
        assert torch.equal(target_masks, torch.cat([levels["level_0"]["targets"], levels["level_1"]["targets"]], 1))
    with pytest.raises(ValueError, match="argument form"):
        hjepa_feed(dm, form="dict")


def test_ijepa_loader_finishes_device_built_views_too(tmp_path):
    on_workers = next(iter(ijepa_loader(synthetic(tmp_path))))
    on_device = next(iter(ijepa_loader(synthetic(tmp_path, views_on="device"))))
    assert on_device[0][0].shape == on_workers[0][0].shape and on_device[0][0].dtype == torch.float32
    assert torch.equal(on_device[0][1], on_workers[0][1])
    assert all(torch.equal(a, b) for a, b in zip(on_device[1] + on_device[2], on_workers[1] + on_workers[2]))
    # The same crops: the pixels agree within uint8 rounding (normalized by std ~0.25: 2/255 -> ~0.03).
    assert (on_device[0][0] - on_workers[0][0]).abs().mean() < 0.05
