"""Mask generators: valid, one block size per batch, reproducible, near-flat coverage, clear
errors, and the Hydra mask configs (the checks themselves: tests/helpers/masks.py).

Coverage bound (I-JEPA defaults, 12,800 samples): the fraction of samples in which a patch
is a target has max/min <= 2.0 and coefficient of variation <= 0.18 over the grid
(measured ~1.75 and ~0.14; uniform block placement gives ~18.8 and ~0.52).
"""

from __future__ import annotations

import math
import pickle
import random

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jepa_datamodules.bench.masks import mask_coverage
from jepa_datamodules.pipeline.masks import HierarchicalMaskGenerator, MultiBlockMaskGenerator, NoMaskGenerator
from tests.helpers import REPO
from tests.helpers.masks import as_sets, block_shape, check_batch, gen, within_ranges

CONF = REPO / "conf" / "mask"


# ----------------------------------------------------------------------------- multi-block


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


def test_hierarchical_k_is_equal_within_each_level():
    masks = HierarchicalMaskGenerator().with_grid((14, 14))
    g = gen(12)
    for _ in range(200):
        _, levels = masks(8, g)
        for blocks in levels:
            assert len({block_shape(t, 14) for t in blocks}) == 1


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


def test_target_coverage_is_near_flat_and_reaches_the_last_row_and_column():
    ours, _ = mask_coverage(MultiBlockMaskGenerator().with_grid((14, 14)), batches=100, batch_size=128, seed=0)
    uniform, _ = mask_coverage(MultiBlockMaskGenerator(placement_floor=1.0).with_grid((14, 14)),
                               batches=100, batch_size=128, seed=0)
    assert ours[-1, :].min() > 0.3 and ours[:, -1].min() > 0.3 and ours[-1, -1] > 0.3
    assert ours.max() / ours.min() <= 2.0
    assert ours.std() / ours.mean() <= 0.18
    # The naive placement this replaces has strongly under-covered edges.
    assert uniform.max() / uniform.min() > 8.0 and uniform.std() / uniform.mean() > 0.4


def test_coverage_on_a_non_square_grid():
    ours, _ = mask_coverage(MultiBlockMaskGenerator().with_grid((10, 16)), batches=100, batch_size=128, seed=1)
    assert ours.max() / ours.min() <= 2.0 and ours.std() / ours.mean() <= 0.18


def test_context_frequency_matches_its_geometry():
    # allow_overlap=True leaves contexts uncut, so each patch's context frequency must equal
    # the chance a uniformly placed context block covers it. Sizes: s uniform in
    # (0.85, 1), side round(sqrt(196 s)) -> 13 or 14.
    n, side = 196, 14
    s = 0.85 + (np.arange(100_000) + 0.5) / 100_000 * 0.15
    sides = np.floor(np.sqrt(s * n) + 0.5).astype(int)
    # The block's rows and columns come from one size draw, so average the 2-D product per size.
    expected = np.zeros((side, side))
    for k in np.unique(sides):
        starts = side - k + 1
        cov = np.array([sum(r <= i < r + k for r in range(starts)) / starts for i in range(side)])
        expected += np.mean(sides == k) * np.outer(cov, cov)
    batches, batch = 150, 128
    _, context = mask_coverage(MultiBlockMaskGenerator(allow_overlap=True).with_grid((14, 14)),
                               batches=batches, batch_size=batch, seed=2)
    # Sizes are drawn once per batch, so the noise is that of 150 size draws (binomial),
    # plus placement noise; 4 standard errors of the size share bound the difference.
    p13 = float(np.mean(sides == 13))
    tolerance = 4 * math.sqrt(p13 * (1 - p13) / batches) + 0.02
    assert np.abs(context.numpy() - expected).max() < tolerance
    assert context[-1, -1] > 0.3  # the last row and column are reachable


# ----------------------------------------------------------------------------- hierarchical


def test_hierarchical_levels_sizes_and_exclusion():
    levels = [{"name": "fine", "scale": (0.02, 0.05), "aspect": (0.75, 1.5), "count": 5},
              {"name": "mid", "scale": (0.08, 0.12), "count": 2},
              {"name": "coarse", "scale": (0.2, 0.3), "aspect": (0.75, 1.5), "count": 1}]
    for grid in [(14, 14), (12, 12), (10, 16)]:
        masks = HierarchicalMaskGenerator(levels=levels).with_grid(grid)
        assert masks.level_names == ["fine", "mid", "coarse"]
        context, targets = masks(16, gen(8))
        assert len(context) == 1 and [len(t) for t in targets] == [5, 2, 1]
        n = grid[0] * grid[1]
        for level, blocks in zip(masks.levels, targets):
            flat_sizes = check_batch(context, blocks, 16, grid)
            for h, w in flat_sizes:
                assert within_ranges(h, w, n, level["scale"], level["aspect"]), (level["name"], h, w)
        every = [t for blocks in targets for t in blocks]
        check_batch(context, every, 16, grid)  # context excludes the targets of all levels


def test_hierarchical_defaults_and_coverage():
    masks = HierarchicalMaskGenerator().with_grid((8, 8))
    assert masks.level_names == ["fine", "coarse"]
    context, targets = masks(32, gen(9))
    assert [len(t) for t in targets] == [6, 2]
    coverage, _ = mask_coverage(HierarchicalMaskGenerator().with_grid((14, 14)), batches=60, batch_size=128)
    assert coverage.max() / coverage.min() <= 1.8 and coverage[-1, -1] > 0.3


def test_hierarchical_is_reproducible():
    masks = HierarchicalMaskGenerator().with_grid((12, 12))
    a, b = masks(8, gen(10)), masks(8, gen(10))
    assert torch.equal(a[0][0], b[0][0])
    assert all(torch.equal(x, y) for la, lb in zip(a[1], b[1]) for x, y in zip(la, lb))


def test_no_mask_generator():
    masks = NoMaskGenerator().with_grid((14, 14))
    assert masks.grid == (14, 14)
    assert masks(4, gen(0)) is None


# ----------------------------------------------------------------------------- bad arguments


MB, HM = MultiBlockMaskGenerator, HierarchicalMaskGenerator


@pytest.mark.parametrize("make, message", [
    (lambda: MB(target_scale=(0.0, 0.2)), r"target_scale=\(0\.0, 0\.2\) .*both ends must lie in \(0, 1\]"),
    (lambda: MB(target_scale=(0.1, 1.5)), r"target_scale=\(0\.1, 1\.5\) is not allowed"),
    (lambda: MB(context_scale=(0.9, 0.8)), r"context_scale=\(0\.9, 0\.8\) is not allowed: min 0\.9 is greater"),
    (lambda: MB(target_aspect=(2.0, 1.0)), r"target_aspect=\(2\.0, 1\.0\) is not allowed: min 2 is greater than max 1"),
    (lambda: MB(target_aspect=(0.0, 1.0)), r"target_aspect=.* both ends must lie in \(0, inf\)"),
    (lambda: MB(target_scale=0.2), r"target_scale=0\.2 is not allowed: it must be a pair"),
    (lambda: MB(num_targets=0), r"num_targets=0 is not allowed: it must be an integer >= 1"),
    (lambda: MB(min_keep=0), r"min_keep=0 is not allowed"),
    (lambda: MB(placement_floor=1.5), r"placement_floor=1\.5 is not allowed"),
    (lambda: MB(grid=(0, 14)), r"grid=\(0, 14\) is not allowed: it must be two integers"),
    (lambda: MB().with_grid((3, 3)), r"grid=\(3, 3\) is too small for min_keep=10"),
    (lambda: MB(target_scale=(0.4, 0.5), target_aspect=(3.0, 4.0)).with_grid((14, 14)),
     r"grid=\(14, 14\) is smaller than a target block: .* up to 20 x 6 patches"),
    (lambda: MB(target_scale=(0.9, 1.0), target_aspect=(1.0, 1.0), min_keep=30).with_grid((14, 14)),
     r"grid=\(14, 14\) is too small: a context block of at most 196 patches minus a target block of at least 169"),
    (lambda: MB()(8, gen(0)), r"grid=None: call with_grid"),
    (lambda: MB().with_grid((14, 14))(0, gen(0)), r"batch_size=0 is not allowed"),
    (lambda: MB().with_grid((14, 14))(8, None), r"generator=None is not allowed"),
    (lambda: HM(levels=[]), r"levels=\[\] is not allowed"),
    (lambda: HM(levels=[{"name": "a", "scale": (0.1, 0.2), "count": 0}]), r"count=0 is not allowed"),
    (lambda: HM(levels=[{"name": "a", "scale": (0.1, 0.2), "count": 1}] * 2),
     r"name='a' is not allowed: names must be distinct"),
    (lambda: HM(levels=[{"name": "a", "scale": (0.1, 0.2)}]),
     r"levels\[0\] has keys \['name', 'scale'\], which is not allowed"),
    (lambda: NoMaskGenerator().with_grid((14,)), r"grid=\(14,\) is not allowed"),
])
def test_bad_arguments_say_what_is_allowed(make, message):
    with pytest.raises(ValueError, match=message):
        make()


# ----------------------------------------------------------------------------- Hydra configs


def test_hydra_configs_instantiate_the_documented_recipes():
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    multi = instantiate(OmegaConf.load(CONF / "multiblock.yaml"))
    assert isinstance(multi, MultiBlockMaskGenerator) and multi.grid is None
    assert multi.context.scale == (0.85, 1.0) and multi.context.aspect == (1.0, 1.0) and multi.num_context == 1
    assert multi.target.scale == (0.15, 0.2) and multi.target.aspect == (0.75, 1.5) and multi.num_targets == 4
    assert multi.allow_overlap is False and multi.min_keep == 10
    hier = instantiate(OmegaConf.load(CONF / "hierarchical.yaml"))
    assert isinstance(hier, HierarchicalMaskGenerator) and hier.level_names == ["fine", "coarse"]
    context, targets = hier.with_grid((14, 14))(4, gen(0))
    assert [len(t) for t in targets] == [6, 2]
    none = instantiate(OmegaConf.load(CONF / "none.yaml"))
    assert none.with_grid((8, 8))(4, gen(0)) is None
