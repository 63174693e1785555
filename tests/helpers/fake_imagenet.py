"""Tiny ImageNets in the exact on-disk formats of the official ILSVRC2012 files.

Used by the tests of ``jepa_datamodules.formats.imagenet`` and by the DataModule tests. The
writers (:func:`write_imagenet_archives`, and ``jepa-bench``'s :func:`write_imagenet_layout`,
re-exported by ``fake_formats``) reproduce the official formats; the builders choose small
class lists, counts and cheap JPEGs, deterministically for a given ``seed``:

* :func:`make_imagenet_archives`: the three official downloads (train tar of per-class
  tars, flat val tar, devkit with ``meta.mat`` and the validation ground truth).
* :func:`make_imagenet_layout`: the finished ``train/<wnid>/``, ``val/<wnid>/`` layout.
* :func:`write_jpeg`: one small JPEG at a path; :func:`tar_bytes`: an in-memory tar with
  names written verbatim (so tests can also build hostile archives, e.g. a ``../evil`` member).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jepa_datamodules.formats.imagenet import DEVKIT, TRAIN_TAR, VAL_TAR
from tests.helpers.fake_formats import gzip_bytes, ilsvrc_names, pattern_jpeg, tar_bytes, write_file, write_imagenet_layout

__all__ = ["DEVKIT", "TRAIN_TAR", "VAL_TAR", "NON_LEAF_WNIDS", "tar_bytes", "write_jpeg", "write_imagenet_archives",
           "write_imagenet_layout", "make_imagenet_archives", "make_imagenet_layout"]


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


# ------------------------------------------------------------------ the writers (official formats)


#: Real inner WordNet nodes of ILSVRC2012's meta.mat ("entity", "physical entity"); the writer
#: adds them as non-leaf synsets, which a correct devkit parser must ignore.
NON_LEAF_WNIDS = ("n00001740", "n00001930")
DEVKIT_META = "ILSVRC2012_devkit_t12/data/meta.mat"
DEVKIT_TRUTH = "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt"


def _meta_mat(leaf_ids: Mapping[str, int]) -> bytes:
    """meta.mat bytes in the devkit's structure: leaves by ILSVRC2012_ID, then two inner nodes."""
    import scipy.io

    fields = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children", "wordnet_height", "num_train_images"]
    rows: list[tuple[Any, ...]] = []
    for wnid, ilsvrc_id in sorted(leaf_ids.items(), key=lambda item: item[1]):
        # MATLAB stores numbers as double; a leaf's children is an empty 1x0 matrix.
        rows.append((float(ilsvrc_id), wnid, f"words of {wnid}", f"gloss of {wnid}", 0.0, np.zeros((1, 0)), 0.0, 1300.0))
    # Inner nodes: the first is the root (children = the second node), the second parents all leaves.
    root_id, parent_id = len(leaf_ids) + 1, len(leaf_ids) + 2
    rows.append((float(root_id), NON_LEAF_WNIDS[0], "entity", "root", 1.0, np.array([[float(parent_id)]]), 2.0, 0.0))
    leaves = np.array([sorted(leaf_ids.values())], dtype=float)
    rows.append((float(parent_id), NON_LEAF_WNIDS[1], "physical entity", "inner", float(len(leaf_ids)), leaves, 1.0, 0.0))
    synsets = np.empty((len(rows), 1), dtype=[(f, object) for f in fields])
    for i, row in enumerate(rows):
        for field, value in zip(fields, row):
            synsets[i, 0][field] = value
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, {"synsets": synsets})
    return buffer.getvalue()


def write_imagenet_archives(folder: Path, labels: Mapping[str, Sequence[str]], jpeg: Callable[[], bytes],
                            rng: np.random.Generator) -> dict[str, Any]:
    """Write the three official downloads, in miniature, into ``folder``.

    * ``ILSVRC2012_img_train.tar``: one uncompressed ``<wnid>.tar`` per class (sorted), each
      holding ``<wnid>_<k>.JPEG`` at its top level;
    * ``ILSVRC2012_img_val.tar``: ``ILSVRC2012_val_<n:08d>.JPEG`` at its top level;
    * ``ILSVRC2012_devkit_t12.tar.gz``: ``data/meta.mat`` (a struct array ``synsets``: the
      leaves with ILSVRC2012_IDs 1..K drawn in a shuffled order by ``rng``, as in the real
      devkit id order is not wnid order, then :data:`NON_LEAF_WNIDS`) and
      ``data/ILSVRC2012_validation_ground_truth.txt`` (line i: the id of val image i).

    ``labels``: {``train``, ``val``: wnid of each image} (see ``fake_formats.ilsvrc_names``).
    Returns {"names": ilsvrc_names(labels), "bytes": {split: [JPEG bytes]} in the same
    order, "ilsvrc_ids": {wnid: ILSVRC2012_ID}}.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    classes = sorted(set(labels["train"]) | set(labels["val"]))
    if set(classes) & set(NON_LEAF_WNIDS):
        raise ValueError(f"{', '.join(NON_LEAF_WNIDS)} are the devkit's non-leaf synsets; they cannot label images.")
    ilsvrc_ids = {wnid: int(i) + 1 for wnid, i in zip(classes, rng.permutation(len(classes)))}
    names = ilsvrc_names(labels)
    data = {split: [jpeg() for _ in items] for split, items in names.items()}
    per_class: dict[str, list[tuple[str, bytes]]] = {wnid: [] for wnid in classes}
    for (wnid, name), payload in zip(names["train"], data["train"]):
        per_class[wnid].append((name, payload))
    (folder / TRAIN_TAR).write_bytes(tar_bytes([(f"{wnid}.tar", tar_bytes(per_class[wnid])) for wnid in classes]))
    (folder / VAL_TAR).write_bytes(tar_bytes([(name, payload) for (_, name), payload in zip(names["val"], data["val"])]))
    truth = "".join(f"{ilsvrc_ids[wnid]}\n" for wnid, _ in names["val"]).encode("ascii")
    devkit = [("ILSVRC2012_devkit_t12/", b""), ("ILSVRC2012_devkit_t12/data/", b""),
              ("ILSVRC2012_devkit_t12/COPYING", b"A small copy of the devkit's layout.\n"),
              (DEVKIT_META, _meta_mat(ilsvrc_ids)), (DEVKIT_TRUTH, truth)]
    (folder / DEVKIT).write_bytes(gzip_bytes(tar_bytes(devkit)))
    return {"names": names, "bytes": data, "ilsvrc_ids": ilsvrc_ids}
