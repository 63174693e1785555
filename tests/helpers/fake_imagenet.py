"""Tiny ImageNets in the exact on-disk formats of the official ILSVRC2012 files.

Used by the tests of ``jepa_datamodules.formats.imagenet`` and by the DataModule tests. The
files are written by ``formats.imagenet``'s writers (the same ones ``jepa-bench``'s stand-in
uses; the formats are described there); these builders choose small class lists, counts
and cheap JPEGs, deterministically for a given ``seed``:

* :func:`make_imagenet_archives`: the three official downloads (train tar of per-class
  tars, flat val tar, devkit with ``meta.mat`` and the validation ground truth).
* :func:`make_imagenet_layout`: the finished ``train/<wnid>/``, ``val/<wnid>/`` layout.
* :func:`write_jpeg`: one small JPEG at a path; :func:`tar_bytes`: an in-memory tar with
  names written verbatim (so tests can also build hostile archives, e.g. a ``../evil`` member).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jepa_datamodules.formats.imagenet import (
    DEVKIT, NON_LEAF_WNIDS, TRAIN_TAR, VAL_TAR, write_imagenet_archives, write_imagenet_layout,
)
from jepa_datamodules.formats.writing import pattern_jpeg, tar_bytes, write_file

__all__ = ["DEVKIT", "TRAIN_TAR", "VAL_TAR", "NON_LEAF_WNIDS", "tar_bytes", "write_jpeg",
           "make_imagenet_archives", "make_imagenet_layout"]


def write_jpeg(path: Path, rng: np.random.Generator, size: tuple[int, int] = (80, 60)) -> bytes:
    """Write a small random JPEG of ``size`` = (width, height) to ``path`` (parents created); returns its bytes."""
    data = pattern_jpeg(rng, size)
    write_file(path, data)
    return data


def _labels(wnids: Sequence[str], train_per_class: int, val_per_class: int,
            rng: np.random.Generator) -> dict[str, list[str]]:
    """Train images class by class; val images shuffled across classes (as upstream numbers them)."""
    if not wnids or len(set(wnids)) != len(wnids):
        raise ValueError(f"wnids must be unique and non-empty; got {list(wnids)}")
    val = [w for w in wnids for _ in range(val_per_class)]
    rng.shuffle(val)
    return {"train": [w for w in sorted(wnids) for _ in range(train_per_class)], "val": val}


def make_imagenet_archives(root: Path, wnids: Sequence[str], train_per_class: int = 3, val_per_class: int = 2,
                           size: tuple[int, int] = (80, 60), seed: int = 0) -> dict[str, Any]:
    """Write ``ILSVRC2012_img_train.tar``, ``ILSVRC2012_img_val.tar`` and
    ``ILSVRC2012_devkit_t12.tar.gz`` into ``root``: ``train_per_class`` and ``val_per_class``
    (default 3 and 2) images of ``size`` (default 80x60) per class, ILSVRC2012_IDs shuffled.

    Returns a dict with ``"val_assignment"``: {val file name: wnid}, the ground truth;
    ``"val_bytes"``: {val file name: JPEG bytes}; ``"train_bytes"``: {wnid: {file name: JPEG
    bytes}}; ``"ilsvrc_ids"``: {wnid: ILSVRC2012_ID}; ``"non_leaf_wnids"``; ``"num_train"``,
    ``"num_val"``; ``"train_per_class"``, ``"val_per_class"``.
    """
    rng = np.random.default_rng(seed)
    labels = _labels(wnids, train_per_class, val_per_class, rng)
    written = write_imagenet_archives(root, labels, lambda: pattern_jpeg(rng, size), rng)
    train_bytes: dict[str, dict[str, bytes]] = {}
    for (wnid, name), data in zip(written["names"]["train"], written["bytes"]["train"]):
        train_bytes.setdefault(wnid, {})[name] = data
    val = list(zip(written["names"]["val"], written["bytes"]["val"]))
    return {
        "val_assignment": {name: wnid for (wnid, name), _ in val},
        "val_bytes": {name: data for (_, name), data in val},
        "train_bytes": train_bytes,
        "ilsvrc_ids": written["ilsvrc_ids"],
        "non_leaf_wnids": list(NON_LEAF_WNIDS),
        "num_train": len(labels["train"]),
        "num_val": len(labels["val"]),
        "train_per_class": train_per_class,
        "val_per_class": val_per_class,
    }


def make_imagenet_layout(root: Path, wnids: Sequence[str], train_per_class: int = 3, val_per_class: int = 2,
                         size: tuple[int, int] = (80, 60), seed: int = 0) -> dict[str, Any]:
    """Write a ready ``root/train/<wnid>/*.JPEG`` and ``root/val/<wnid>/*.JPEG`` layout with the
    official file names; ``val_per_class=0`` writes no ``val/`` folder at all.

    Returns a dict with ``"train"`` and ``"val"``: {wnid: sorted file names}, and
    ``"num_train"``, ``"num_val"``: total image counts.
    """
    rng = np.random.default_rng(seed)
    labels = _labels(wnids, train_per_class, val_per_class, rng)
    names = write_imagenet_layout(root, labels, lambda: pattern_jpeg(rng, size))
    listing: dict[str, dict[str, list[str]]] = {"train": {}, "val": {}}
    for split, items in names.items():
        if items:
            listing[split] = {wnid: sorted(n for w, n in items if w == wnid) for wnid in sorted(wnids)}
    return {**listing, "num_train": len(labels["train"]), "num_val": len(labels["val"])}
