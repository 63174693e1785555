"""Builders of tiny ImageNets in the exact on-disk formats of the official ILSVRC2012 files.

Used by the tests of ``jepa_datamodules.formats.imagenet`` and by the DataModule tests. Every
builder is deterministic for a given ``seed`` and takes a few milliseconds per image.

* :func:`write_jpeg` / :func:`jpeg_bytes`: one small RGB JPEG with random smooth structure.
* :func:`tar_bytes`: an in-memory tar of regular files, names written verbatim (so tests
  can also build hostile archives, e.g. with a ``../evil`` member).
* :func:`make_imagenet_archives`: the three official downloads (train tar of per-class
  tars, flat val tar, devkit with ``meta.mat`` and the validation ground truth).
* :func:`make_imagenet_layout`: the finished ``train/<wnid>/``, ``val/<wnid>/`` layout.

Formats (from the ILSVRC2012 devkit readme and the files themselves):

* ``ILSVRC2012_img_train.tar`` holds one uncompressed ``<wnid>.tar`` per class, each holding
  ``<wnid>_<k>.JPEG`` at its top level.
* ``ILSVRC2012_img_val.tar`` holds ``ILSVRC2012_val_%08d.JPEG`` (1-based) at its top level.
* ``ILSVRC2012_devkit_t12.tar.gz`` holds ``ILSVRC2012_devkit_t12/data/meta.mat`` (a MATLAB
  struct array ``synsets``, shape (N, 1), fields ILSVRC2012_ID, WNID, words, gloss,
  num_children, children, wordnet_height, num_train_images; classes are the leaves,
  ``num_children == 0``, with ids 1..1000, inner nodes follow) and
  ``ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt`` (one ILSVRC2012_ID per
  line; line i labels ``ILSVRC2012_val_{i:08d}.JPEG``).
"""

from __future__ import annotations

import io
import re
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io
from PIL import Image

TRAIN_TAR = "ILSVRC2012_img_train.tar"
VAL_TAR = "ILSVRC2012_img_val.tar"
DEVKIT = "ILSVRC2012_devkit_t12.tar.gz"
DEVKIT_META = "ILSVRC2012_devkit_t12/data/meta.mat"
DEVKIT_TRUTH = "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt"

#: Real inner WordNet nodes of ILSVRC2012's meta.mat ("entity", "physical entity"); they are
#: written as non-leaf synsets that a correct parser must ignore.
NON_LEAF_WNIDS = ("n00001740", "n00001930")

# A fixed date (ILSVRC2012's release year) keeps the archives byte-identical across runs.
_MTIME = 1_338_000_000
_WNID_RE = re.compile(r"n\d{8}")


def jpeg_bytes(rng: np.random.Generator, size: tuple[int, int] = (80, 60), quality: int = 90) -> bytes:
    """Encode a random RGB image of ``size`` = (width, height) (default 80x60) as JPEG.

    The image is upsampled coarse colour blocks plus noise: it compresses like a photo
    (a few kB), and any two calls give different bytes, so misplaced files are detectable.
    """
    width, height = size
    coarse = rng.integers(0, 256, size=(max(2, height // 8), max(2, width // 8), 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(coarse, "RGB").resize((width, height), Image.BILINEAR), dtype=np.int16)
    noisy = np.clip(smooth + rng.integers(-20, 21, size=smooth.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noisy, "RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def write_jpeg(path: Path, rng: np.random.Generator, size: tuple[int, int] = (80, 60)) -> bytes:
    """Write :func:`jpeg_bytes` to ``path`` (parents created) and return the bytes written."""
    data = jpeg_bytes(rng, size)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


def tar_bytes(files: Mapping[str, bytes] | Iterable[tuple[str, bytes]]) -> bytes:
    """An uncompressed GNU tar holding ``files`` as regular files, in the given order.

    Names are written verbatim, without any checks, so hostile names work too.
    """
    items = files.items() if isinstance(files, Mapping) else files
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in items:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, _MTIME
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _check_wnids(wnids: Sequence[str]) -> list[str]:
    wnids = list(wnids)
    if not wnids or len(set(wnids)) != len(wnids) or not all(_WNID_RE.fullmatch(w) for w in wnids):
        raise ValueError(f"wnids must be unique, non-empty, and look like n01440764; got {wnids}")
    if set(wnids) & set(NON_LEAF_WNIDS):
        raise ValueError(f"{NON_LEAF_WNIDS} are reserved for the fake non-leaf synsets")
    return wnids


def _meta_mat(leaf_ids: Mapping[str, int]) -> bytes:
    """meta.mat bytes in the devkit's structure: leaves by ILSVRC2012_ID, then inner nodes."""
    fields = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children", "wordnet_height", "num_train_images"]
    n_leaves = len(leaf_ids)
    rows: list[tuple[Any, ...]] = []
    for wnid, ilsvrc_id in sorted(leaf_ids.items(), key=lambda item: item[1]):
        # MATLAB stores numbers as double; a leaf's children is an empty 1x0 matrix.
        rows.append((float(ilsvrc_id), wnid, f"words of {wnid}", f"gloss of {wnid}", 0.0, np.zeros((1, 0)), 0.0, 1300.0))
    # Inner nodes: the first is the root (children = the second node), the second parents all leaves.
    root_id, parent_id = n_leaves + 1, n_leaves + 2
    rows.append((float(root_id), NON_LEAF_WNIDS[0], "entity", "root", 1.0, np.array([[float(parent_id)]]), 2.0, 0.0))
    leaves = np.array([sorted(leaf_ids.values())], dtype=float)
    rows.append((float(parent_id), NON_LEAF_WNIDS[1], "physical entity", "inner", float(n_leaves), leaves, 1.0, 0.0))
    synsets = np.empty((len(rows), 1), dtype=[(f, object) for f in fields])
    for i, row in enumerate(rows):
        for field, value in zip(fields, row):
            synsets[i, 0][field] = value
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, {"synsets": synsets})
    return buffer.getvalue()


def make_imagenet_archives(
    root: Path,
    wnids: Sequence[str],
    train_per_class: int = 3,
    val_per_class: int = 2,
    size: tuple[int, int] = (80, 60),
    seed: int = 0,
) -> dict[str, Any]:
    """Write the three official ImageNet downloads, in miniature, into ``root``.

    Classes get shuffled ILSVRC2012_IDs 1..len(wnids) (as in the real devkit, id order is
    not wnid order) and the validation images are shuffled across classes, so code that
    assumes either order fails. Two non-leaf synsets (:data:`NON_LEAF_WNIDS`) are added to
    meta.mat; they own no images.

    Args:
        root: folder to write ``ILSVRC2012_img_train.tar``, ``ILSVRC2012_img_val.tar`` and
            ``ILSVRC2012_devkit_t12.tar.gz`` into (created if needed).
        wnids: the classes, e.g. ``["n01440764", "n01443537"]``.
        train_per_class: default 3; images ``<wnid>_<k>.JPEG``, k = 1.., per class tar.
        val_per_class: default 2; validation images per class.
        size: default (80, 60); image (width, height).
        seed: default 0.

    Returns:
        A dict with
        ``"val_assignment"``: {val file name: wnid}, the ground truth;
        ``"val_bytes"``: {val file name: JPEG bytes};
        ``"train_bytes"``: {wnid: {file name: JPEG bytes}};
        ``"ilsvrc_ids"``: {wnid: ILSVRC2012_ID};
        ``"non_leaf_wnids"``: list of the non-leaf wnids in meta.mat;
        ``"num_train"``, ``"num_val"``: total image counts;
        ``"train_per_class"``, ``"val_per_class"``: the counts asked for.
    """
    wnids = _check_wnids(wnids)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    ids = rng.permutation(len(wnids)) + 1
    ilsvrc_ids = {wnid: int(i) for wnid, i in zip(wnids, ids)}

    train_bytes: dict[str, dict[str, bytes]] = {}
    class_tars: list[tuple[str, bytes]] = []
    for wnid in sorted(wnids):
        images = {f"{wnid}_{k}.JPEG": jpeg_bytes(rng, size) for k in range(1, train_per_class + 1)}
        train_bytes[wnid] = images
        class_tars.append((f"{wnid}.tar", tar_bytes(images)))
    (root / TRAIN_TAR).write_bytes(tar_bytes(class_tars))

    val_classes = [w for w in wnids for _ in range(val_per_class)]
    rng.shuffle(val_classes)
    val_assignment: dict[str, str] = {}
    val_bytes: dict[str, bytes] = {}
    for number, wnid in enumerate(val_classes, start=1):
        name = f"ILSVRC2012_val_{number:08d}.JPEG"
        val_assignment[name] = wnid
        val_bytes[name] = jpeg_bytes(rng, size)
    (root / VAL_TAR).write_bytes(tar_bytes(val_bytes))

    truth = "".join(f"{ilsvrc_ids[w]}\n" for w in val_classes).encode("ascii")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.GNU_FORMAT) as tar:
        for folder in ("ILSVRC2012_devkit_t12", "ILSVRC2012_devkit_t12/data"):
            info = tarfile.TarInfo(folder)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, _MTIME
            tar.addfile(info)
        for name, data in (
            ("ILSVRC2012_devkit_t12/COPYING", b"Fake devkit for tests.\n"),
            (DEVKIT_META, _meta_mat(ilsvrc_ids)),
            (DEVKIT_TRUTH, truth),
        ):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, _MTIME
            tar.addfile(info, io.BytesIO(data))
    (root / DEVKIT).write_bytes(buffer.getvalue())

    return {
        "val_assignment": val_assignment,
        "val_bytes": val_bytes,
        "train_bytes": train_bytes,
        "ilsvrc_ids": ilsvrc_ids,
        "non_leaf_wnids": list(NON_LEAF_WNIDS),
        "num_train": len(wnids) * train_per_class,
        "num_val": len(val_classes),
        "train_per_class": train_per_class,
        "val_per_class": val_per_class,
    }


def make_imagenet_layout(
    root: Path,
    wnids: Sequence[str],
    train_per_class: int = 3,
    val_per_class: int = 2,
    size: tuple[int, int] = (80, 60),
    seed: int = 0,
) -> dict[str, Any]:
    """Write a ready ``root/train/<wnid>/*.JPEG`` and ``root/val/<wnid>/*.JPEG`` layout.

    File names follow the official ones: ``<wnid>_<k>.JPEG`` for training and
    ``ILSVRC2012_val_%08d.JPEG`` (numbers shuffled across classes) for validation.

    Args:
        root: the ImageNet folder (created if needed).
        wnids: the classes.
        train_per_class: default 3.
        val_per_class: default 2; 0 writes no ``val/`` folder at all.
        size: default (80, 60); image (width, height).
        seed: default 0.

    Returns:
        A dict with ``"train"`` and ``"val"``: {wnid: sorted file names}, and
        ``"num_train"``, ``"num_val"``: total image counts.
    """
    wnids = _check_wnids(wnids)
    root = Path(root)
    rng = np.random.default_rng(seed)
    train: dict[str, list[str]] = {}
    for wnid in sorted(wnids):
        train[wnid] = [f"{wnid}_{k}.JPEG" for k in range(1, train_per_class + 1)]
        for name in train[wnid]:
            write_jpeg(root / "train" / wnid / name, rng, size)
    val: dict[str, list[str]] = {wnid: [] for wnid in sorted(wnids)} if val_per_class else {}
    val_classes = [w for w in wnids for _ in range(val_per_class)]
    rng.shuffle(val_classes)
    for number, wnid in enumerate(val_classes, start=1):
        name = f"ILSVRC2012_val_{number:08d}.JPEG"
        write_jpeg(root / "val" / wnid / name, rng, size)
        val[wnid].append(name)
    return {
        "train": train,
        "val": {wnid: sorted(names) for wnid, names in val.items()},
        "num_train": len(wnids) * train_per_class,
        "num_val": len(val_classes),
    }
