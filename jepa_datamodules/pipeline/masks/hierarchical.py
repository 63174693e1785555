"""H-JEPA's hierarchical masks: per level, ``count`` target blocks of that level's size."""

from __future__ import annotations

from typing import Any

import torch

from .blocks import BlockMasker
from .placement import DEFAULT_PLACEMENT_FLOOR, BlockShape, TargetGroup
from .validation import check_call, check_levels

__all__ = ["DEFAULT_HIERARCHICAL_LEVELS", "HierarchicalMaskGenerator"]

# Hierarchical defaults (H-JEPA style: one predictor level per target scale).
DEFAULT_HIERARCHICAL_LEVELS: tuple[dict[str, Any], ...] = (
    # Many small blocks (2-5 % of the image each): predicting them needs local detail such
    # as parts and texture, which is what a fine level of the hierarchy should encode.
    {"name": "fine", "scale": (0.02, 0.05), "aspect": (0.75, 1.5), "count": 6},
    # Few large blocks (20-30 % each): too big to fill in from nearby pixels, so they push
    # the coarse level towards object- and layout-level semantics (I-JEPA's argument for
    # large target blocks, taken one step further).
    {"name": "coarse", "scale": (0.2, 0.3), "aspect": (0.75, 1.5), "count": 2},
)


class HierarchicalMaskGenerator(BlockMasker):
    """Multi-level block masks for H-JEPA: per level, ``count`` target blocks of that level's size.

    Args:
        grid: patch grid (rows, cols); None until ``with_grid`` [None].
        levels: list of ``{"name": str, "scale": (lo, hi), "aspect": (lo, hi), "count": int}``;
            ``aspect`` may be left out [(0.75, 1.5)]. Default ``DEFAULT_HIERARCHICAL_LEVELS``:
            ``fine``: 6 blocks of 2-5 % of the grid each, ``coarse``: 2 blocks of 20-30 % each.
            Many small targets make the fine level predict local structure (parts, texture) that
            nearby context nearly determines; few large ones cannot be filled in locally and push
            the coarse level to object/layout semantics. Together they cover about half of the
            grid in expectation, similar to I-JEPA's four 15-20 % blocks, so the shared context
            keeps roughly as many patches as in I-JEPA.
        context_scale: range of the context block's area as a fraction of the grid [(0.85, 1.0)].
        context_aspect: range of the context block's rows / cols [(1.0, 1.0)].
        allow_overlap: let context patches also be targets; when False the context excludes
            the targets of every level [False].
        min_keep: fewest context patches a sample may have; samples below it are redrawn [10].
        placement_floor: as in ``MultiBlockMaskGenerator``; each level's placement is flattened
            for that level's block sizes [0.2].

    Calling it returns ``(context_masks, target_masks)``: one context LongTensor ``[B, K_c]`` in a
    list, and ``target_masks[level][block]`` LongTensors ``[B, h * w]`` in the order of ``levels``;
    all blocks of one level in a batch share one size ``h x w``.
    """

    def __init__(self, grid: tuple[int, int] | None = None, *, levels: list[dict] | None = None,
                 context_scale: tuple[float, float] = (0.85, 1.0), context_aspect: tuple[float, float] = (1.0, 1.0),
                 allow_overlap: bool = False, min_keep: int = 10,
                 placement_floor: float = DEFAULT_PLACEMENT_FLOOR) -> None:
        self.levels = check_levels(DEFAULT_HIERARCHICAL_LEVELS if levels is None else levels)
        super().__init__(grid, context_scale=context_scale, context_aspect=context_aspect, num_context=1,
                         allow_overlap=allow_overlap, min_keep=min_keep, placement_floor=placement_floor)

    @property
    def level_names(self) -> list[str]:
        """Names of the levels, in the order of ``target_masks``."""
        return [level["name"] for level in self.levels]

    def target_groups(self) -> list[TargetGroup]:
        """One group per level, in the order of ``levels``."""
        return [TargetGroup(lv["name"], f"level {lv['name']!r}", BlockShape(lv["scale"], lv["aspect"]), lv["count"])
                for lv in self.levels]

    def config(self) -> dict[str, Any]:
        """The constructor keywords but ``grid``."""
        return dict(levels=[dict(lv) for lv in self.levels], context_scale=self.context.scale,
                    context_aspect=self.context.aspect, allow_overlap=self.allow_overlap,
                    min_keep=self.min_keep, placement_floor=self.placement_floor)

    def __call__(self, batch_size: int,
                 generator: torch.Generator) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        """Masks for ``batch_size`` samples drawn only from ``generator`` (a CPU torch.Generator).

        1. Check the arguments (``batch_size`` >= 1, a CPU generator).
        2. Draw the blocks (``BlockMasker.sample``): one size per level and one context size for
           the batch, each level's positions from its own flattened placement tables, the
           context uniformly and without any level's targets, redraws below ``min_keep``, the
           context cut to one K; the targets come back level by level, in the order of ``levels``.
        """
        # -- 1. arguments
        batch_size = check_call(batch_size, generator)
        # -- 2. blocks, grouped by level
        return self.sample(batch_size, generator)
