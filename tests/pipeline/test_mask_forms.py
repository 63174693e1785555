"""Masks in the forms other code reads: the boolean context is every patch any context block
covers (what the encoder sees), and a context cut to the batch's K drops a uniformly random
subset of a sample's extra patches, not the first (or last) ones in row-major order."""

from __future__ import annotations

import torch

from jepa_datamodules.adapters import boolean_masks
from jepa_datamodules.pipeline.masks import MultiBlockMaskGenerator, _truncate


def test_boolean_context_is_the_union_of_the_context_blocks():
    generator = MultiBlockMaskGenerator(grid=(8, 8), num_context=2, context_scale=(0.2, 0.3), min_keep=4)
    contexts, targets = generator(6, torch.Generator().manual_seed(0))
    context, blocks = boolean_masks({"context_masks": contexts, "target_masks": targets}, 64)
    assert context.shape == (6, 64) and blocks.shape == (6, len(targets), 64)
    for sample in range(6):
        covered = set(contexts[0][sample].tolist()) | set(contexts[1][sample].tolist())
        assert set(context[sample].nonzero().flatten().tolist()) == covered
    assert any(set(contexts[0][s].tolist()) != set(contexts[1][s].tolist()) for s in range(6))  # not one block twice


def test_a_context_is_cut_to_k_by_dropping_a_uniform_random_subset():
    rows, n, keep = 4000, 16, 5
    mask = torch.zeros(rows + 1, n, dtype=torch.bool)
    mask[:rows, 2:12] = True  # ten patches, five to drop
    mask[rows, 3:8] = True  # the batch's smallest context: exactly K
    kept = _truncate(mask, keep, torch.Generator().manual_seed(0))
    assert kept.shape == (rows + 1, keep)
    assert torch.equal(kept[rows], torch.arange(3, 8))
    assert torch.equal(kept, kept.sort(dim=1).values) and bool(mask.gather(1, kept).all())
    share = torch.bincount(kept[:rows].flatten(), minlength=n).double() / rows
    assert torch.allclose(share[2:12], torch.full((10,), 0.5, dtype=torch.float64), atol=0.05), share
