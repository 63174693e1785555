"""``pipeline/masks/hierarchical.py``: H-JEPA's hierarchical masks, one K within each level,
each level's block sizes in its ranges, the context excluding the targets of every level,
the default levels' coverage, reproducibility, and I-JEPA's gather-and-cat per level."""

from __future__ import annotations

import torch

from jepa_datamodules.bench.masks import mask_coverage
from jepa_datamodules.pipeline.masks import HierarchicalMaskGenerator
from tests.helpers.ijepa import ijepa_apply_masks
from tests.helpers.masks import block_shape, check_batch, gen, within_ranges


def test_hierarchical_k_is_equal_within_each_level():
    masks = HierarchicalMaskGenerator().with_grid((14, 14))
    g = gen(12)
    for _ in range(200):
        _, levels = masks(8, g)
        for blocks in levels:
            assert len({block_shape(t, 14) for t in blocks}) == 1


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


def test_ijepa_gather_and_cat_per_hierarchical_level():
    B, grid = 6, (14, 14)
    features = torch.randn(B, grid[0] * grid[1], 3)
    masks = HierarchicalMaskGenerator().with_grid(grid)
    g = torch.Generator().manual_seed(1)
    for _ in range(50):
        _, levels = masks(B, g)
        for blocks in levels:
            assert ijepa_apply_masks(features, blocks).shape[0] == len(blocks) * B
