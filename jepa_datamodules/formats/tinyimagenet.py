"""Tiny-ImageNet-200's on-disk layout (the CS231n zip, unpacked) -> a file source.

::

    tiny-imagenet-200/
      wnids.txt                     the 200 class wnids, one a line (labels: sorted order)
      train/<wnid>/images/*.JPEG    500 images per class (train/<wnid>/<wnid>_boxes.txt unused)
      val/images/*.JPEG             10,000 images in one flat folder ...
      val/val_annotations.txt       ... labelled here: file <TAB> wnid <TAB> x0 y0 x1 y1
      test/images/*.JPEG            10,000 images without labels (the "unlabeled" split, -1)

Items are sorted (by class then file name for train, by file name elsewhere), so an index
means the same image on every machine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..catalog import DatasetSpec
from ..choices import check_choice
from ..errors import FormatError, MissingFilesError
from .base import FileSource
from .images import is_image_name

SPLITS = ("train", "val", "unlabeled")


def _images(folder: Path) -> list[str]:
    if not folder.is_dir():
        raise MissingFilesError(f"{folder} does not exist; Tiny-ImageNet-200 keeps its images there.", path=folder)
    return sorted(p.name for p in folder.iterdir() if is_image_name(p.name))


def _text(path: Path) -> str:
    if not path.is_file():
        raise MissingFilesError(f"{path} does not exist; Tiny-ImageNet-200 keeps its labels there.", path=path)
    return path.read_text()


def read_classes(root: Path) -> list[str]:
    """The class wnids of ``root/wnids.txt`` in sorted order (label i = the i-th)."""
    wnids = sorted({line.strip() for line in _text(root / "wnids.txt").splitlines() if line.strip()})
    if not wnids:
        raise FormatError(f"{root / 'wnids.txt'} lists no class; it should hold one wnid a line.", path=root / "wnids.txt")
    return wnids


def class_names(spec: DatasetSpec, folder: Path) -> list[str]:
    """The wnids of ``wnids.txt``, sorted: label order."""
    return read_classes(Path(folder) / spec.data_root)


def open_split(spec: DatasetSpec, folder: Path, split: str) -> FileSource:
    """One split of Tiny-ImageNet-200 under ``folder`` (``spec.data_root`` holds ``wnids.txt``)."""
    root = Path(folder) / spec.data_root
    check_choice("split", split, SPLITS)
    if split == "unlabeled":
        names = _images(root / "test" / "images")
        return FileSource(root, [f"test/images/{n}" for n in names], np.full(len(names), -1, dtype=np.int64))
    classes = read_classes(root)
    label = {wnid: i for i, wnid in enumerate(classes)}
    if split == "train":
        paths: list[str] = []
        labels: list[int] = []
        for wnid in classes:
            names = _images(root / "train" / wnid / "images")
            paths += [f"train/{wnid}/images/{n}" for n in names]
            labels += [label[wnid]] * len(names)
        return FileSource(root, paths, np.array(labels, dtype=np.int64))
    annotations = root / "val" / "val_annotations.txt"
    by_file: dict[str, int] = {}
    for number, line in enumerate(_text(annotations).splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in label:
            raise FormatError(f"Line {number} of {annotations} is {line[:80]!r}; each line must be "
                              "file <TAB> wnid <TAB> box, with a wnid listed in wnids.txt.", path=annotations)
        by_file[fields[0]] = label[fields[1]]
    names = _images(root / "val" / "images")
    unlabelled = [n for n in names if n not in by_file]
    if unlabelled:
        raise FormatError(f"{len(unlabelled)} image(s) of {root / 'val' / 'images'} (e.g. {unlabelled[0]}) have no line in "
                          f"{annotations}; every val image must be listed there.", path=annotations)
    source = FileSource(root, [f"val/images/{n}" for n in names], np.array([by_file[n] for n in names], dtype=np.int64))
    source.label_files = [annotations]  # type: ignore[attr-defined]
    return source
