"""The synthetic dataset the LitData tests convert and read back (96 train and 16 test images of
32 px, batches of 8, multi-block masks with ``min_keep=4``): :func:`synthetic` builds its
DataModule with any further arguments (``format="litdata"``, ``input=...``, ``shuffle=...``)."""

from __future__ import annotations

from pathlib import Path

from jepa_datamodules import SyntheticDataModule
from jepa_datamodules.pipeline.masks import MultiBlockMaskGenerator


SYNTHETIC = dict(num_train=96, num_test=16, image_size=32, patch_size=4, batch_size=8, progress=False)


def synthetic(data_dir: Path, num_workers: int = 0, **kwargs) -> SyntheticDataModule:
    return SyntheticDataModule(data_dir=data_dir, num_workers=num_workers, mask=MultiBlockMaskGenerator(min_keep=4),
                               **SYNTHETIC, **kwargs)
