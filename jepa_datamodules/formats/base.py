"""On-disk formats -> image sources: uint8 arrays or lazily opened files, plus labels.

A *source* has ``len()``, ``labels`` (int64, -1 where an item has no label) and
``load(i)``, which returns an ``HxWx3`` uint8 numpy array (array formats) or an unopened-
pixels ``PIL.Image`` (file formats, so the transform can ask the JPEG decoder for a
reduced size before decoding). A file-based source may also have ``load_encoded(i)``,
the item's encoded file as ``bytes`` (or None where it has none): with
``views_on="device"`` those bytes go to the device undecoded. No Lightning import here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, Sequence

import numpy as np
from PIL import Image



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
