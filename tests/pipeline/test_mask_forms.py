"""Masks in the forms other code reads: the boolean context is every patch any context block
covers (what the encoder sees), and a context cut to the batch's K drops a uniformly random
subset of a sample's extra patches, not the first (or last) ones in row-major order."""

from __future__ import annotations

import torch

from jepa_datamodules.adapters import boolean_masks
from jepa_datamodules.pipeline.masks import MultiBlockMaskGenerator


def test_boolean_context_is_the_union_of_the_context_blocks():
    generator = MultiBlockMaskGenerator(grid=(8, 8), num_context=2, context_scale=(0.2, 0.3), min_keep=4)
    contexts, targets = generator(6, torch.Generator().manual_seed(0))
    context, blocks = boolean_masks({"context_masks": contexts, "target_masks": targets}, 64)
    assert context.shape == (6, 64) and blocks.shape == (6, len(targets), 64)
    for sample in range(6):
        covered = set(contexts[0][sample].tolist()) | set(contexts[1][sample].tolist())
        assert set(context[sample].nonzero().flatten().tolist()) == covered
    assert any(set(contexts[0][s].tolist()) != set(contexts[1][s].tolist()) for s in range(6))  # not one block twice


def test_a_context_is_cut_to_k_without_favouring_the_top_or_the_bottom():
    # Placement is symmetric top to bottom, so the context patches a uniform cut keeps sit, on
    # average, on the middle row (6.5 of 0..13). Keeping the first patches in row-major order
    # (the reference) gives about 4.3, dropping them about 8.6.
    generator, draws = MultiBlockMaskGenerator(grid=(14, 14)), torch.Generator().manual_seed(0)
    rows, cols = [], []
    for _ in range(40):
        (context,), _ = generator(32, draws)
        assert torch.equal(context, context.sort(dim=1).values)
        assert all(len(set(sample.tolist())) == context.shape[1] for sample in context)  # no patch twice
        rows.append((context // 14).double().mean())
        cols.append((context % 14).double().mean())
    assert abs(float(torch.stack(rows).mean()) - 6.5) < 0.5
    assert abs(float(torch.stack(cols).mean()) - 6.5) < 0.5
