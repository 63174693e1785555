"""Our batches in training code written for other conventions (no Lightning needed).

A batch from ``train_dataloader()`` is a dict (see ``pipeline/batching.py``): uint8 ``images`` (with
``normalize_on_device=True``, the default), ``context_masks`` and ``target_masks`` as lists of
``[B, K]`` LongTensors of patch indices (row-major into the patch grid). These functions turn
it into what other JEPA code expects:

* ``to_device``: tensors moved to a device and images normalized to float32, which Lightning
  does through ``on_after_batch_transfer``; outside Lightning nobody calls that hook.
* ``ijepa_batch`` / ``ijepa_batches``: I-JEPA's training-loop form ``(images, masks_enc,
  masks_pred)``: lists of ``[B, K]`` index tensors, one K per list, ready for its
  gather-and-concatenate ``apply_masks``.
* ``boolean_masks``: ``[B, N]`` / ``[B, n_blocks, N]`` boolean masks (True = the patch is in
  the block), the form of H-JEPA-style ``masking_fn`` outputs and of MAE-style code (whose
  ``mask`` marks *removed* patches: that is ``~context``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch

__all__ = ["boolean_masks", "ijepa_batch", "ijepa_batches", "indices_to_boolean", "to_device"]


def _move(value: Any, device: torch.device | str, non_blocking: bool) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=non_blocking)
    if isinstance(value, list):
        return [_move(v, device, non_blocking) for v in value]
    return value


def to_device(batch: dict[str, Any], datamodule: Any, device: torch.device | str = "cpu",
              non_blocking: bool = False) -> dict[str, Any]:
    """``batch`` with every tensor (masks included) on ``device`` and the images finished as a
    LightningModule receives them: normalized float32 with the dataset's mean and std.

    Equivalent to what Lightning does between the loader and ``training_step``:
    ``datamodule.on_after_batch_transfer(batch moved to device, 0)``.
    """
    moved = {key: _move(value, device, non_blocking) for key, value in batch.items()}
    return datamodule.on_after_batch_transfer(moved, 0)


def ijepa_batch(batch: dict[str, Any], level: int | None = None) -> tuple[torch.Tensor, list[torch.Tensor],
                                                                          list[torch.Tensor]]:
    """``(images, masks_enc, masks_pred)`` as I-JEPA's training loop uses them.

    Args:
        batch: a batch dict with masks (not ``mask=None`` / ``NoMaskGenerator``).
        level: for hierarchical masks, which level's target blocks become ``masks_pred``
            (levels differ in K, so they cannot share one concatenation); None for multi-block.

    Returns:
        ``images`` as in the batch (call ``to_device`` first for normalized floats),
        ``masks_enc``: the context blocks, ``masks_pred``: the target blocks, each a list of
        ``[B, K]`` LongTensors with one K per list.
    """
    if "context_masks" not in batch:
        raise ValueError("The batch has no masks (mask=None or NoMaskGenerator); build the DataModule with "
                         "a MultiBlockMaskGenerator or HierarchicalMaskGenerator for ijepa_batch.")
    targets = batch["target_masks"]
    hierarchical = bool(targets) and isinstance(targets[0], (list, tuple))
    if hierarchical:
        if level is None or not isinstance(level, int) or not 0 <= level < len(targets):
            raise ValueError(f"level={level!r} is not allowed with hierarchical masks: pass level=0..{len(targets) - 1} "
                             "(one level's target blocks per call; levels differ in K).")
        targets = targets[level]
    elif level is not None:
        raise ValueError(f"level={level!r} is only for hierarchical masks; leave it None for multi-block masks.")
    return batch["images"], list(batch["context_masks"]), list(targets)


def ijepa_batches(loader: Iterable[dict[str, Any]], datamodule: Any, device: torch.device | str = "cpu",
                  level: int | None = None) -> Iterator[tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]]:
    """``ijepa_batch(to_device(batch, datamodule, device), level)`` for each batch of ``loader``."""
    for batch in loader:
        yield ijepa_batch(to_device(batch, datamodule, device), level)


def indices_to_boolean(indices: torch.Tensor | list[torch.Tensor], num_patches: int) -> torch.Tensor:
    """``[B, K]`` patch indices -> ``[B, N]`` bool; a list of them -> ``[B, len(list), N]``."""
    if isinstance(indices, (list, tuple)):
        return torch.stack([indices_to_boolean(block, num_patches) for block in indices], dim=1)
    mask = torch.zeros(indices.shape[0], num_patches, dtype=torch.bool, device=indices.device)
    return mask.scatter_(1, indices, True)


def boolean_masks(batch: dict[str, Any], num_patches: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(context [B, N], targets [B, n_blocks, N])`` boolean masks, True = the patch is in the block.

    ``num_patches`` is ``N = rows * cols`` of the patch grid (``datamodule.grid``). The context
    is the union of the context blocks (what the encoder sees); hierarchical target blocks
    come level after level, in the order of the generator's ``levels``.
    """
    if "context_masks" not in batch:
        raise ValueError("The batch has no masks (mask=None or NoMaskGenerator); nothing to convert.")
    context = indices_to_boolean(list(batch["context_masks"]), num_patches).any(dim=1)
    blocks = [t for item in batch["target_masks"] for t in (item if isinstance(item, (list, tuple)) else [item])]
    return context, indices_to_boolean(blocks, num_patches)
