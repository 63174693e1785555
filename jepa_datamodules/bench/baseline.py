"""The baseline ``jepa-bench`` compares against: what a straightforward training script does.

A torch ``Dataset`` that yields a PIL image per item from the same source, torchvision's PIL
transforms per sample (``RandomResizedCrop`` -> flip -> ``ColorJitter`` when jitter is on ->
``ToTensor`` -> ``Normalize``, with the DataModule's crop, flip and jitter settings), the
default collate function, ``shuffle=True``, the same batch size and workers.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from ..formats.base import Source


class PlainPILDataset(Dataset):
    """The baseline's dataset: one RGB PIL image per item from ``source``, then ``transform``.

    What torchvision's CIFAR10 / ImageFolder do: ``Image.fromarray`` on an array source,
    ``Image.open(...).convert("RGB")`` (a full decode) on a file source. Items are
    ``(transform(image), label)``.
    """

    def __init__(self, source: Source, transform: Callable[[Image.Image], Any]):
        self.source = source
        self.transform = transform

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        item = self.source.load(index)
        image = Image.fromarray(np.asarray(item)) if isinstance(item, np.ndarray) else item.convert("RGB")
        return self.transform(image), int(self.source.labels[index])


def baseline_transform(dm: Any) -> Callable[[Image.Image], torch.Tensor]:
    """torchvision PIL transforms with the DataModule's crop, flip, jitter and statistics."""
    import torchvision.transforms as T

    view = dm.train_view
    steps: list[Any] = [T.RandomResizedCrop(view.image_size, scale=view.crop_scale, ratio=view.crop_ratio)]
    if view.hflip:
        steps.append(T.RandomHorizontalFlip())
    if view.color_jitter > 0:
        s = view.color_jitter
        steps.append(T.ColorJitter(brightness=s, contrast=s, saturation=s))
    steps += [T.ToTensor(), T.Normalize(dm.spec.mean, dm.spec.std)]
    return T.Compose(steps)


def baseline_loader(source: Source, dm: Any, batch_size: int, workers: int) -> DataLoader:
    """The baseline DataLoader: per-sample PIL transforms, default collate, shuffled, same workers."""
    generator = torch.Generator().manual_seed(int(dm.hparams.seed))
    return DataLoader(PlainPILDataset(source, baseline_transform(dm)), batch_size=batch_size, shuffle=True,
                      num_workers=workers, drop_last=True, generator=generator,
                      pin_memory=torch.cuda.is_available())
