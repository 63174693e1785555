"""``pipeline/masks/multiblock.py``: I-JEPA's multi-block masks are valid on every supported
grid, have one block size per batch (one K per tensor, so I-JEPA's gather-and-cat takes them),
follow the aspect, honour ``min_keep`` and ``allow_overlap``, and are reproducible from the
given generator alone (the checks themselves: tests/helpers/masks.py)."""

from __future__ import annotations

import pickle
import random

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from jepa_datamodules.pipeline.masks import MultiBlockMaskGenerator
from tests.helpers.ijepa import ijepa_apply_masks, ijepa_repeat_interleave_batch
from tests.helpers.masks import as_sets, block_shape, check_batch, gen, within_ranges


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.integers(10, 16), cols=st.integers(10, 16), batch=st.integers(1, 12),
       lo=st.floats(0.05, 0.2), width=st.floats(0.0, 0.05), a_lo=st.floats(0.5, 1.0), a_span=st.floats(1.0, 1.6),
       num_targets=st.integers(1, 4), allow_overlap=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_multiblock_batches_are_valid(rows, cols, batch, lo, width, a_lo, a_span, num_targets, allow_overlap, seed):
    scale, aspect = (lo, lo + width), (a_lo, a_lo * a_span)
    masks = MultiBlockMaskGenerator(target_scale=scale, target_aspect=aspect, num_targets=num_targets,
                                    allow_overlap=allow_overlap).with_grid((rows, cols))
    context, targets = masks(batch, gen(seed))
    assert len(context) == 1 and len(targets) == num_targets
    for h, w in check_batch(context, targets, batch, (rows, cols), allow_overlap=allow_overlap):
        assert within_ranges(h, w, rows * cols, scale, aspect), (h, w)


@pytest.mark.parametrize("grid", [(14, 14), (12, 12), (8, 8), (10, 16), (16, 9)])
def test_supported_grids_defaults(grid):
    masks = MultiBlockMaskGenerator().with_grid(grid)
    g = gen(1)
    for _ in range(20):
        context, targets = masks(32, g)
        for h, w in check_batch(context, targets, 32, grid):
            assert within_ranges(h, w, grid[0] * grid[1], (0.15, 0.2), (0.75, 1.5)), (grid, h, w)


def test_one_block_size_per_batch_so_every_target_and_context_tensor_has_one_k():
    # I-JEPA (and lightly) gather each mask and torch.cat the results along the batch: that
    # needs one K across the target tensors and one across the context tensors of a batch.
    # With a size drawn per block, 293 of 300 such batches at 14x14 had differing K.
    masks = MultiBlockMaskGenerator(num_context=2, context_scale=(0.6, 0.9)).with_grid((14, 14))
    g = gen(11)
    target_sizes = set()
    for _ in range(300):
        context, targets = masks(8, g)
        assert len({t.shape[1] for t in targets}) == 1
        assert len({block_shape(t, 14) for t in targets}) == 1  # one (h, w) for all four blocks
        assert len({c.shape[1] for c in context}) == 1
        target_sizes.add(block_shape(targets[0], 14))
    assert len(target_sizes) > 3  # the size still varies from batch to batch


def test_tall_and_wide_blocks_follow_aspect_rows_over_cols():
    n = 14 * 14
    for aspect in [(2.0, 3.0), (1 / 3, 1 / 2)]:
        masks = MultiBlockMaskGenerator(target_scale=(0.15, 0.2), target_aspect=aspect).with_grid((14, 14))
        g = gen(2)
        for _ in range(15):
            _, targets = masks(4, g)
            for t in targets:
                h, w = block_shape(t, 14)
                assert within_ranges(h, w, n, (0.15, 0.2), aspect)
                assert (h > w) == (aspect[0] > 1)


def test_several_context_blocks_each_exclude_targets():
    masks = MultiBlockMaskGenerator(num_context=2, context_scale=(0.6, 0.8)).with_grid((14, 14))
    context, targets = masks(16, gen(3))
    assert len(context) == 2
    check_batch(context, targets, 16, (14, 14))


def test_min_keep_is_honoured_where_it_binds():
    # 8x8 with four targets leaves ~20 context patches on average: min_keep=20 binds often.
    loose = MultiBlockMaskGenerator(min_keep=1).with_grid((8, 8))
    tight = MultiBlockMaskGenerator(min_keep=20).with_grid((8, 8))
    g_loose, g_tight = gen(4), gen(4)
    loose_k = [loose(64, g_loose)[0][0].shape[1] for _ in range(10)]
    assert min(loose_k) < 20  # without the constraint contexts do get that small
    for _ in range(10):
        context, targets = tight(64, g_tight)
        assert context[0].shape[1] >= 20
        check_batch(context, targets, 64, (8, 8), min_keep=20)


def test_allow_overlap_keeps_the_whole_context_block():
    masks = MultiBlockMaskGenerator(allow_overlap=True).with_grid((14, 14))
    context, targets = masks(16, gen(5))
    # Context 85-100 % of 196 patches with aspect 1: a 13x13 or 14x14 block, uncut.
    assert context[0].shape[1] in (169, 196)
    block_shape(context[0], 14)
    overlap = [len(c & t) for c, t in zip(as_sets(context[0]), as_sets(targets[0]))]
    assert max(overlap) > 0


def test_reproducible_and_seed_dependent():
    masks = MultiBlockMaskGenerator().with_grid((14, 14))
    a = masks(16, gen(123))
    b = masks(16, gen(123))
    c = masks(16, gen(124))
    flat = lambda m: m[0] + m[1]  # noqa: E731
    assert all(torch.equal(x, y) for x, y in zip(flat(a), flat(b)))
    assert any(x.shape != y.shape or not torch.equal(x, y) for x, y in zip(flat(a), flat(c)))


def test_only_the_given_generator_is_used_and_pickling_keeps_behaviour():
    masks = MultiBlockMaskGenerator().with_grid((12, 12))
    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    states = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    first = masks(8, gen(7))
    assert torch.equal(torch.get_rng_state(), states[0])
    assert np.array_equal(np.random.get_state()[1], states[1]) and random.getstate() == states[2]
    torch.manual_seed(99), np.random.seed(99), random.seed(99)  # other global state, same masks
    clone = pickle.loads(pickle.dumps(masks))
    for again in (masks(8, gen(7)), clone(8, gen(7))):
        assert all(torch.equal(x, y) for x, y in zip(first[0] + first[1], again[0] + again[1]))


def test_ijepa_gather_and_cat_takes_our_masks_batch_after_batch():
    B, grid, D = 8, (14, 14), 5
    N = grid[0] * grid[1]
    features = torch.randn(B, N, D)
    masks = MultiBlockMaskGenerator(num_context=2, context_scale=(0.6, 0.9)).with_grid(grid)
    g = torch.Generator().manual_seed(0)
    for _ in range(100):
        masks_enc, masks_pred = masks(B, g)
        h = ijepa_apply_masks(features, masks_pred)  # fails with "Sizes of tensors must match" on unequal K
        z = ijepa_apply_masks(features, masks_enc)
        assert h.shape == (len(masks_pred) * B, masks_pred[0].shape[1], D)
        assert z.shape == (len(masks_enc) * B, masks_enc[0].shape[1], D)
        # Row i * B + b holds sample b's tokens of block i.
        assert torch.equal(h[2 * B + 3], features[3, masks_pred[2][3]])
        h = ijepa_repeat_interleave_batch(h, B, repeat=len(masks_enc))
        assert h.shape[0] == len(masks_pred) * len(masks_enc) * B
        # Target block t, context c, sample b at row (t * C + c) * B + b.
        assert torch.equal(h[(1 * 2 + 1) * B + 5], features[5, masks_pred[1][5]])
