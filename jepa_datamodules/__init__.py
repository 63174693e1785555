"""jepa_datamodules: Lightning DataModules that take a JEPA / H-JEPA run from nothing on
disk to masked, augmented batches."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("jepa-datamodules")  # the one copy lives in pyproject.toml
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

from .catalog import DatasetSpec, dataset_names, get_spec
from .datamodules import (
    CIFAR10DataModule,
    CIFAR100DataModule,
    ImageFolderDataModule,
    ImageNet100DataModule,
    ImageNetDataModule,
    JEPADataModule,
    STL10DataModule,
    SyntheticDataModule,
)
from .masks import HierarchicalMaskGenerator, MaskGenerator, MultiBlockMaskGenerator, NoMaskGenerator
from .storage import StorageError
from .tinyjepa import TinyJEPA

__all__ = [
    "CIFAR10DataModule",
    "CIFAR100DataModule",
    "DatasetSpec",
    "HierarchicalMaskGenerator",
    "ImageFolderDataModule",
    "ImageNet100DataModule",
    "ImageNetDataModule",
    "JEPADataModule",
    "MaskGenerator",
    "MultiBlockMaskGenerator",
    "NoMaskGenerator",
    "STL10DataModule",
    "StorageError",
    "SyntheticDataModule",
    "TinyJEPA",
    "dataset_names",
    "get_spec",
]
