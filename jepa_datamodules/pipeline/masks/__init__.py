"""Block masks for JEPA / H-JEPA pre-training, sampled for a whole batch at once.

A mask generator is configured once (Hydra ``conf/mask/*.yaml``), told the patch grid by
the DataModule through ``with_grid((rows, cols))`` and then called by the collate
function as ``generator(batch_size, torch_generator)``. It returns patch indices, row-major
into the grid (``index = row * cols + col``), the I-JEPA convention:

* ``context_masks``: list of ``num_context`` LongTensors ``[B, K_c]`` (what the encoder sees);
* ``target_masks``: list of LongTensors ``[B, K_t]``, one per target block (multi-block), or
  a list per level of such lists (hierarchical); ``target_levels`` reads either form.

Every random number comes from the ``torch.Generator`` the caller passes in, so equal
generator state gives equal masks; the generators hold only configuration and tables
derived from it, and pickle into DataLoader workers.

One concern per module (I-JEPA's ``src/masks`` layout):

* ``base``: ``MaskGenerator`` (what a DataModule's ``mask`` takes) and ``NoMaskGenerator``;
* ``validation``: the checks of settings and call arguments;
* ``placement``: block sizes and the solver that places target blocks so that every patch is
  about equally often a target (how, and the bias left, is in its docstring);
* ``blocks``: ``BlockMasker``, the public base of block masks: grid checks, context blocks,
  the vectorised batch sampler; its docstring says how to write a new mask type on it;
* ``multiblock``: ``MultiBlockMaskGenerator`` (I-JEPA);
* ``hierarchical``: ``HierarchicalMaskGenerator`` (H-JEPA levels);
* ``levels``: ``target_levels``, the one reading of flat-or-hierarchical ``target_masks``.
"""

from __future__ import annotations

from .base import MaskGenerator, NoMaskGenerator
from .blocks import BlockMasker
from .hierarchical import DEFAULT_HIERARCHICAL_LEVELS, HierarchicalMaskGenerator
from .levels import TargetLevels, target_levels
from .multiblock import MultiBlockMaskGenerator
from .placement import DEFAULT_PLACEMENT_FLOOR, BlockShape, TargetGroup

__all__ = [
    "BlockMasker",
    "BlockShape",
    "DEFAULT_HIERARCHICAL_LEVELS",
    "DEFAULT_PLACEMENT_FLOOR",
    "HierarchicalMaskGenerator",
    "MaskGenerator",
    "MultiBlockMaskGenerator",
    "NoMaskGenerator",
    "TargetGroup",
    "TargetLevels",
    "target_levels",
]
