"""From a ``BatchKey`` to a batch dict, inside a loader worker.

``ViewDataset`` turns a key into per-sample uint8 views (each sample's augmentation
seeded from seed, epoch, rank and its dataset index); ``JEPACollate`` stacks them and adds
the JEPA masks (seeded from seed, epoch, rank and the batch index). A batch's items are
read with the source's ``load_many`` (remote LitData overlaps its reads), after the blocks
that the next batches need (``BatchKey.upcoming``) were handed to its ``prefetch``, so a
remote source downloads them while this batch is built (``formats/base.py``).

Batch format (a dict):
  ``images``         uint8 ``(B, 3, H, W)`` -- float32 normalized once it reaches the model
                     (``normalize_on_device``), or already in the loader when that is off
  ``labels``         int64 ``(B,)``, -1 where the item has no label
  ``indices``        int64 ``(B,)``, dataset index of each item (for bookkeeping/resume checks)
  ``context_masks``  list of LongTensor ``(B, K)`` patch indices (absent when masking is off)
  ``target_masks``   list of LongTensor ``(B, K)``; for hierarchical masks a list per level
  ``epoch``, ``batch_index``  ints, where the batch sits in the run

With ``compact=True`` (``views_on="device"``) ``images`` holds the native-resolution
pixels instead (or ``encoded`` the files' bytes), plus ``views``, each sample's view
parameters; ``device_views.DeviceViews`` builds the views from them on the device.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from .buffers import batch_buffer
from .device_views import EncodedImages, view_params_tensors
from ..formats.base import FormatError, Source, load_many, prefetch
from .sampling import BatchKey, seeded_generator
from .transforms import decode_pixels, encoded_size, normalize

_VIEW_STREAM = 1
_MASK_STREAM = 2


class ViewDataset(Dataset):
    """Map-style dataset whose keys are whole batches."""

    def __init__(self, source: Source, view: Callable[[Any, torch.Generator], torch.Tensor], seed: int = 0,
                 compact: bool = False):
        self.source = source
        self.view = view
        self.seed = int(seed)
        self.compact = bool(compact)

    def compacted(self, compact: bool) -> "ViewDataset":
        """The same dataset delivering views (False) or the device path's compact items (True)."""
        return ViewDataset(self.source, self.view, self.seed, compact)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, key: BatchKey) -> dict[str, Any]:
        pixels: dict[str, Any] = self._compact(key) if self.compact else {"images": self._views(key)}
        return {
            **pixels,
            "labels": torch.as_tensor(self.source.labels[list(key.indices)], dtype=torch.int64),
            "indices": torch.as_tensor(key.indices, dtype=torch.int64),
            "epoch": key.epoch,
            "batch_index": key.batch_index,
            "rank": key.rank,
        }

    def _views(self, key: BatchKey) -> torch.Tensor:
        prefetch(self.source, key.upcoming)
        images = load_many(self.source, key.indices)
        batch = None
        for position, (index, image) in enumerate(zip(key.indices, images)):
            view = self.view(image, self._generator(key, index))
            if batch is None:
                batch = _batch_buffer(len(key.indices), view)
            batch[position].copy_(view)
        return batch

    def _generator(self, key: BatchKey, index: int) -> torch.Generator:
        return seeded_generator(self.seed, _VIEW_STREAM, key.epoch, key.rank, index)

    def _compact(self, key: BatchKey) -> dict[str, Any]:
        """What the device path needs (see ``device_views.py``): native pixels or encoded
        files, and each sample's view parameters drawn from the same generator as ``_views``."""
        prefetch(self.source, key.upcoming)
        load_encoded = getattr(self.source, "load_encoded", None)
        first = load_encoded(key.indices[0]) if load_encoded is not None else None
        if first is not None:
            encoded = [first] + [load_encoded(i) for i in key.indices[1:]]
            if any(item is None for item in encoded):
                raise FormatError(f"{type(self.source).__name__} gave encoded files for some items of a batch and "
                                  "pixels for others; a source must give one or the other.")
            sizes = [encoded_size(item) for item in encoded]
            params = [self.view.draw(h, w, self._generator(key, i)) for (h, w), i in zip(sizes, key.indices)]
            return {"encoded": EncodedImages.from_bytes(encoded, shared=get_worker_info() is not None),
                    "views": view_params_tensors(params)}
        images = load_many(self.source, key.indices)
        arrays = [decode_pixels(image) for image in images]  # files without load_encoded: decoded here
        params = [self.view.draw(a.shape[0], a.shape[1], self._generator(key, i)) for a, i in zip(arrays, key.indices)]
        return {"images": _native_batch(arrays), "views": view_params_tensors(params)}


def _native_batch(arrays: list[np.ndarray]) -> torch.Tensor:
    """HxWx3 uint8 arrays as one channels-last ``(B, 3, H, W)`` uint8 batch, zero-padded to
    the largest height and width (each image at the top left), in shared memory inside a worker."""
    height = max(a.shape[0] for a in arrays)
    width = max(a.shape[1] for a in arrays)
    batch = batch_buffer((len(arrays), height, width, 3), torch.uint8)
    pixels = batch.numpy()  # numpy copies from read-only memmaps without torch's warning
    if any(a.shape[:2] != (height, width) for a in arrays):
        pixels.fill(0)
    for position, array in enumerate(arrays):
        pixels[position, :array.shape[0], :array.shape[1]] = array
    return batch.permute(0, 3, 1, 2)


def _batch_buffer(count: int, first: torch.Tensor) -> torch.Tensor:
    """An empty ``(count, C, H, W)`` channels-last batch shaped like ``first``.

    Inside a loader worker it is allocated in shared memory straight away (as
    ``default_collate`` does), so the views are written once and the batch crosses to the
    main process without another copy; ``torch.stack`` would transpose every channels-last
    view and then be copied into shared memory a second time.
    """
    channels, height, width = first.shape
    return batch_buffer((count, height, width, channels), first.dtype).permute(0, 3, 1, 2)


class JEPACollate:
    """Adds masks (and, if asked, normalization) to a batch built by ``ViewDataset``.

    ``mask_generator`` is called as ``mask_generator(batch_size, generator)`` and returns
    ``(context_masks, target_masks)`` or ``None``; ``normalize_stats`` is ``(mean, std)``
    to normalize in the worker, or ``None`` to leave uint8 for the device.
    """

    def __init__(self, mask_generator: Callable | None = None, seed: int = 0,
                 normalize_stats: tuple[Sequence[float], Sequence[float]] | None = None):
        self.mask_generator = mask_generator
        self.seed = int(seed)
        self.normalize_stats = normalize_stats

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        if self.mask_generator is not None:
            generator = seeded_generator(self.seed, _MASK_STREAM, batch["epoch"], batch["rank"], batch["batch_index"])
            masks = self.mask_generator(len(batch["labels"]), generator)
            if masks is not None:
                batch["context_masks"], batch["target_masks"] = masks
        if self.normalize_stats is not None and "views" not in batch:  # device-path batches have no views yet
            batch["images"] = normalize(batch["images"], *self.normalize_stats)
        return batch
