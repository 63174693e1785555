"""jepa_datamodules: Lightning DataModules that take a JEPA / H-JEPA run from nothing on
disk to masked, augmented batches."""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("jepa-datamodules")  # the one copy lives in pyproject.toml
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

# Where each public name lives. Imported on first use (PEP 562), so that the console scripts
# answer --help or a typo in about a second instead of first importing torch and Lightning.
_WHERE = {
    "DatasetSpec": "catalog",
    "dataset_names": "catalog",
    "get_spec": "catalog",
    "CIFAR10DataModule": "datamodules",
    "CIFAR100DataModule": "datamodules",
    "ImageFolderDataModule": "datamodules",
    "ImageNet100DataModule": "datamodules",
    "ImageNetDataModule": "datamodules",
    "ImagenetteDataModule": "datamodules",
    "JEPADataModule": "datamodules",
    "STL10DataModule": "datamodules",
    "SyntheticDataModule": "datamodules",
    "TinyImageNetDataModule": "datamodules",
    "HierarchicalMaskGenerator": "masks",
    "MaskGenerator": "masks",
    "MultiBlockMaskGenerator": "masks",
    "NoMaskGenerator": "masks",
    "StorageError": "storage",
    "TinyJEPA": "tinyjepa",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
