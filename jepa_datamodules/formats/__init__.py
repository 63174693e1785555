"""One module per on-disk format: how to read it, write a small copy, and prepare it.

The registry below maps a spec's ``reader`` to its module. Every format module has

    open_split(spec, folder, split, **options) -> Source

where ``folder`` is the dataset's folder (``<data_dir>/<name>``) and ``options`` are the
format's own options (CIFAR-100's ``label_type``, STL-10's ``fold``, ...). Modules are
imported on first use, so that reading CIFAR never imports pyarrow.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

from ..catalog import DatasetSpec
from .base import Source

#: ``spec.reader`` -> the module (in this package) that reads it.
READERS = {
    "cifar": "cifar",
    "stl10": "stl10",
    "synthetic": "synthetic",
    "imagefolder": "imagefolder",
    "tinyimagenet": "tinyimagenet",
}


def format_module(reader: str) -> ModuleType:
    """The module that reads ``reader``; one sentence naming the valid readers otherwise."""
    if reader not in READERS:
        raise ValueError(f"Unknown reader '{reader}'. Valid values are {{{', '.join(sorted(READERS))}}}.")
    return importlib.import_module(f".{READERS[reader]}", __name__)


def open_split(spec: DatasetSpec, folder: Path, split: str, **options: Any) -> Source:
    """Split ``split`` of the dataset ``spec`` stored in ``folder``, read by its format's module."""
    if split not in spec.splits:
        raise ValueError(f"Unknown value '{split}' for argument split of {spec.name}. "
                         f"Valid values are {{{', '.join(spec.splits)}}}.")
    return format_module(spec.reader).open_split(spec, Path(folder), split, **options)
