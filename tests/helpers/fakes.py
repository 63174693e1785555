"""Small upstream archives for tests that never touch the internet.

The files inside are written by the formats' writers (``tests/helpers/fake_formats.py``, which
shares those ``jepa-bench``'s stand-ins use) into a scratch folder laid out as the dataset
folder after extraction; :func:`packed` packs the archive's part of it with
``fake_formats.pack_archive`` under the upstream file name. Each builder returns what it
wrote so tests can compare pixels and labels.

CIFAR "python version" (``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz``), STL-10
binary (``stl10_binary.tar.gz``), Imagenette (``imagenette2-320.tgz``, members in reverse
order so that archive order is not label order) and Tiny-ImageNet-200
(``tiny-imagenet-200.zip``, four of the 200 classes).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import yaml

from jepa_datamodules.catalog import DatasetSpec, get_spec
from tests.helpers.fake_formats import (
    archive_members, balanced_labels, pack_archive, pattern_jpeg, write_cifar, write_imagenette, write_stl10,
    write_tinyimagenet,
)
from jepa_datamodules.storage.download import file_md5


@dataclass
class FakeArchive:
    path: Path
    md5: str
    size: int
    splits: dict[str, np.ndarray] = field(default_factory=dict)  # split -> (N, H, W, 3) uint8
    labels: dict[str, np.ndarray] = field(default_factory=dict)  # split -> (N,) int64, as the loader reports them
    written: dict[str, dict[str, str]] = field(default_factory=dict)  # file datasets: split -> {path: wnid}
    folds: list[np.ndarray] = field(default_factory=list)  # STL-10's predefined folds


def packed(spec: DatasetSpec, out_dir: Path, write: Callable[[Path], Any], reverse: bool = False) -> FakeArchive:
    """``write(folder)`` writes the dataset folder in a scratch folder; the archive's part of it
    (``extract_to``) is packed into ``out_dir/<filename>`` (members in reverse order with ``reverse``)."""
    archive_spec = spec.archives[0]
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir) as scratch:
        write(Path(scratch))
        top = Path(scratch) / archive_spec.extract_to
        order = archive_members(top)[::-1] if reverse else None
        archive = pack_archive(top, out_dir / archive_spec.filename, order=order)
    return FakeArchive(archive, file_md5(archive, progress=False), archive.stat().st_size)


def _random_images(rng: np.random.Generator, count: int, side: int) -> np.ndarray:
    return rng.integers(0, 256, (count, side, side, 3), dtype=np.uint8)


def make_cifar(out_dir: Path, kind: str = "cifar10", per_batch: int = 20, test_count: int = 30,
               seed: int = 0) -> FakeArchive:
    """CIFAR-10 (5 train batches of ``per_batch``) or CIFAR-100 (one train file of
    ``5 * per_batch``); every class appears in every split when counts allow."""
    rng = np.random.default_rng(seed)
    spec = get_spec(kind)
    classes = 10 if kind == "cifar10" else 100
    counts = {"train": 5 * per_batch, "test": test_count}
    images = {split: _random_images(rng, count, 32) for split, count in counts.items()}
    labels = {split: balanced_labels(count, classes, rng) for split, count in counts.items()}
    fake = packed(spec, out_dir, lambda folder: write_cifar(spec, folder, images, labels))
    fake.splits, fake.labels = images, labels
    return fake


def make_stl10(out_dir: Path, train: int = 20, test: int = 10, unlabeled: int = 30, seed: int = 0) -> FakeArchive:
    rng = np.random.default_rng(seed)
    spec = get_spec("stl10")
    images = {"train": _random_images(rng, train, 96), "test": _random_images(rng, test, 96),
              "unlabeled": _random_images(rng, unlabeled, 96)}
    labels = {"train": balanced_labels(train, 10, rng), "test": balanced_labels(test, 10, rng)}
    folds = [np.sort(rng.choice(train, size=max(1, train // 2), replace=False)) for _ in range(10)]
    names = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
    fake = packed(spec, out_dir, lambda folder: write_stl10(spec, folder, images, labels, folds, names))
    fake.splits, fake.labels, fake.folds = images, {**labels, "unlabeled": np.full(unlabeled, -1, dtype=np.int64)}, folds
    return fake


# ----------------------------------------- Imagenette (.tgz) and Tiny-ImageNet-200 (.zip)
# Imagenette's ten wnids (as in the upstream archive); Tiny-ImageNet's fake keeps four classes.
IMAGENETTE_WNIDS = ["n01440764", "n02102040", "n02979186", "n03000684", "n03028079",
                    "n03394916", "n03417042", "n03425413", "n03445777", "n03888257"]
TINY_WNIDS = ["n09193705", "n01443537", "n07873807", "n02124075"]  # wnids.txt is not sorted upstream


def make_imagenette(out_dir: Path, seed: int = 0) -> FakeArchive:
    """imagenette2-320.tgz holding imagenette2-320/{train,val}/<wnid>/*.JPEG (and its noisy-labels
    csv); ``.written`` is {split: {path under the split: wnid}}."""
    rng = np.random.default_rng(seed)
    spec = get_spec("imagenette")
    labels = {"train": [w for w in IMAGENETTE_WNIDS for _ in range(2)], "val": list(rng.permutation(IMAGENETTE_WNIDS))}
    names: dict[str, list[tuple[str, str]]] = {}

    def write(folder: Path) -> None:
        names.update(write_imagenette(spec, folder, labels, lambda: pattern_jpeg(rng, (48, 32))))

    fake = packed(spec, out_dir, write, reverse=True)
    fake.written = {split: {f"{wnid}/{name}": wnid for wnid, name in items} for split, items in names.items()}
    return fake


def make_tinyimagenet(out_dir: Path, seed: int = 0) -> FakeArchive:
    """tiny-imagenet-200.zip in the CS231n layout; ``.written`` is {split: {relpath: wnid}}
    (relpaths under tiny-imagenet-200/, wnid "" for the unlabeled test images)."""
    rng = np.random.default_rng(seed)
    spec = get_spec("tinyimagenet")
    val_labels = [TINY_WNIDS[(3 * i) % len(TINY_WNIDS)] for i in range(8)]  # every class, not in label order
    written: dict[str, dict[str, str]] = {}

    def write(folder: Path) -> None:
        written.update(write_tinyimagenet(spec, folder, TINY_WNIDS, 3, val_labels, 5, lambda: pattern_jpeg(rng, (64, 64))))

    fake = packed(spec, out_dir, write)
    fake.written = written
    return fake


def catalog_override(path: Path, entries: dict[str, dict]) -> Path:
    """Write a ``$JEPA_CATALOG`` file: dataset name -> spec fields to replace."""
    path.write_text(yaml.safe_dump(entries))
    return path


def archive_override(name: str, fake: FakeArchive, splits: dict[str, int]) -> dict:
    # No upstream URLs: a test must never reach past the loopback mirror to the internet.
    return {name: {"archives": [{"filename": fake.path.name, "md5": fake.md5, "size": fake.size, "urls": []}],
                   "splits": splits}}
