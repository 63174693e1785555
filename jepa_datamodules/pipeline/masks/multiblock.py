"""I-JEPA's multi-block masks: ``num_targets`` target blocks and ``num_context`` context blocks."""

from __future__ import annotations

from typing import Any

import torch

from .blocks import BlockMasker
from .placement import DEFAULT_PLACEMENT_FLOOR, BlockShape, TargetGroup
from .validation import check_call, check_int

__all__ = ["MultiBlockMaskGenerator"]


class MultiBlockMaskGenerator(BlockMasker):
    """I-JEPA multi-block masks: ``num_targets`` target blocks and ``num_context`` context blocks.

    Args:
        grid: patch grid (rows, cols), e.g. (14, 14) for 224 px images and 16 px patches; None
            until ``with_grid`` [None].
        context_scale: range of the context block's area as a fraction of the grid, in (0, 1]
            [(0.85, 1.0), I-JEPA].
        context_aspect: range of the context block's rows / cols [(1.0, 1.0), I-JEPA].
        num_context: context blocks per sample, each drawn independently [1].
        target_scale: range of each target block's area as a fraction of the grid
            [(0.15, 0.2), I-JEPA].
        target_aspect: range of each target block's rows / cols, drawn log-uniformly
            [(0.75, 1.5), I-JEPA].
        num_targets: target blocks per sample [4, I-JEPA].
        allow_overlap: let context patches also be targets; when False every target patch is
            removed from every context block [False, I-JEPA].
        min_keep: fewest context patches a sample may have; samples below it are redrawn
            [10, I-JEPA]. It bounds contexts only: targets are whole blocks sized by target_scale.
        placement_floor: share, in [0, 1], of uniform placement probability every target
            position keeps; the rest flattens coverage (see ``placement.py``); 1.0 is plain
            uniform placement [0.2].

    Calling it returns ``(context_masks, target_masks)``: ``num_context`` LongTensors ``[B, K_c]``
    and ``num_targets`` LongTensors ``[B, h * w]`` of patch indices (row-major, ascending in each
    row). Every target block of a batch has the same size ``h x w`` (drawn once per batch), and
    ``K_c`` is the smallest context of any block in the batch (at least ``min_keep``), so
    I-JEPA's gather-and-concatenate (``apply_masks``) takes the lists as they are.
    """

    def __init__(self, grid: tuple[int, int] | None = None, *,
                 context_scale: tuple[float, float] = (0.85, 1.0), context_aspect: tuple[float, float] = (1.0, 1.0),
                 num_context: int = 1,
                 target_scale: tuple[float, float] = (0.15, 0.2), target_aspect: tuple[float, float] = (0.75, 1.5),
                 num_targets: int = 4, allow_overlap: bool = False, min_keep: int = 10,
                 placement_floor: float = DEFAULT_PLACEMENT_FLOOR) -> None:
        self.target = BlockShape.checked("target", target_scale, target_aspect)
        self.num_targets = check_int("num_targets", num_targets, 1)
        super().__init__(grid, context_scale=context_scale, context_aspect=context_aspect, num_context=num_context,
                         allow_overlap=allow_overlap, min_keep=min_keep, placement_floor=placement_floor)

    def target_groups(self) -> list[TargetGroup]:
        """One group: ``num_targets`` blocks of the target shape."""
        return [TargetGroup("targets", "target", self.target, self.num_targets)]

    def config(self) -> dict[str, Any]:
        """The constructor keywords but ``grid``."""
        return dict(context_scale=self.context.scale, context_aspect=self.context.aspect,
                    num_context=self.num_context, target_scale=self.target.scale,
                    target_aspect=self.target.aspect, num_targets=self.num_targets,
                    allow_overlap=self.allow_overlap, min_keep=self.min_keep,
                    placement_floor=self.placement_floor)

    def __call__(self, batch_size: int, generator: torch.Generator) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Masks for ``batch_size`` samples drawn only from ``generator`` (a CPU torch.Generator).

        1. Check the arguments (``batch_size`` >= 1, a CPU generator).
        2. Draw the blocks (``BlockMasker.sample``): one target size and one context size for
           the batch, target positions from the flattened placement tables, contexts uniformly
           and without the targets, redraws below ``min_keep``, every context cut to one K.
        3. Return the contexts and the one target group as a flat list of blocks.
        """
        # -- 1. arguments
        batch_size = check_call(batch_size, generator)
        # -- 2. blocks
        context, grouped = self.sample(batch_size, generator)
        # -- 3. flat target list
        return context, grouped[0]
