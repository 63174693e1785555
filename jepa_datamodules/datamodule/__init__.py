"""The DataModules: ``JEPADataModule`` (``base.py``, the Lightning glue), one per dataset
(``datasets.py``: ``CIFAR10DataModule``, ``ImageFolderDataModule``, ...) and the defaults and
checks of their arguments (``settings.py``). Every name is importable from
``jepa_datamodules.datamodule`` as before the split."""

from .base import JEPADataModule
from .datasets import (CIFAR10DataModule, CIFAR100DataModule, ImageFolderDataModule, ImageNet100DataModule,
                       ImageNetDataModule, ImagenetteDataModule, STL10DataModule, SyntheticDataModule,
                       TinyImageNetDataModule)
from .settings import DEFAULT_MASK, DEFAULT_MAX_WORKERS, SHUFFLES, VIEWS_ON, fitted_workers

__all__ = ["CIFAR100DataModule", "CIFAR10DataModule", "DEFAULT_MASK", "DEFAULT_MAX_WORKERS", "ImageFolderDataModule",
           "ImageNet100DataModule", "ImageNetDataModule", "ImagenetteDataModule", "JEPADataModule", "SHUFFLES",
           "STL10DataModule", "SyntheticDataModule", "TinyImageNetDataModule", "VIEWS_ON", "fitted_workers"]
