"""Small copies of upstream on-disk formats for the tests: every format's writer, and what
they share (cheap sample images, in-memory tars, archive packing).

The writers ``jepa-bench``'s stand-ins also need live in ``jepa_datamodules.bench.standin_writers``
and are re-exported here (CIFAR, STL-10, ImageNet's layout, the Hugging Face parquet shards, the
ILSVRC2012 file names, balanced labels and photo-like images), so each format is written in one
place. The rest are test-only:

* :func:`write_imagenette`, :func:`write_tinyimagenet`: those datasets as their archives unpack;
* :func:`smooth_pixels` / :func:`pattern_jpeg`: smooth random colour blocks (plus noise, as a
  small JPEG): cheap images;
* :func:`tar_bytes`: an uncompressed tar of named byte strings (archives within archives, as
  ImageNet's train tar holds one tar per class), :func:`gzip_bytes`;
* :func:`pack_archive`: a written folder as ``.tar``, ``.tar.gz`` / ``.tgz`` or ``.zip``.

Archives are byte-identical across runs for the same files (fixed mtimes, sorted members).
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from jepa_datamodules.bench.standin_writers import (
    ROW_GROUP_ROWS, balanced_labels, ilsvrc_names, photo_like, texture_bank, write_cifar, write_class_folders,
    write_hf_parquet, write_imagenet_layout, write_stl10,
)
from jepa_datamodules.catalog import DatasetSpec

__all__ = ["ARCHIVE_MTIME", "ROW_GROUP_ROWS", "archive_members", "balanced_labels", "gzip_bytes", "ilsvrc_names",
           "pack_archive", "pattern_jpeg", "photo_like", "smooth_pixels", "tar_bytes", "texture_bank", "write_cifar",
           "write_class_folders", "write_file", "write_hf_parquet", "write_imagenet_layout", "write_imagenette",
           "write_stl10", "write_tinyimagenet"]

# A fixed date (ILSVRC2012's release year) keeps written archives byte-identical across runs.
ARCHIVE_MTIME = 1_338_000_000


# ================================================================== sample images
def smooth_pixels(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """``(height, width, 3)`` uint8 RGB pixels of ``size`` = (width, height): random colour
    blocks of about 8x8 pixels, bilinearly upsampled (smooth, so they compress like a photo)."""
    width, height = size
    coarse = rng.integers(0, 256, size=(max(2, height // 8), max(2, width // 8), 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse, "RGB").resize((width, height), Image.BILINEAR))


def pattern_jpeg(rng: np.random.Generator, size: tuple[int, int] = (80, 60), quality: int = 90) -> bytes:
    """A random RGB JPEG of ``size`` = (width, height) (default 80x60).

    Upsampled coarse colour blocks plus noise: it compresses like a photo (a few kB), and
    any two calls give different bytes, so a misplaced file is detectable.
    """
    smooth = smooth_pixels(rng, size).astype(np.int16)
    noisy = np.clip(smooth + rng.integers(-20, 21, size=smooth.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noisy, "RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


# ================================================================ files and archives
def write_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path``, creating its parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def tar_bytes(files: Mapping[str, bytes] | Iterable[tuple[str, bytes]]) -> bytes:
    """An uncompressed GNU tar holding ``files`` in the given order: a name ending in ``/``
    is a folder (its bytes are ignored), any other a regular file.

    Names are written verbatim, without any checks, so hostile names work too.
    """
    items = files.items() if isinstance(files, Mapping) else files
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in items:
            info = tarfile.TarInfo(name.rstrip("/") if name.endswith("/") else name)
            info.mtime = ARCHIVE_MTIME
            if name.endswith("/"):
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def gzip_bytes(data: bytes) -> bytes:
    """``data`` gzip-compressed with a fixed header time (so archives stay byte-identical)."""
    return gzip.compress(data, mtime=0)


def archive_members(folder: Path) -> list[str]:
    """Every folder and file under ``folder`` as a posix path, each folder before its contents."""
    found = []
    for top, dirs, files in os.walk(folder):
        dirs.sort()
        rel = Path(top).relative_to(folder)
        if rel != Path("."):
            found.append(rel.as_posix() + "/")
        found += [(rel / name).as_posix() for name in sorted(files)]
    return found


def pack_archive(folder: Path, archive: Path, order: Sequence[str] | None = None) -> Path:
    """Pack everything under ``folder`` into ``archive`` (``.zip``, ``.tar``, ``.tar.gz`` or ``.tgz``).

    Member names are relative to ``folder``, folders included (as upstream archives have
    them). ``order`` lists member names (folders end with ``/``) to write in that order
    instead of sorted, e.g. to check that a reader does not rely on archive order.
    """
    folder, archive = Path(folder), Path(archive)
    names = list(order) if order is not None else archive_members(folder)
    archive.parent.mkdir(parents=True, exist_ok=True)
    if archive.suffix == ".zip":
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
            for name in names:
                info = zipfile.ZipInfo(name, date_time=(2012, 5, 26, 0, 0, 0))
                info.external_attr = (0o40755 if name.endswith("/") else 0o100644) << 16
                zf.writestr(info, b"" if name.endswith("/") else (folder / name).read_bytes())
        return archive
    data = tar_bytes((name, b"" if name.endswith("/") else (folder / name).read_bytes()) for name in names)
    archive.write_bytes(gzip_bytes(data) if archive.name.endswith((".tar.gz", ".tgz")) else data)
    return archive


# ================================================================ test-only formats
def write_imagenette(spec: DatasetSpec, folder: Path, labels: Mapping[str, Sequence[str]],
                     jpeg: Callable[[], bytes]) -> dict[str, list[tuple[str, str]]]:
    """Write Imagenette as its ``.tgz`` unpacks, under ``folder / spec.data_root``:
    ``{train,val}/<wnid>/`` with ILSVRC2012 file names (see :func:`ilsvrc_names`) and the
    ``noisy_imagenette.csv`` beside them (header only). Returns the names written."""
    root = Path(folder) / spec.data_root
    names = ilsvrc_names(labels)
    write_class_folders(root, names, jpeg)
    (root / "noisy_imagenette.csv").write_text("path,noisy_labels_0,is_valid\n")
    return names


def write_tinyimagenet(spec: DatasetSpec, folder: Path, wnids: Sequence[str], train_per_class: int,
                       val_labels: Sequence[str], unlabeled: int, jpeg: Callable[[], bytes]) -> dict[str, dict[str, str]]:
    """Write Tiny-ImageNet-200 as its zip unpacks, under ``folder / spec.data_root``.

    ``wnids.txt`` lists ``wnids`` in the order given (upstream's is not sorted) and
    ``words.txt`` names them; ``train/<wnid>/images/<wnid>_<i>.JPEG`` (``train_per_class``
    each) with ``train/<wnid>/<wnid>_boxes.txt``; the flat ``val/images/val_<i>.JPEG``, image
    i labelled ``val_labels[i]`` in ``val/val_annotations.txt`` (file, wnid, box; tab
    separated); ``unlabeled`` images under ``test/images/``. ``jpeg()`` gives the next image's
    bytes. Returns {split: {path under the root: wnid}} (wnid "" for the unlabeled split).
    """
    root = Path(folder) / spec.data_root
    written: dict[str, dict[str, str]] = {"train": {}, "val": {}, "unlabeled": {}}

    def image(rel: str, wnid: str, split: str) -> None:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(jpeg())
        written[split][rel] = wnid

    root.mkdir(parents=True, exist_ok=True)
    (root / "wnids.txt").write_text("".join(f"{wnid}\n" for wnid in wnids))
    (root / "words.txt").write_text("".join(f"{wnid}\twords of {wnid}\n" for wnid in wnids))
    for wnid in wnids:
        for i in range(train_per_class):
            image(f"train/{wnid}/images/{wnid}_{i}.JPEG", wnid, "train")
        (root / "train" / wnid / f"{wnid}_boxes.txt").write_text(
            "".join(f"{wnid}_{i}.JPEG\t0\t0\t63\t63\n" for i in range(train_per_class)))
    for i, wnid in enumerate(val_labels):
        image(f"val/images/val_{i}.JPEG", wnid, "val")
    (root / "val" / "val_annotations.txt").write_text(
        "".join(f"val_{i}.JPEG\t{wnid}\t1\t2\t60\t61\n" for i, wnid in enumerate(val_labels)))
    for i in range(unlabeled):
        image(f"test/images/test_{i}.JPEG", "", "unlabeled")
    return written
