"""What ``jepa-bench`` measures: the real dataset when it is prepared, else a generated stand-in.

A stand-in is written in the dataset's own on-disk format (CIFAR pickles, STL-10 binaries,
an ImageNet ``train/<wnid>/`` JPEG folder with ImageNet-like sizes, or the Hugging Face
parquet shards; writers in ``standin_writers.py``), cached under
``<data_dir>/bench-standins/<name>-<train images>-v<version>/``. Its image counts differ
from the catalog's, so its DataModules are built with those counts as a ``$JEPA_CATALOG``
override: a ``catalog.yaml`` beside the stand-in (the user's own ``$JEPA_CATALOG`` entries
kept), which the catalog announces when it applies it; every other check of
``prepare_data`` (files, classes, decoding) runs unchanged.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import shutil
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from omegaconf import DictConfig, OmegaConf

from ..catalog import CATALOG_ENV, DatasetSpec, get_spec
from ..errors import ConfigError
from ..notices import Notice
from ..progress import progress_bar
from ..storage.files import atomic_write_text, staging_folder
from .standin_writers import (balanced_labels, photo_like, texture_bank, write_cifar, write_hf_parquet,
                              write_imagenet_layout, write_stl10)

# Which stand-ins exist: the dataset name -> the writer of its on-disk format.
STANDIN_KINDS = ("cifar10", "cifar100", "stl10", "imagenet")
# Bumped whenever a writer's output changes, so an old cached stand-in is not reused.
_STANDIN_VERSION = 2
# A stand-in holds enough training images that one epoch covers the first batch, the
# warm-up and the timed batches (no epoch boundary, hence no pipeline drain, inside the
# timed window), and at least these (a few seconds of writing at most).
_STANDIN_MIN_TRAIN = {"cifar10": 5000, "cifar100": 5000, "stl10": 2000, "imagenet": 320}
# ImageNet-1k's most common sizes (width, height): 500x375 landscape dominates, then
# portrait and 500x333 (3:2) and squares; weights are round figures, not measured shares.
_IMAGENET_SIZES = ((500, 375), (375, 500), (500, 333), (333, 500), (500, 500))
_IMAGENET_SIZE_WEIGHTS = (0.5, 0.15, 0.15, 0.1, 0.1)
_IMAGENET_STANDIN_CLASSES = 10
# The parquet stand-in: at most this many rows per shard (the release's train shards hold
# ~4,360: 1,281,167 rows in 294 shards); row groups of 100 rows, as the release's writer.
PARQUET_SHARD_ROWS = 1000
# Quality 90 with 4:2:0 chroma subsampling (Pillow's default) gives ~105 KB for a 500x375
# stand-in image; ImageNet-1k's train JPEGs average ~110 KB (138 GB / 1.28 M files).
_JPEG_QUALITY = 90
#: The catalog override written beside each stand-in (see the module docstring).
CATALOG_FILE = "catalog.yaml"


# ================================================================ choosing the data
def build_bench_datamodule(cfg: DictConfig, settings: dict[str, Any], **arguments: Any) -> tuple[Any, dict[str, Any]]:
    """The DataModule to measure and a description of its data (real, or which stand-in).

    Real data when ``settings["synthetic_like"]`` is null and the dataset is already verified
    on disk (or is the synthetic dataset, which ``prepare_data`` generates); otherwise a
    stand-in of ``settings["standin_images"]`` [None: enough for one epoch of the bench]
    training images, written under ``<data_dir>/bench-standins``. ``arguments`` go to the
    DataModule's constructor on top of ``cfg.data``. The description is what ``bench.json``
    records; :func:`bench_datamodule` builds more DataModules on the same data from it.
    """
    import hydra

    from ..preparation import is_prepared

    dm = hydra.utils.instantiate(cfg.data, **arguments)
    name = dm.spec.name
    kind = settings["synthetic_like"]
    if kind is not None and kind != name:
        raise ConfigError(f"bench.synthetic_like={kind} does not match data={name}; a stand-in imitates the dataset "
                          f"being benchmarked, so use data={kind} bench.synthetic_like={kind}.")
    if kind is None and (name == "synthetic" or is_prepared(dm.data)):
        return dm, {"kind": "real", "folder": str(dm.folder)}
    if name not in STANDIN_KINDS:
        raise ConfigError(f"{name} is not prepared at {dm.folder} and has no stand-in (stand-ins exist for "
                          f"{', '.join(STANDIN_KINDS)}); run `jepa-prepare data={name}` first.")
    if kind is None:
        warnings.warn(Notice(f"{dm.spec.title} is not prepared at {dm.folder}; benchmarking a generated stand-in in its "
                             f"format (run `jepa-prepare data={name}` first to measure the real data)."), stacklevel=2)
    batch_size = dm.per_device_batch_size()
    needed = (1 + settings["warmup"] + settings["batches"]) * batch_size
    train = settings["standin_images"] or max(_STANDIN_MIN_TRAIN[name], needed)
    layout = "-parquet" if dm.spec.reader == "hfparquet" else ""  # data.source=parquet: the Hugging Face shards
    root = Path(cfg.data.data_dir).expanduser() / "bench-standins" / f"{name}{layout}-{train}-v{_STANDIN_VERSION}"
    counts = standin_counts(dm.spec, train)
    catalog = write_catalog(root / CATALOG_FILE, name, catalog_changes(get_spec(name), counts))
    data = {"kind": "stand-in", "data_dir": str(root), "catalog": str(catalog)}
    standin = bench_datamodule(cfg, data, **arguments)
    write_standin(standin.spec, standin.folder, train, seed=int(cfg.seed))
    data["folder"] = str(standin.folder)
    data["catalog_override"] = {"splits": {split: counts[split] for split in standin.spec.splits},
                                "num_classes": counts.get("num_classes", standin.spec.num_classes)}
    return standin, data


def bench_datamodule(cfg: DictConfig, data: dict[str, Any], data_dir: str | Path | None = None, **arguments: Any) -> Any:
    """Another DataModule on the data :func:`build_bench_datamodule` described in ``data``,
    with ``arguments`` for its constructor; a stand-in's is built under its catalog override,
    in ``data_dir`` [None: the stand-in's own]."""
    import hydra

    if data["kind"] == "real":
        return hydra.utils.instantiate(cfg.data, **arguments)
    with catalog_override(data["catalog"]):
        return hydra.utils.instantiate(cfg.data, data_dir=str(data_dir or data["data_dir"]), **arguments)


# ================================================================ the catalog override
def catalog_changes(spec: DatasetSpec, counts: dict[str, Any]) -> dict[str, Any]:
    """The spec fields a stand-in with ``counts`` (:func:`standin_counts`) replaces in the
    catalog's ``spec``: its split sizes and class count, and for ImageNet the parquet
    release's facts (splits and shard counts) too. Checksums, files and decoding checks stay."""
    changes: dict[str, Any] = {"splits": {split: counts[split] for split in spec.splits}}
    if "num_classes" in counts:
        changes["num_classes"] = counts["num_classes"]
    if "shards" in counts:  # the shard counts the verification expects are the stand-in's too
        facts = spec.options["parquet"]
        parquet = {**facts, "splits": {split: counts[split] for split in facts["splits"]}, "shards": counts["shards"]}
        changes["options"] = {**spec.options, "parquet": parquet}
    return changes


def write_catalog(path: Path, name: str, changes: dict[str, Any]) -> Path:
    """Write a ``$JEPA_CATALOG`` file at ``path``: the user's own entries (the file
    ``$JEPA_CATALOG`` names now, if any) with ``changes`` over those of dataset ``name``."""
    user = os.environ.get(CATALOG_ENV)
    entries = OmegaConf.to_container(OmegaConf.load(user), resolve=True) if user else {}
    entries = dict(entries or {})
    entries[name] = {**(entries.get(name) or {}), **changes}
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, OmegaConf.to_yaml(OmegaConf.create(entries)))


@contextlib.contextmanager
def catalog_override(path: str | Path) -> Iterator[None]:
    """``$JEPA_CATALOG`` names ``path`` while DataModules are built inside (the value before is restored)."""
    before = os.environ.get(CATALOG_ENV)
    os.environ[CATALOG_ENV] = str(path)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(CATALOG_ENV, None)
        else:
            os.environ[CATALOG_ENV] = before


# ================================================================ writing a stand-in
def standin_counts(spec: DatasetSpec, train_images: int) -> dict[str, Any]:
    """The stand-in's image counts per split for ``train_images`` pre-training images (the other
    splits are sized from it), its class count where it differs from the catalog's, and for
    ImageNet the parquet release's test split (one image per class) and shard counts."""
    if spec.reader == "cifar":
        # Every class in every split (the verifier counts classes), and a whole number per batch file.
        per_file = len(spec.options["train_files"])
        classes = spec.options.get("num_classes", {}).get("fine", spec.num_classes)
        train = max(train_images, classes * per_file)
        train = math.ceil(train / per_file) * per_file
        return {"train": train, "test": max(classes, min(10_000, train // 5))}
    if spec.reader == "stl10":
        # Real STL-10 has 20 unlabeled images per labeled one (100,000 / 5,000).
        labeled = max(spec.num_classes, min(5000, train_images // 21))
        unlabeled = max(1, train_images - labeled)
        return {"train": labeled, "unlabeled": unlabeled, "train+unlabeled": labeled + unlabeled,
                "test": max(spec.num_classes, min(8000, labeled * 8 // 5))}  # real: 8,000 test per 5,000 train
    classes = _IMAGENET_STANDIN_CLASSES
    train = max(train_images, classes)
    counts: dict[str, Any] = {"train": train, "val": max(classes, train // 8), "num_classes": classes, "test": classes}
    counts["shards"] = {split: math.ceil(counts[split] / PARQUET_SHARD_ROWS) for split in ("train", "val", "test")}
    return counts


def write_standin(spec: DatasetSpec, folder: Path, train_images: int, seed: int = 0) -> dict[str, Any]:
    """Write a stand-in for ``spec`` into ``folder`` (once; reused while it exists); returns its counts.

    The folder appears complete or not at all (written beside it, then renamed).
    ``train_images`` is the pre-training split's size; other splits are sized from it.
    """
    counts = standin_counts(spec, train_images)
    folder = Path(folder)
    if folder.is_dir():
        return counts
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_folder(folder)  # not mkdtemp: its 0700 would stick to the stand-in
    try:
        rng = np.random.default_rng(seed)
        writer = {"cifar": _write_cifar, "stl10": _write_stl10, "imagefolder": _write_imagenet,
                  "hfparquet": _write_imagenet_parquet}[spec.reader]
        writer(spec, staging, counts, rng)
        os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return counts


def _shapes(labels: np.ndarray, side: int, rng: np.random.Generator) -> np.ndarray:
    """Images with spatial structure (the synthetic dataset's shapes), in chunks to bound memory."""
    from ..formats.synthetic import CLASS_NAMES, render

    kinds = labels % len(CLASS_NAMES)
    chunk = max(1, 2_000_000 // (side * side))  # render holds float64 planes: ~50 MB per chunk
    return np.concatenate([render(kinds[i:i + chunk], side, rng) for i in range(0, len(kinds), chunk)])


def _write_cifar(spec: DatasetSpec, folder: Path, counts: dict[str, Any], rng: np.random.Generator) -> None:
    """CIFAR's pickled batches, images of shapes."""
    fine_classes = spec.options.get("num_classes", {}).get("fine", spec.num_classes)
    labels = {split: balanced_labels(counts[split], fine_classes, rng) for split in ("train", "test")}
    write_cifar(spec, folder, {split: _shapes(values, 32, rng) for split, values in labels.items()}, labels)


def _write_stl10(spec: DatasetSpec, folder: Path, counts: dict[str, Any], rng: np.random.Generator) -> None:
    """STL-10's binaries, images of shapes written in chunks of 2,000, so a full-size
    unlabeled split never sits in memory."""
    labels = {split: balanced_labels(counts[split], spec.num_classes, rng) for split in ("train", "test", "unlabeled")}

    def chunks(values: np.ndarray) -> Iterator[np.ndarray]:
        for start in range(0, len(values), 2000):
            yield _shapes(values[start:start + 2000], 96, rng)

    train = counts["train"]
    folds = [np.sort(rng.choice(train, size=max(1, train // 5), replace=False)) for _ in range(10)]
    write_stl10(spec, folder, {split: chunks(values) for split, values in labels.items()},
                {"train": labels["train"], "test": labels["test"]}, folds)


def _photo_jpeg(rng: np.random.Generator, bank: list[np.ndarray], bar: Any) -> bytes:
    """A photo-like JPEG of an ImageNet-like size, counted on ``bar``."""
    width, height = _IMAGENET_SIZES[rng.choice(len(_IMAGENET_SIZES), p=_IMAGENET_SIZE_WEIGHTS)]
    buffer = io.BytesIO()
    photo_like(rng, bank, width, height).save(buffer, format="JPEG", quality=_JPEG_QUALITY)
    bar.update()
    return buffer.getvalue()


def _write_imagenet(spec: DatasetSpec, folder: Path, counts: dict[str, Any], rng: np.random.Generator) -> None:
    """The prepared ``train/<wnid>/`` + ``val/<wnid>/`` layout of photo-like JPEGs with
    ImageNet-like sizes, in the first classes of the packaged ImageNet-100 list."""
    from ..formats.imagenet import load_class_list

    wnids = load_class_list()[:counts["num_classes"]]
    labels = {split: [wnids[i] for i in np.sort(balanced_labels(counts[split], len(wnids), rng))] for split in ("train", "val")}
    bank = texture_bank(rng)
    with progress_bar(counts["train"] + counts["val"], "writing ImageNet stand-in", unit="images") as bar:
        write_imagenet_layout(folder, labels, lambda: _photo_jpeg(rng, bank, bar))


def _write_imagenet_parquet(spec: DatasetSpec, folder: Path, counts: dict[str, Any], rng: np.random.Generator) -> None:
    """The Hugging Face release's shards of photo-like JPEGs, at most 1,000 rows a shard,
    labels shuffled across shards."""
    labels = {split: (np.full(counts[split], -1) if split == "test" else balanced_labels(counts[split], counts["num_classes"], rng))
              for split in ("train", "val", "test")}
    bank = texture_bank(rng)
    with progress_bar(sum(map(len, labels.values())), "writing ImageNet parquet stand-in", unit="images") as bar:
        write_hf_parquet(spec, folder, labels, counts["shards"], lambda: _photo_jpeg(rng, bank, bar))
