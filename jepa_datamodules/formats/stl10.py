"""STL-10's binaries: column-major 96x96x3 uint8 images, 1-based uint8 labels, fold lists.

::

    stl10_binary/train_X.bin, train_y.bin       5,000 labelled
    stl10_binary/test_X.bin, test_y.bin         8,000 labelled
    stl10_binary/unlabeled_X.bin                100,000 without labels (-1)
    stl10_binary/fold_indices.txt               10 lines of train indices (the predefined folds)

Format option: ``fold`` (one of the predefined folds of ``train``; None = all of it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..catalog import DatasetSpec
from ..choices import check_choice
from ..errors import ConfigError, FormatError, setting
from .base import ConcatSource, Source, SubsetSource
from .dataset import Dataset

STL10_SIDE = 96
#: What pre-training may read (unlabeled items carry label -1).
PRETRAIN_SPLITS = ("train", "unlabeled", "train+unlabeled")
_STL10_IMAGE_BYTES = 3 * STL10_SIDE * STL10_SIDE


class STL10Source(Source):
    """One STL-10 ``*_X.bin`` file read one image at a time: never loaded whole.

    The binary holds each image as three 96x96 planes stored column by column, so an item
    is transposed on access. Each item is read with ``os.pread`` on a file descriptor the
    process opens lazily, so a loader worker reads the file itself instead of receiving a
    pickled copy. Not ``np.memmap``: mapped pages of the 2.7 GB unlabeled split stay in every
    worker's proportional set size once touched (2.5 GB after one pass of random reads,
    measured by jepa-bench), while pread leaves nothing mapped and reads faster here.
    """

    def __init__(self, images_path: Path, labels: np.ndarray | None):
        self.images_path = Path(images_path)
        size = self.images_path.stat().st_size
        if size % _STL10_IMAGE_BYTES:
            raise FormatError(f"{images_path} is {size} bytes, not a whole number of 96x96x3 images.", path=images_path)
        count = size // _STL10_IMAGE_BYTES
        if labels is None:
            labels = np.full(count, -1, dtype=np.int64)
        if len(labels) != count:
            raise FormatError(f"{images_path} holds {count} images but its label file has {len(labels)}.",
                              path=images_path)
        self.labels = np.asarray(labels, dtype=np.int64)
        self._fd: int | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_fd": None}

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)

    def load(self, index: int) -> np.ndarray:
        if self._fd is None:
            self._fd = os.open(self.images_path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        offset = int(index) * _STL10_IMAGE_BYTES
        if hasattr(os, "pread"):
            data = os.pread(self._fd, _STL10_IMAGE_BYTES, offset)
        else:  # Windows has no pread
            os.lseek(self._fd, offset, os.SEEK_SET)
            data = os.read(self._fd, _STL10_IMAGE_BYTES)
        if len(data) != _STL10_IMAGE_BYTES:
            raise FormatError(f"{self.images_path} ends before image {index}: the file is truncated; prepare the "
                              "dataset again (with force=True it is fetched anew).", path=self.images_path)
        return np.frombuffer(data, np.uint8).reshape(3, STL10_SIDE, STL10_SIDE).transpose(2, 1, 0)


def open_split(spec: DatasetSpec, folder: Path, split: str, fold: int | None = None) -> Source:
    """STL-10 ``train`` (optionally one of the 10 predefined folds), ``test``,
    ``unlabeled`` or ``train+unlabeled`` (labeled first, unlabeled with label -1)."""
    check_choice("split", split, ("train", "test", "unlabeled", "train+unlabeled"))
    root = folder / spec.data_root

    def labeled(name: str) -> STL10Source:
        # Labels are stored 1-based as uint8.
        labels = np.fromfile(root / f"{name}_y.bin", dtype=np.uint8).astype(np.int64) - 1
        source = STL10Source(root / f"{name}_X.bin", labels)
        source.label_files = [root / f"{name}_y.bin"]
        return source

    if split == "train":
        source: Source = labeled("train")
        if fold is not None:
            source = SubsetSource(source, stl10_fold_indices(root, fold))
        return source
    if split == "test":
        return labeled("test")
    if split == "unlabeled":
        return STL10Source(root / "unlabeled_X.bin", None)
    return ConcatSource([open_split(spec, folder, "train", fold), STL10Source(root / "unlabeled_X.bin", None)])


class STL10Dataset(Dataset):
    """STL-10 on disk; options ``train_split`` (what pre-training reads, one of
    :data:`PRETRAIN_SPLITS`) and ``fold`` (one of the spec's ``options["folds"]`` predefined
    folds of ``train``; None = all of it)."""

    subset_options = ("fold",)

    def __init__(self, spec: DatasetSpec, data_dir: Any, *, train_split: str = "train+unlabeled",
                 fold: int | None = None, **rest: Any):
        check_choice("train_split", train_split, PRETRAIN_SPLITS)
        folds = spec.options["folds"]
        if fold is not None and not 0 <= fold < folds:
            raise ConfigError(f"{setting('fold', fold)} is invalid; allowed is None or 0..{folds - 1} (STL-10's "
                              "predefined folds).", setting="fold", allowed=f"None or 0..{folds - 1}")
        super().__init__(spec.replace(pretrain_split=train_split), data_dir, **rest)
        self.options = {"fold": fold}


def dataset_type(spec: DatasetSpec) -> type[Dataset]:
    return STL10Dataset


def class_names(spec: DatasetSpec, folder: Path, **options: Any) -> list[str]:
    """The names in ``class_names.txt``, one a line, in label order (labels 1..10 on disk are 0..9 here)."""
    lines = (folder / spec.data_root / "class_names.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip()]


def stl10_fold_indices(root: Path, fold: int) -> np.ndarray:
    lines = (root / "fold_indices.txt").read_text().splitlines()
    if not 0 <= fold < len(lines):
        raise ConfigError(f"STL-10 fold {fold} does not exist; valid folds are 0..{len(lines) - 1}.", setting="fold",
                          allowed=f"0..{len(lines) - 1}")
    return np.array(lines[fold].split(), dtype=np.int64)
