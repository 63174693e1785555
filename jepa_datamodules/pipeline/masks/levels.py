"""``target_levels``: the one reading of a batch's ``target_masks``, flat or hierarchical.

A multi-block generator gives ``target_masks`` as a flat list of ``[B, K]`` LongTensors (one
per target block); a hierarchical one as a list per level of such lists. Code that consumes
masks asks ``target_levels`` for the levels instead of testing the nesting itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ...errors import ConfigError

__all__ = ["TargetLevels", "target_levels"]


class TargetLevels(list):
    """The target blocks level by level: a list of lists of ``[B, K]`` LongTensors.

    ``hierarchical`` says whether the masks came nested (a hierarchical generator, even one
    with a single level) rather than as a flat multi-block list (always one level).
    """

    def __init__(self, levels: Sequence[list[torch.Tensor]] = (), hierarchical: bool = False):
        super().__init__(levels)
        self.hierarchical = hierarchical

    def blocks(self) -> list[torch.Tensor]:
        """Every level's blocks in one list, level after level."""
        return [block for level in self for block in level]


def target_levels(target_masks: Any) -> TargetLevels:
    """``target_masks`` (a batch's, or a generator's second output) as a list of levels.

    A flat list of tensors (multi-block) is one level; a list of lists (hierarchical) is one
    level per item, and a bare tensor among lists counts as a level of one block. ``None``
    (no masks) and an empty list give no levels. Anything else (a tensor, a number, a string)
    raises ``ConfigError``. The blocks themselves are passed through unchecked.
    """
    if target_masks is None:
        return TargetLevels()
    if isinstance(target_masks, (torch.Tensor, str)) or not isinstance(target_masks, Sequence):
        raise _not_masks(target_masks)
    if all(isinstance(item, torch.Tensor) for item in target_masks):
        return TargetLevels([list(target_masks)] if len(target_masks) else [])
    levels = []
    for item in target_masks:
        if isinstance(item, torch.Tensor):
            levels.append([item])
        elif isinstance(item, Sequence) and not isinstance(item, str):
            levels.append(list(item))
        else:
            raise _not_masks(target_masks)
    return TargetLevels(levels, hierarchical=True)


def _not_masks(target_masks: Any) -> ConfigError:
    allowed = "a list of LongTensors [B, K] or a list of such lists (hierarchical)"
    return ConfigError(f"target_masks must be {allowed}, not {type(target_masks).__name__}.",
                       setting="target_masks", allowed=allowed)
