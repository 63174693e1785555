"""On-disk formats -> image sources: uint8 arrays or lazily opened files, plus labels.

:class:`Source` is the one contract every format (and LitData, ``streaming.py``) fulfils.
Required: ``len()``, ``labels`` (int64, -1 where an item has no label) and ``load(i)``,
which returns an ``HxWx3`` uint8 numpy array (array formats) or an unopened-pixels
``PIL.Image`` (file formats, so the transform can ask the JPEG decoder for a reduced size
before decoding). Optional capabilities, each with a default that is always correct:

* ``load_encoded(i)``: the item's encoded file as ``bytes`` (None where it has none); with
  ``views_on="device"`` those bytes go to the device undecoded.
* ``load_many(indices)``: a batch's items in one call (remote LitData overlaps its reads).
* ``block_ids()``: the block of every item, where items are cheap to read together (a
  parquet row group, a LitData chunk); the sampler's block-aware order uses it
  (``pipeline/sampling.py``). ``reserve_blocks(n)`` asks the source to keep ``n`` blocks
  decoded at once (the sampler's window), ``prefetch(blocks)`` to start reading blocks
  that upcoming batches need, and ``remote`` says every block read costs a network request.

No Lightning import here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from ..errors import FormatError


class Source:
    """Items of one split: ``labels``, ``len()``, ``load(i)`` and the optional capabilities
    of the module docstring. Subclasses set ``labels`` and implement ``__len__`` and ``load``."""

    labels: np.ndarray
    #: True where reading a block costs a request to another machine (object storage).
    remote: bool = False

    def __len__(self) -> int:
        raise NotImplementedError

    def load(self, index: int) -> np.ndarray | Image.Image:
        raise NotImplementedError

    def load_encoded(self, index: int) -> bytes | None:
        return None

    def load_many(self, indices: Sequence[int]) -> list[np.ndarray | Image.Image]:
        return [self.load(int(i)) for i in indices]

    def block_ids(self) -> np.ndarray | None:
        """One block id per item (None: no blocks, every item is read on its own)."""
        return None

    def reserve_blocks(self, count: int) -> None:
        """Keep at least ``count`` blocks at hand at once (default: nothing is cached)."""

    def prefetch(self, blocks: Sequence[int]) -> None:
        """Start reading ``blocks`` (ids as :meth:`block_ids` gives them) ahead of use; default nothing."""




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


class ArraySource(Source):
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


class SubsetSource(Source):
    """A view of ``indices`` of another source (seeded val carve-outs, STL-10 folds); it keeps
    the base's blocks, so a carve-out of parquet shards is still read row group by row group."""

    def __init__(self, base: Source, indices: np.ndarray):
        self.base = base
        self.indices = np.asarray(indices, dtype=np.int64)
        self.labels = base.labels[self.indices]
        self.label_files = list(getattr(base, "label_files", []))
        self.remote = bool(getattr(base, "remote", False))

    def block_ids(self) -> np.ndarray | None:
        blocks = block_ids(self.base)
        return None if blocks is None else blocks[self.indices]

    def reserve_blocks(self, count: int) -> None:
        reserve_blocks(self.base, count)

    def prefetch(self, blocks: Sequence[int]) -> None:
        prefetch(self.base, blocks)

    def load_many(self, indices: Sequence[int]) -> list[np.ndarray | Image.Image]:
        return load_many(self.base, [int(self.indices[i]) for i in indices])

    def __len__(self) -> int:
        return len(self.indices)

    def load(self, index: int) -> np.ndarray | Image.Image:
        return self.base.load(int(self.indices[index]))

    def load_encoded(self, index: int) -> bytes | None:
        return load_encoded(self.base, int(self.indices[index]))


class ConcatSource(Source):
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


def load_many(source: Source, indices: Sequence[int]) -> list[np.ndarray | Image.Image]:
    """Items ``indices`` of ``source``, in one call where the source reads faster in bulk."""
    loader = getattr(source, "load_many", None)
    return loader(indices) if loader is not None else [source.load(int(i)) for i in indices]


def block_ids(source: Source) -> np.ndarray | None:
    """``source``'s block of every item (see the module docstring), or None where it has no blocks."""
    blocks = getattr(source, "block_ids", None)
    return None if blocks is None else blocks()


def reserve_blocks(source: Source, count: int) -> None:
    reserve = getattr(source, "reserve_blocks", None)
    if reserve is not None:
        reserve(count)


def prefetch(source: Source, blocks: Sequence[int]) -> None:
    fetch = getattr(source, "prefetch", None)
    if fetch is not None and blocks:
        fetch(blocks)


class FileSource(Source):
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
