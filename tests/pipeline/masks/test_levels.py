"""``pipeline/masks/levels.py``: ``target_levels``, the one reading of flat or hierarchical
``target_masks``, and its one sentence for what is not a list of masks."""

from __future__ import annotations

import pytest
import torch

from jepa_datamodules.pipeline.masks import HierarchicalMaskGenerator, MultiBlockMaskGenerator, target_levels
from tests.helpers.masks import block_shape, gen


def test_target_levels_reads_flat_masks_as_one_level_and_hierarchical_masks_per_level():
    flat = MultiBlockMaskGenerator(num_targets=3).with_grid((10, 10))(2, gen(1))[1]
    levels = target_levels(flat)
    assert levels == [flat] and not levels.hierarchical and levels.blocks() == flat
    nested = HierarchicalMaskGenerator(min_keep=4).with_grid((10, 10))(2, gen(1))[1]
    levels = target_levels(nested)
    assert levels.hierarchical and [len(level) for level in levels] == [6, 2]
    assert [block_shape(b, 10) for b in levels.blocks()] == [block_shape(b, 10) for level in nested for b in level]
    one_level = target_levels((tuple(flat),))  # a hierarchical generator with a single level
    assert one_level.hierarchical and one_level == [flat]
    assert target_levels(None) == [] and target_levels([]) == []


@pytest.mark.parametrize("bad", [torch.zeros(2, 3, dtype=torch.long), "targets", 3, [[torch.zeros(1, 1)], 7]])
def test_target_levels_refuses_what_is_not_a_list_of_masks(bad):
    with pytest.raises(ValueError, match=r"target_masks must be a list of LongTensors \[B, K\] or a list of such "
                                         r"lists \(hierarchical\), not \w+\."):
        target_levels(bad)
