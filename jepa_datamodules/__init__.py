"""jepa_datamodules: Lightning DataModules that take a JEPA / H-JEPA run from nothing on
disk to masked, augmented batches."""

from __future__ import annotations

import importlib
from typing import Any

from ._version import __version__

# Where each public name lives. Imported on first use (PEP 562), so that the console scripts
# answer --help or a typo in about a second instead of first importing torch and Lightning.
_WHERE = {
    "DatasetSpec": "catalog",
    "dataset_names": "catalog",
    "get_spec": "catalog",
    "CIFAR10DataModule": "datamodule",
    "CIFAR100DataModule": "datamodule",
    "ImageFolderDataModule": "datamodule",
    "ImageNet100DataModule": "datamodule",
    "ImageNetDataModule": "datamodule",
    "ImagenetteDataModule": "datamodule",
    "JEPADataModule": "datamodule",
    "STL10DataModule": "datamodule",
    "SyntheticDataModule": "datamodule",
    "TinyImageNetDataModule": "datamodule",
    "HierarchicalMaskGenerator": "pipeline.masks",
    "MaskGenerator": "pipeline.masks",
    "MultiBlockMaskGenerator": "pipeline.masks",
    "NoMaskGenerator": "pipeline.masks",
    "SaveOnInterrupt": "cli.interrupt",
    "TinyJEPA": "cli.tinyjepa",
    # The errors: one base, JEPADataError; the console scripts turn exactly these into one sentence.
    "JEPADataError": "errors",
    "ConfigError": "errors",
    "DownloadError": "errors",
    "ExtractError": "errors",
    "FormatError": "errors",
    "ImageNetSetupError": "errors",
    "MissingFilesError": "errors",
    "OwnFolderError": "errors",
    "PrepareAllError": "errors",
    "StorageError": "errors",
    "UndecodableImage": "errors",
    "VerificationError": "errors",
    "Notice": "notices",
    "EvalDataModule": "evaluation.protocols",
    "KNNMonitor": "evaluation.monitor",
    "imagenet_subset": "evaluation.subsets",
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
