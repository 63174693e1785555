"""``jepa_datamodules.adapters``: our batches in training code written for other conventions.
``to_device`` gives what a LightningModule receives (normalized float images, every tensor moved,
masks included, on a machine with CUDA), ``ijepa_batch`` / ``ijepa_loader`` give I-JEPA's form
and pass the level on, ``boolean_masks`` agree with the indices (the context is the union of the
context blocks), and each wrong call is one sentence saying what is allowed."""

from __future__ import annotations

import itertools
import re

import pytest
import torch

from jepa_datamodules import HierarchicalMaskGenerator, MultiBlockMaskGenerator, SyntheticDataModule
from jepa_datamodules.adapters import boolean_masks, ijepa_batch, ijepa_loader, indices_to_boolean, to_device
from tests.helpers.ijepa import ijepa_apply_masks


def small_synthetic(tmp_path, **kwargs) -> SyntheticDataModule:
    dm = SyntheticDataModule(data_dir=tmp_path, num_train=64, num_test=16, batch_size=8, num_workers=0,
                             progress=False, **kwargs)
    dm.prepare_data()
    return dm


def test_to_device_gives_what_a_lightning_module_receives(tmp_path):
    dm = small_synthetic(tmp_path)
    batch = next(iter(dm.train_dataloader()))
    assert batch["images"].dtype == torch.uint8
    finished = to_device(batch, dm, "cpu")
    assert finished["images"].dtype == torch.float32
    mean = torch.tensor(dm.spec.mean).view(1, 3, 1, 1)
    std = torch.tensor(dm.spec.std).view(1, 3, 1, 1)
    assert torch.allclose(finished["images"], (batch["images"].float() / 255 - mean) / std, atol=1e-5)


def test_ijepa_form_and_boolean_masks_agree_with_the_indices(tmp_path):
    dm = small_synthetic(tmp_path, mask=HierarchicalMaskGenerator(min_keep=4))
    batch = to_device(next(iter(dm.train_dataloader())), dm)
    n = dm.grid[0] * dm.grid[1]
    with pytest.raises(ValueError, match="pass level=0..1"):
        ijepa_batch(batch)
    images, masks_enc, masks_pred = ijepa_batch(batch, level=1)
    assert images.shape[0] == 8 and masks_pred == batch["target_masks"][1]
    ijepa_apply_masks(torch.randn(8, n, 4), masks_pred)  # one K within the level
    context, targets = boolean_masks(batch, n)
    assert context.shape == (8, n) and targets.shape == (8, 6 + 2, n)
    assert (context.sum(1) == masks_enc[0].shape[1]).all()
    flat = batch["target_masks"][0] + batch["target_masks"][1]
    for block, indices in enumerate(flat):
        assert torch.equal(targets[:, block].nonzero()[:, 1].view(8, -1), indices)
    assert not (context & targets.any(1)).any()  # the context excludes every target
    assert torch.equal(indices_to_boolean(masks_enc[0], n), context)


def _masked(hierarchical: bool) -> dict:
    generator = HierarchicalMaskGenerator(min_keep=4) if hierarchical else MultiBlockMaskGenerator(min_keep=4)
    contexts, targets = generator.with_grid((8, 8))(4, torch.Generator().manual_seed(0))
    return {"images": torch.zeros(4, 3, 32, 32, dtype=torch.uint8), "context_masks": contexts, "target_masks": targets}


def whole(sentence: str) -> str:
    """A pattern that matches ``sentence`` and nothing around it."""
    return f"^{re.escape(sentence)}$"


def test_each_wrong_call_says_what_is_allowed():
    unmasked = {"images": torch.zeros(2, 3, 8, 8, dtype=torch.uint8)}
    with pytest.raises(ValueError, match=whole(
            "The batch has no masks (mask=None or NoMaskGenerator); build the DataModule with a "
            "MultiBlockMaskGenerator or HierarchicalMaskGenerator for ijepa_batch.")):
        ijepa_batch(unmasked)
    with pytest.raises(ValueError, match=whole(
            "The batch has no masks (mask=None or NoMaskGenerator); nothing to convert.")):
        boolean_masks(unmasked, 64)
    with pytest.raises(ValueError, match=whole(
            "level=0 is only for hierarchical masks; leave it None for multi-block masks.")):
        ijepa_batch(_masked(hierarchical=False), level=0)
    hierarchical = _masked(hierarchical=True)
    levels = len(hierarchical["target_masks"])
    for level in (None, -1, levels, 1.0):
        with pytest.raises(ValueError, match=whole(
                f"level={level!r} is not allowed with hierarchical masks: pass level=0..{levels - 1} "
                "(one level's target blocks per call; levels differ in K).")):
            ijepa_batch(hierarchical, level=level)
    for level in range(levels):  # the first and the last level are allowed
        assert ijepa_batch(hierarchical, level=level)[2] == list(hierarchical["target_masks"][level])


def test_ijepa_loader_passes_the_level_on(tmp_path):
    dm = small_synthetic(tmp_path, mask=HierarchicalMaskGenerator(min_keep=4))
    reference = small_synthetic(tmp_path, mask=HierarchicalMaskGenerator(min_keep=4))  # the same stream, as dicts
    pairs = zip(itertools.islice(iter(ijepa_loader(dm, level=1)), 2), itertools.islice(iter(reference.train_dataloader()), 2))
    count = 0
    for ([images, labels], masks_enc, masks_pred), batch in pairs:
        assert images.dtype == torch.float32 and torch.equal(labels, batch["labels"])
        assert all(torch.equal(a, b) for a, b in zip(masks_pred, batch["target_masks"][1]))
        assert not all(torch.equal(a, b) for a, b in zip(masks_pred, batch["target_masks"][0]))
        assert all(torch.equal(a, b) for a, b in zip(masks_enc, batch["context_masks"]))
        count += 1
    assert count == 2


def test_boolean_masks_are_bool():
    context, targets = boolean_masks(_masked(hierarchical=False), 64)
    assert context.dtype == torch.bool and targets.dtype == torch.bool
    assert indices_to_boolean(torch.tensor([[0, 5]]), 8).tolist() == [[True, False, False, False, False, True, False,
                                                                         False]]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_to_device_moves_every_tensor_masks_included(tmp_path):
    dm = small_synthetic(tmp_path, mask=HierarchicalMaskGenerator(min_keep=4))
    moved = to_device(next(iter(dm.train_dataloader())), dm, "cuda")
    tensors = [moved["images"], *moved["context_masks"], *[t for level in moved["target_masks"] for t in level]]
    assert all(t.device.type == "cuda" for t in tensors) and moved["images"].dtype == torch.float32
    context, targets = boolean_masks(moved, dm.grid[0] * dm.grid[1])
    assert context.device.type == "cuda" and targets.device.type == "cuda"


def test_boolean_context_is_the_union_of_the_context_blocks():
    generator = MultiBlockMaskGenerator(grid=(8, 8), num_context=2, context_scale=(0.2, 0.3), min_keep=4)
    contexts, targets = generator(6, torch.Generator().manual_seed(0))
    context, blocks = boolean_masks({"context_masks": contexts, "target_masks": targets}, 64)
    assert context.shape == (6, 64) and blocks.shape == (6, len(targets), 64)
    for sample in range(6):
        covered = set(contexts[0][sample].tolist()) | set(contexts[1][sample].tolist())
        assert set(context[sample].nonzero().flatten().tolist()) == covered
    assert any(set(contexts[0][s].tolist()) != set(contexts[1][s].tolist()) for s in range(6))  # not one block twice
