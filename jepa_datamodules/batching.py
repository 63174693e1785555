"""From a ``BatchKey`` to a batch dict, inside a loader worker.

``ViewDataset`` turns a key into per-sample uint8 views (each sample's augmentation
seeded from seed, epoch, rank and its dataset index); ``JEPACollate`` stacks them and adds
the JEPA masks (seeded from seed, epoch, rank and the batch index). A source with a
``load_many(indices)`` method (remote LitData, see ``streaming.py``) reads a batch's
items in one call, so it can overlap the requests.

Batch format (a dict):
  ``images``         uint8 ``(B, 3, H, W)`` -- float32 normalized once it reaches the model
                     (``normalize_on_device``), or already in the loader when that is off
  ``labels``         int64 ``(B,)``, -1 where the item has no label
  ``indices``        int64 ``(B,)``, dataset index of each item (for bookkeeping/resume checks)
  ``context_masks``  list of LongTensor ``(B, K)`` patch indices (absent when masking is off)
  ``target_masks``   list of LongTensor ``(B, K)``; for hierarchical masks a list per level
  ``epoch``, ``batch_index``  ints, where the batch sits in the run
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch.utils.data import Dataset, get_worker_info

from .readers import Source
from .sampling import BatchKey, seeded_generator
from .transforms import normalize

_VIEW_STREAM = 1
_MASK_STREAM = 2


class ViewDataset(Dataset):
    """Map-style dataset whose keys are whole batches."""

    def __init__(self, source: Source, view: Callable[[Any, torch.Generator], torch.Tensor], seed: int = 0):
        self.source = source
        self.view = view
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, key: BatchKey) -> dict[str, Any]:
        # A source that reads faster in bulk (remote LitData: overlapping requests) says so.
        load_many = getattr(self.source, "load_many", None)
        images = load_many(key.indices) if load_many is not None else [self.source.load(i) for i in key.indices]
        batch = None
        for position, (index, image) in enumerate(zip(key.indices, images)):
            view = self.view(image, seeded_generator(self.seed, _VIEW_STREAM, key.epoch, key.rank, index))
            if batch is None:
                batch = _batch_buffer(len(key.indices), view)
            batch[position].copy_(view)
        return {
            "images": batch,
            "labels": torch.as_tensor(self.source.labels[list(key.indices)], dtype=torch.int64),
            "indices": torch.as_tensor(key.indices, dtype=torch.int64),
            "epoch": key.epoch,
            "batch_index": key.batch_index,
            "rank": key.rank,
        }


def _batch_buffer(count: int, first: torch.Tensor) -> torch.Tensor:
    """An empty ``(count, C, H, W)`` channels-last batch shaped like ``first``.

    Inside a loader worker it is allocated in shared memory straight away (as
    ``default_collate`` does), so the views are written once and the batch crosses to the
    main process without another copy; ``torch.stack`` would transpose every channels-last
    view and then be copied into shared memory a second time.
    """
    channels, height, width = first.shape
    nbytes = count * channels * height * width * first.element_size()
    storage = torch.UntypedStorage._new_shared(nbytes) if get_worker_info() is not None else torch.UntypedStorage(nbytes)
    return torch.empty(0, dtype=first.dtype).set_(storage).view(count, height, width, channels).permute(0, 3, 1, 2)


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
        if self.normalize_stats is not None:
            batch["images"] = normalize(batch["images"], *self.normalize_stats)
        return batch
