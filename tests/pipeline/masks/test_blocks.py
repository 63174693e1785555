"""A new mask type written on the public ``BlockMasker`` base as its docstring says, and
``target_levels``, the one reading of flat or hierarchical ``target_masks``."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
import torch
from jsonargparse import lazy_instance

from jepa_datamodules.pipeline.masks import (BlockMasker, BlockShape, HierarchicalMaskGenerator,
                                             MultiBlockMaskGenerator, TargetGroup, target_levels)
from jepa_datamodules.pipeline.masks.validation import check_call, check_int
from tests.helpers.masks import block_shape, check_batch, gen


class BigAndSmall(BlockMasker):
    """A user's mask type: one large target block and ``num_small`` small ones per sample."""

    def __init__(self, grid: tuple[int, int] | None = None, *, num_small: int = 3, **context: Any) -> None:
        self.num_small = check_int("num_small", num_small, 1)
        super().__init__(grid, **context)

    def target_groups(self) -> list[TargetGroup]:
        return [TargetGroup("big", "big block", BlockShape((0.2, 0.25), (1.0, 1.0)), 1),
                TargetGroup("small", "small block", BlockShape((0.02, 0.03), (1.0, 1.0)), self.num_small)]

    def config(self) -> dict[str, Any]:
        return dict(num_small=self.num_small, context_scale=self.context.scale, min_keep=self.min_keep)

    def __call__(self, batch_size: int, generator: torch.Generator) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        context, (big, small) = self.sample(check_call(batch_size, generator), generator)
        return context, big + small


def test_a_mask_type_written_on_block_masker_gets_valid_batches_a_grid_and_a_repr():
    masker = BigAndSmall(num_small=2, min_keep=4).with_grid((12, 12))
    assert type(masker) is BigAndSmall and masker.grid == (12, 12)
    assert repr(masker) == "BigAndSmall(grid=(12, 12), num_small=2, context_scale=(0.85, 1.0), min_keep=4)"
    context, targets = pickle.loads(pickle.dumps(masker))(6, gen(0))  # as in a loader worker
    sizes = check_batch(context, targets, 6, (12, 12), min_keep=4)
    assert len(targets) == 3 and sizes[0][0] * sizes[0][1] > max(h * w for h, w in sizes[1:])
    # Equal generator state, equal masks.
    again = masker(6, gen(0))
    assert all(torch.equal(a, b) for a, b in zip(context + targets, again[0] + again[1]))


def test_a_block_masker_checks_its_settings_and_its_grid():
    with pytest.raises(ValueError, match=r"num_small=0 is not allowed: it must be an integer >= 1\.") as error:
        BigAndSmall(num_small=0)
    assert error.value.setting == "num_small" and error.value.allowed == "an integer >= 1"
    with pytest.raises(ValueError, match=r"grid=\(1, 12\) is smaller than a target block: big block"):
        BigAndSmall(min_keep=1).with_grid((1, 12))
    with pytest.raises(ValueError, match=r"BigAndSmall has grid=None: call with_grid"):
        BigAndSmall()(2, gen(0))


def test_the_lazy_default_mask_copies_to_the_generator_class_itself():
    # The DataModule's default mask is jsonargparse's lazy_instance (a LazyInstance_ subclass).
    lazy = lazy_instance(MultiBlockMaskGenerator, num_targets=2)
    copy = lazy.with_grid((8, 8))
    assert type(copy) is MultiBlockMaskGenerator and copy.num_targets == 2
    assert repr(lazy).startswith("MultiBlockMaskGenerator(grid=None, ")


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
