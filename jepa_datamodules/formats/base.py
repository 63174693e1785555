"""On-disk formats -> image sources: uint8 arrays or lazily opened files, plus labels.

A *source* has ``len()``, ``labels`` (int64, -1 where an item has no label) and
``load(i)``, which returns an ``HxWx3`` uint8 numpy array (array formats) or an unopened-
pixels ``PIL.Image`` (file formats, so the transform can ask the JPEG decoder for a
reduced size before decoding). A file-based source may also have ``load_encoded(i)``,
the item's encoded file as ``bytes`` (or None where it has none): with
``views_on="device"`` those bytes go to the device undecoded. No Lightning import here.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np
from PIL import Image

from ..catalog import DatasetSpec
from ..storage.files import unwritable


class Source(Protocol):
    labels: np.ndarray

    def __len__(self) -> int: ...

    def load(self, index: int) -> np.ndarray | Image.Image: ...


class FormatError(RuntimeError):
    """A file on disk is not in the format its dataset promises."""


def label_problem(labels: np.ndarray, num_classes: int, unlabeled_ok: bool = False) -> str | None:
    """None when every label is in ``[0, num_classes)`` (or -1 where ``unlabeled_ok``), else what is
    wrong, e.g. ``"3 of 50000 outside (e.g. 200 at item 17)"``. One pass of min/max-like numpy work."""
    labels = np.asarray(labels)
    bad = (labels >= num_classes) | (labels < (-1 if unlabeled_ok else 0))
    if not bad.any():
        return None
    first = int(np.flatnonzero(bad)[0])
    return f"{int(bad.sum())} of {len(labels)} outside (e.g. {int(labels[first])} at item {first})"


def check_labels(source: "Source", num_classes: int, what: str, fix: str) -> None:
    """Raise :class:`FormatError` when a label of ``source`` lies outside ``[0, num_classes)``
    (-1 is allowed where ``what`` names an unlabeled split); ``fix`` ends the sentence."""
    unlabeled_ok = "unlabeled" in what
    problem = label_problem(source.labels, num_classes, unlabeled_ok)
    if problem is not None:
        allowed = f"0..{num_classes - 1}" + (" or -1 (unlabeled)" if unlabeled_ok else "")
        files = ", ".join(str(p) for p in getattr(source, "label_files", []))
        raise FormatError(f"The labels of {what}{' (' + files + ')' if files else ''} are damaged: {problem}, "
                          f"allowed is {allowed}; {fix}.")


class ArraySource:
    """Images held as one ``(N, H, W, 3)`` uint8 array (or a read-only memmap of one)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        if len(images) != len(labels):
            raise FormatError(f"{len(images)} images but {len(labels)} labels.")
        self.images = images
        self.labels = np.asarray(labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def load(self, index: int) -> np.ndarray:
        return self.images[index]


class SubsetSource:
    """A view of ``indices`` of another source (seeded val carve-outs, STL-10 folds)."""

    def __init__(self, base: Source, indices: np.ndarray):
        self.base = base
        self.indices = np.asarray(indices, dtype=np.int64)
        self.labels = base.labels[self.indices]
        self.label_files = list(getattr(base, "label_files", []))

    def __len__(self) -> int:
        return len(self.indices)

    def load(self, index: int) -> np.ndarray | Image.Image:
        return self.base.load(int(self.indices[index]))

    def load_encoded(self, index: int) -> bytes | None:
        return load_encoded(self.base, int(self.indices[index]))


class ConcatSource:
    """Several sources end to end (STL-10 ``train+unlabeled``)."""

    def __init__(self, parts: Sequence[Source]):
        self.parts = list(parts)
        self.offsets = np.cumsum([0] + [len(p) for p in self.parts])
        self.labels = np.concatenate([p.labels for p in self.parts])
        self.label_files = [f for p in self.parts for f in getattr(p, "label_files", [])]

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def load(self, index: int) -> np.ndarray | Image.Image:
        part = int(np.searchsorted(self.offsets, index, side="right")) - 1
        return self.parts[part].load(index - int(self.offsets[part]))

    def load_encoded(self, index: int) -> bytes | None:
        part = int(np.searchsorted(self.offsets, index, side="right")) - 1
        return load_encoded(self.parts[part], index - int(self.offsets[part]))


def load_encoded(source: Source, index: int) -> bytes | None:
    """Item ``index``'s encoded file when ``source`` has one (see the module docstring), else None."""
    loader = getattr(source, "load_encoded", None)
    return loader(index) if loader is not None else None


# --------------------------------------------------------------------------- CIFAR
# The CIFAR "python version" batches are pickles of a dict holding a uint8 array, lists
# of ints and byte strings. Unpickling can run arbitrary code, so only the globals that
# such a file needs to rebuild a numpy array are admitted.
_CIFAR_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # how Python 3 spells a byte string in protocol-2 pickles
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _CIFAR_PICKLE_GLOBALS:
            raise FormatError(
                f"{self.source_name} refers to '{module}.{name}', which a CIFAR batch never contains; "
                "refusing to unpickle it (the file is corrupt or was tampered with: delete it and run jepa-prepare again)."
            )
        return super().find_class(module, name)


def load_cifar_pickle(path: Path) -> dict[str, Any]:
    """Read one CIFAR batch with the restricted unpickler; keys come back as ``str``."""
    with open(path, "rb") as handle:
        unpickler = _RestrictedUnpickler(io.BufferedReader(handle), encoding="latin1")
        unpickler.source_name = str(path)
        try:
            content = unpickler.load()
        except FormatError:
            raise
        except Exception as error:  # truncated or garbage bytes
            raise FormatError(f"{path} is not a readable CIFAR batch ({error}).") from error
    if not isinstance(content, dict):
        raise FormatError(f"{path} holds a {type(content).__name__}, not the dict a CIFAR batch is.")
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in content.items()}


def read_cifar(spec: DatasetSpec, folder: Path, split: str, label_type: str = "fine") -> ArraySource:
    """CIFAR-10/100 ``train`` or ``test`` as one ``(N, 32, 32, 3)`` uint8 array."""
    files = spec.options[f"{split}_files"]
    label_key = spec.options["label_keys"][label_type]
    images, labels = [], []
    for name in files:
        batch = load_cifar_pickle(folder / spec.data_root / name)
        data = np.asarray(batch["data"], dtype=np.uint8)
        # Rows are 3072 bytes: the red 32x32 plane, then green, then blue.
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(np.asarray(batch[label_key], dtype=np.int64))
    source = ArraySource(np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels))
    source.label_files = [folder / spec.data_root / name for name in files]
    return source


# -------------------------------------------------------------------------- STL-10
STL10_SIDE = 96
_STL10_IMAGE_BYTES = 3 * STL10_SIDE * STL10_SIDE


class STL10Source:
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
            raise FormatError(f"{images_path} is {size} bytes, not a whole number of 96x96x3 images.")
        count = size // _STL10_IMAGE_BYTES
        if labels is None:
            labels = np.full(count, -1, dtype=np.int64)
        if len(labels) != count:
            raise FormatError(f"{images_path} holds {count} images but its label file has {len(labels)}.")
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
            raise FormatError(f"{self.images_path} ends before image {index}: the file is truncated; run jepa-prepare again.")
        return np.frombuffer(data, np.uint8).reshape(3, STL10_SIDE, STL10_SIDE).transpose(2, 1, 0)


def read_stl10(spec: DatasetSpec, folder: Path, split: str, fold: int | None = None) -> Source:
    """STL-10 ``train`` (optionally one of the 10 predefined folds), ``test``,
    ``unlabeled`` or ``train+unlabeled`` (labeled first, unlabeled with label -1)."""
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
    if split == "train+unlabeled":
        return ConcatSource([read_stl10(spec, folder, "train", fold), STL10Source(root / "unlabeled_X.bin", None)])
    raise ValueError(f"Unknown value '{split}' for argument split. Valid values are {{train, test, unlabeled, train+unlabeled}}.")


def stl10_fold_indices(root: Path, fold: int) -> np.ndarray:
    lines = (root / "fold_indices.txt").read_text().splitlines()
    if not 0 <= fold < len(lines):
        raise ValueError(f"STL-10 fold {fold} does not exist; valid folds are 0..{len(lines) - 1}.")
    return np.array(lines[fold].split(), dtype=np.int64)


# ------------------------------------------------------------------- image folders
class FileSource:
    """Image files listed once (paths relative to ``root``) with their labels."""

    def __init__(self, root: Path, paths: Sequence[str], labels: np.ndarray):
        self.root = Path(root)
        self.paths = list(paths)
        self.labels = np.asarray(labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int) -> Image.Image:
        return Image.open(self.root / self.paths[index])

    def load_encoded(self, index: int) -> bytes:
        return (self.root / self.paths[index]).read_bytes()


def read_image_folder(split_dir: Path, classes: Sequence[str] | None = None, cache: Path | None = None,
                      cache_key: str = "") -> FileSource:
    from .imagefolder import index_image_folder

    paths, labels, _ = index_image_folder(split_dir, classes=classes, cache=cache, cache_key=cache_key)
    return FileSource(split_dir, paths, labels)


# ----------------------------------------------------------------------- synthetic
def read_synthetic(folder: Path, split: str) -> ArraySource:
    images = np.load(folder / f"{split}_images.npy", mmap_mode="r")
    labels = np.load(folder / f"{split}_labels.npy")
    source = ArraySource(images, labels)
    source.label_files = [folder / f"{split}_labels.npy"]
    return source


def open_split(spec: DatasetSpec, folder: Path, split: str, **options: Any) -> Source:
    """Dispatch on the spec's reader; ``options`` are the reader's own (label_type, fold, ...)."""
    valid = set(spec.splits)
    if split not in valid:
        raise ValueError(f"Unknown value '{split}' for argument split of {spec.name}. Valid values are {{{', '.join(spec.splits)}}}.")
    if spec.reader == "cifar":
        return read_cifar(spec, folder, split, label_type=options.get("label_type", "fine"))
    if spec.reader == "stl10":
        return read_stl10(spec, folder, split, fold=options.get("fold"))
    if spec.reader == "synthetic":
        return read_synthetic(folder, split)
    if spec.reader == "imagefolder":
        split_dir = Path(options.get("root", folder / spec.data_root)) / split
        if not split_dir.is_dir():
            raise FileNotFoundError(f"{split_dir} does not exist; {spec.name} expects <wnid>/ class folders there.")
        key = options.get("cache_key", "")
        return read_image_folder(split_dir, classes=options.get("classes"),
                                 cache=index_cache(Path(options.get("cache_dir", folder)), split_dir, split),
                                 cache_key=key(split_dir) if callable(key) else key)
    if spec.reader == "tinyimagenet":
        from .tinyimagenet import read_tinyimagenet

        return read_tinyimagenet(folder / spec.data_root, split)
    raise ValueError(f"Spec '{spec.name}' names reader '{spec.reader}', which does not exist; "
                     "valid readers are cifar, stl10, synthetic, imagefolder, tinyimagenet.")


def index_cache(cache_dir: Path, split_dir: Path, split: str) -> Path:
    """Where the file-list index of ``split_dir`` is kept.

    Beside the data, ``<cache_dir>/.index-<split>.npz``, when one is there (it is read even
    from read-only storage) or the folder can be written. Otherwise (a read-only mount, a
    folder of another user) in the user's cache folder, ``$XDG_CACHE_HOME/jepa_datamodules/index``
    (default ``~/.cache/...``), named after the split folder; and if that cannot be written
    either, the listing is only kept in memory (``index_image_folder`` warns once per run).
    """
    beside = Path(cache_dir) / f".index-{split}.npz"
    if beside.is_file() or unwritable(Path(cache_dir)) is None:
        return beside
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    digest = hashlib.sha1(str(Path(split_dir).resolve()).encode()).hexdigest()[:16]
    return base / "jepa_datamodules" / "index" / f"{digest}-{split}.npz"
