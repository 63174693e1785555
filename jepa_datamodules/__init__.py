"""jepa_datamodules: Lightning DataModules that take a JEPA / H-JEPA run from nothing on
disk to masked, augmented batches."""

__version__ = "0.1.0"

from .catalog import DatasetSpec, dataset_names, get_spec
from .datamodules import (
    CIFAR10DataModule,
    CIFAR100DataModule,
    ImageNet100DataModule,
    ImageNetDataModule,
    JEPADataModule,
    STL10DataModule,
    SyntheticDataModule,
)
from .masks import HierarchicalMaskGenerator, MultiBlockMaskGenerator, NoMaskGenerator
from .storage import StorageError
from .tinyjepa import TinyJEPA

__all__ = [
    "CIFAR10DataModule",
    "CIFAR100DataModule",
    "DatasetSpec",
    "HierarchicalMaskGenerator",
    "ImageNet100DataModule",
    "ImageNetDataModule",
    "JEPADataModule",
    "MultiBlockMaskGenerator",
    "NoMaskGenerator",
    "STL10DataModule",
    "StorageError",
    "SyntheticDataModule",
    "TinyJEPA",
    "dataset_names",
    "get_spec",
]
