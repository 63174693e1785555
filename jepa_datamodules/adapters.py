"""Our batches in training code written for other conventions (no Lightning needed).

A batch from ``train_dataloader()`` is a dict (see ``pipeline/batching.py``): uint8 ``images`` (with
``normalize_on_device=True``, the default), ``context_masks`` and ``target_masks`` as lists of
``[B, K]`` LongTensors of patch indices (row-major into the patch grid). These functions turn
it into what other JEPA code expects:

* ``to_device``: tensors moved to a device and images normalized to float32, which Lightning
  does through ``on_after_batch_transfer``; outside Lightning nobody calls that hook.
* ``ijepa_loader``: the drop-in for I-JEPA's ``unsupervised_loader`` (its ``src/train.py``,
  and lightly's I-JEPA example): ``len()``, ``.sampler.set_epoch``, a fresh pass per epoch,
  items ``([images, labels], masks_enc, masks_pred)`` as its ``MaskCollator`` yields them.
  ``ijepa_batch`` is one batch in that form's parts ``(images, masks_enc, masks_pred)``.
* ``hjepa_feed``: ``(loader, masking_fn)`` for H-JEPA's ``HJEPATrainer``: the loader yields
  ``(images, labels)``, ``masking_fn(batch_size=, device=)`` the per-level boolean masks of
  the batch yielded last.
* ``boolean_masks``: ``(context [B, N], targets [B, n_blocks, N])`` booleans (True = the patch
  is in the block), every level's blocks stacked: the form of MAE-style code (whose ``mask``
  marks *removed* patches: that is ``~context``) and of H-JEPA's multi-block generator.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch

from .choices import check_choice
from .errors import ConfigError
from .pipeline.masks import target_levels

__all__ = ["HJEPAFeed", "IJEPALoader", "boolean_masks", "hjepa_feed", "ijepa_batch", "ijepa_loader",
           "indices_to_boolean", "to_device"]


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
        raise ConfigError("The batch has no masks (mask=None or NoMaskGenerator); build the DataModule with "
                         "a MultiBlockMaskGenerator or HierarchicalMaskGenerator for ijepa_batch.")
    levels = target_levels(batch["target_masks"])
    if levels.hierarchical:
        if level is None or not isinstance(level, int) or not 0 <= level < len(levels):
            raise ConfigError(f"level={level!r} is not allowed with hierarchical masks: pass level=0..{len(levels) - 1} "
                              "(one level's target blocks per call; levels differ in K).",
                              setting="level", allowed=f"0..{len(levels) - 1}")
        targets = levels[level]
    elif level is not None:
        raise ConfigError(f"level={level!r} is only for hierarchical masks; leave it None for multi-block masks.",
                          setting="level", allowed="None")
    else:
        targets = levels[0] if levels else []
    return batch["images"], list(batch["context_masks"]), list(targets)


class IJEPALoader:
    """What I-JEPA's ``make_imagenet1k`` returns as ``unsupervised_loader``, over our batches.

    ``len(loader)`` is the batches per epoch (I-JEPA's ``ipe``), ``loader.sampler.set_epoch(e)``
    picks the epoch, and every ``iter(loader)`` is a fresh pass (one object serves every epoch;
    a pass with no ``set_epoch`` before it is the next epoch). Each item is
    ``([images, labels], masks_enc, masks_pred)``, as I-JEPA's ``MaskCollator`` after the
    default collate gives it: ``udata[0]`` is the ``[B, 3, H, W]`` float32 batch, normalized
    with the dataset's mean and std (views finished on ``device`` whatever ``views_on`` is),
    ``udata[1]`` the ``[B]`` labels; ``masks_enc`` and ``masks_pred`` are lists of ``[B, K]``
    patch indices, one K per list, for I-JEPA's gather-and-concatenate ``apply_masks``.
    """

    def __init__(self, loader: Any, datamodule: Any, device: torch.device | str = "cpu", level: int | None = None):
        self.loader, self.datamodule, self.device, self.level = loader, datamodule, device, level
        self.sampler = loader.sampler

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]]:
        for batch in self.loader:
            batch = to_device(batch, self.datamodule, self.device)
            images, masks_enc, masks_pred = ijepa_batch(batch, self.level)
            yield [images, batch["labels"]], masks_enc, masks_pred


def split_loader(datamodule: Any, split: str) -> Any:
    """``split``'s loader with masks: the training loader (resume position included) or a masked val / test one."""
    check_choice("split", split, ("train", "val", "test"))
    return datamodule.train_dataloader() if split == "train" else datamodule.masked_dataloader(split)


def ijepa_loader(datamodule: Any, split: str = "train", device: torch.device | str = "cpu",
                 level: int | None = None) -> IJEPALoader:
    """The drop-in for I-JEPA's ``unsupervised_loader`` (see ``IJEPALoader``), over ``split``.

    Args:
        datamodule: a JEPA DataModule with masks (any mask generator but ``NoMaskGenerator``);
            ``prepare_data()`` is called here when the splits are not set up yet.
        split: ``"train"`` (the training stream, shuffled, resumable) ["train"], ``"val"`` or
            ``"test"`` (in order, with masks drawn as for training).
        device: where the views are finished (normalized, or built with ``views_on="device"``)
            ["cpu"]; I-JEPA's own ``.to(device)`` then moves them on.
        level: for hierarchical masks, the level whose target blocks are ``masks_pred``.
    """
    if not getattr(datamodule, "datasets", None):
        datamodule.prepare_data()
    return IJEPALoader(split_loader(datamodule, split), datamodule, device, level)


def indices_to_boolean(indices: torch.Tensor | list[torch.Tensor], num_patches: int) -> torch.Tensor:
    """``[B, K]`` patch indices -> ``[B, N]`` bool; a list of them -> ``[B, len(list), N]``."""
    if isinstance(indices, (list, tuple)):
        return torch.stack([indices_to_boolean(block, num_patches) for block in indices], dim=1)
    mask = torch.zeros(indices.shape[0], num_patches, dtype=torch.bool, device=indices.device)
    return mask.scatter_(1, indices, True)


def boolean_masks(batch: dict[str, Any], num_patches: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(context [B, N], targets [B, n_blocks, N])`` boolean masks, True = the patch is in the block
    (H-JEPA's per-level dict: ``hjepa_feed``).

    ``num_patches`` is ``N = rows * cols`` of the patch grid (``datamodule.grid``). The context
    is the union of the context blocks (what the encoder sees); hierarchical target blocks
    come level after level, in the order of the generator's ``levels``.
    """
    if "context_masks" not in batch:
        raise ConfigError("The batch has no masks (mask=None or NoMaskGenerator); nothing to convert.")
    context = indices_to_boolean(list(batch["context_masks"]), num_patches).any(dim=1)
    return context, indices_to_boolean(target_levels(batch["target_masks"]).blocks(), num_patches)


#: What ``masking_fn`` returns: H-JEPA's per-level dict, or its multi-block ``(context, targets)`` pair.
MASK_FORMS = ("levels", "blocks")


class HJEPAFeed:
    """H-JEPA's ``train_loader`` and ``masking_fn`` over one stream of our batches (``hjepa_feed``).

    Iterating yields ``(images, labels)`` (``batch[0].to(device)`` is the finished float32
    batch); ``len()`` is the batches per epoch and ``.sampler`` takes ``set_epoch`` as for
    ``ijepa_loader``. ``masking_fn(batch_size=B, device=d)`` returns the boolean masks of the
    batch yielded last, as H-JEPA's hierarchical generator lays them out:
    ``{"level_0": {"context": bool[B, N], "targets": bool[B, n_blocks, N]}, "level_1": ...}``
    (True = the patch is in the block; the context is the union of the context blocks, the
    same for every level). Multi-block masks are one level, ``level_0``; with hierarchical
    masks ``level_i`` is the generator's level ``i`` (level 0: the fine blocks). H-JEPA's
    trainer reads ``level_0``'s targets only, combined with ``targets.any(dim=1)``. With
    ``form="blocks"`` it returns ``(context [B, N], targets [B, n_blocks, N])`` instead, the
    form of H-JEPA's multi-block generator, which later versions of its trainer unpack as
    ``context_mask, target_masks = masking_fn(...)`` (every level's blocks stacked, as
    ``boolean_masks``). A smaller ``batch_size`` than the batch (H-JEPA's picture step asks for
    4) takes its first rows. The masks are ours, seeded per (seed, epoch, batch, rank), so
    resume and DDP hold.
    """

    def __init__(self, loader: Any, datamodule: Any, device: torch.device | str = "cpu", form: str = "levels"):
        check_choice("form", form, MASK_FORMS)
        self.loader, self.datamodule, self.device, self.form = loader, datamodule, device, form
        self.sampler = loader.sampler
        self.num_patches = datamodule.grid[0] * datamodule.grid[1]
        self.last: dict[str, Any] | None = None

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for batch in self.loader:
            batch = to_device(batch, self.datamodule, self.device)
            if "context_masks" not in batch:
                raise ConfigError("The batch has no masks (mask=None or NoMaskGenerator); build the DataModule with "
                                 "a MultiBlockMaskGenerator or HierarchicalMaskGenerator for hjepa_feed.")
            self.last = batch
            yield batch["images"], batch["labels"]

    def masking_fn(self, batch_size: int, device: torch.device | str | None = None) -> Any:
        """The last batch's masks per level, or stacked with ``form="blocks"`` (see the class
        docstring), on ``device`` [None = where the batch is]."""
        if self.last is None:
            raise ConfigError("masking_fn gives the masks of the batch the loader yielded last; none has been "
                             "yielded yet: iterate the loader first (for images, labels in loader: ...).")
        rows = len(self.last["images"])
        if not isinstance(batch_size, int) or not 0 < batch_size <= rows:
            raise ConfigError(f"batch_size={batch_size!r} is invalid for the last batch of {rows} images; "
                             f"allowed is 1..{rows} (a smaller size takes the first rows).")
        if self.form == "blocks":
            context, targets = boolean_masks(self.last, self.num_patches)
            device = context.device if device is None else device
            return context[:batch_size].to(device), targets[:batch_size].to(device)
        context = indices_to_boolean(list(self.last["context_masks"]), self.num_patches).any(dim=1)
        levels = target_levels(self.last["target_masks"])
        device = context.device if device is None else device
        return {f"level_{i}": {"context": context[:batch_size].to(device),
                               "targets": indices_to_boolean(list(blocks), self.num_patches)[:batch_size].to(device)}
                for i, blocks in enumerate(levels)}


def hjepa_feed(datamodule: Any, split: str = "train", device: torch.device | str = "cpu",
               form: str = "levels") -> tuple[HJEPAFeed, Callable[..., Any]]:
    """``(loader, masking_fn)`` for H-JEPA's ``HJEPATrainer(train_loader=loader, masking_fn=masking_fn, ...)``.

    See ``HJEPAFeed``. ``split`` and ``device`` as for ``ijepa_loader``; ``form``: ``"levels"``
    (the per-level dict) ["levels"] or ``"blocks"`` (the ``(context, targets)`` pair).
    """
    if not getattr(datamodule, "datasets", None):
        datamodule.prepare_data()
    feed = HJEPAFeed(split_loader(datamodule, split), datamodule, device, form)
    return feed, feed.masking_fn
