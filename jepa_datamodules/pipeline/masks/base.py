"""What a DataModule's ``mask`` argument takes (``MaskGenerator``), and ``mask=none``."""

from __future__ import annotations

from typing import Any

import torch

from .validation import Grid, check_call, check_grid

__all__ = ["MaskGenerator", "NoMaskGenerator"]


class MaskGenerator:
    """What a DataModule's ``mask`` argument takes; every generator here derives from it.

    A subclass implements ``with_grid(grid)`` (a copy set up for the patch grid (rows, cols))
    and ``__call__(batch_size, generator)`` (``(context_masks, target_masks)`` or None, drawn
    only from the CPU ``torch.Generator`` given). Deriving from it is what lets LightningCLI /
    jsonargparse accept a generator by class path (``--data.mask jepa_datamodules.MultiBlockMaskGenerator``).
    A block mask type derives from ``blocks.BlockMasker``, which does all but the recipe.
    """

    _grid: Grid | None = None

    @property
    def grid(self) -> Grid | None:
        """Patch grid (rows, cols), or None until ``with_grid`` is called."""
        return self._grid

    def with_grid(self, grid: tuple[int, int]) -> MaskGenerator:
        raise NotImplementedError

    def __call__(self, batch_size: int, generator: torch.Generator) -> Any:
        raise NotImplementedError


class NoMaskGenerator(MaskGenerator):
    """``mask=none``: plain augmented views, no masks. Calling it returns None."""

    def __init__(self, grid: tuple[int, int] | None = None) -> None:
        self._grid = None if grid is None else check_grid(grid)

    def with_grid(self, grid: tuple[int, int]) -> NoMaskGenerator:
        """A copy with the grid recorded (validated, otherwise unused)."""
        return NoMaskGenerator(check_grid(grid))

    def __call__(self, batch_size: int, generator: torch.Generator) -> None:
        """Returns None; the arguments are validated like the other generators'."""
        check_call(batch_size, generator)
        return None

    def __repr__(self) -> str:
        return f"NoMaskGenerator(grid={self._grid!r})"
