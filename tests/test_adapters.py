"""The adapters' contracts beyond the happy path: each wrong call is one sentence saying what
is allowed, ``ijepa_loader`` passes the level on, boolean masks are bool, and ``to_device``
moves every tensor, masks included (on a machine with CUDA)."""

from __future__ import annotations

import itertools
import re

import pytest
import torch

from jepa_datamodules import HierarchicalMaskGenerator, MultiBlockMaskGenerator
from jepa_datamodules.adapters import boolean_masks, ijepa_batch, ijepa_loader, indices_to_boolean, to_device
from tests.pipeline.test_consumers import small_synthetic


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
