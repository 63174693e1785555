"""The dataset contract's fakes: one tiny copy per catalog spec, in its exact upstream format.

torchvision's ``DatasetTestCase`` asks each dataset class for ``inject_fake_data``; here the
fake is chosen by what the spec says it is (:func:`fake_kind`: its ``reader``, its
``handler``, a ``parent`` it is an index over, the parquet release in ``options``), and
written at the spec's layout with tiny counts. The counts (and, where a format lets the fake
keep fewer classes, the class count) reach the package through ``$JEPA_CATALOG``, the same
override a mirror operator uses; auto-download archives are served by the loopback server.

A spec whose kind has no writer in :data:`WRITERS` makes the contract fail with a sentence
saying so: a new format cannot skip the contract. A new dataset of an existing format gets
it by being in the catalog.

The format writers come from ``tests/helpers/fake_formats.py`` (which shares those
``jepa-bench``'s stand-ins use).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import jepa_datamodules
from jepa_datamodules import JEPADataModule
from jepa_datamodules.catalog import SPECS, DatasetSpec, dataset_names
from jepa_datamodules.formats.hfparquet import imagenet1k_wnids
from jepa_datamodules.storage.download import file_md5
from tests.helpers.fake_formats import (
    balanced_labels, pattern_jpeg, write_cifar, write_imagenette, write_stl10, write_tinyimagenet,
)
from tests.helpers.fake_imagenet import make_imagenet_archives
from tests.helpers.fake_ownimages import make_labelled_folder, write_hf_parquet
from tests.helpers.fakes import archive_override, packed

#: What every contract DataModule shares: small views (an 8x8 patch grid), small batches, no workers.
TINY = dict(image_size=32, patch_size=4, batch_size=4, num_workers=0, progress=False)
#: Classes a fake keeps where its format lets it keep fewer than the spec's (through ``$JEPA_CATALOG``).
FEW_CLASSES = 4
#: A side that makes a cheap JPEG (width, height).
JPEG_SIZE = (40, 32)


@dataclass(frozen=True)
class Case:
    """One dataset the contract runs on, read from one of its sources (None: its own files;
    ``"parquet"``: the Hugging Face release in ``options["parquet"]``, its own or its parent's)."""

    name: str
    source: str | None = None

    @property
    def id(self) -> str:
        return self.name if self.source is None else f"{self.name}-{self.source}"

    @property
    def spec(self) -> DatasetSpec:
        return SPECS[self.name]


@dataclass
class Fake:
    """What a writer made: where, what the DataModule must report, and how to reach it."""

    data_dir: Path
    splits: dict[str, int]  # images per split the DataModule must report
    num_classes: int
    catalog: dict[str, dict] = field(default_factory=dict)  # $JEPA_CATALOG entries (counts, checksums)
    options: dict[str, Any] = field(default_factory=dict)  # DataModule arguments beyond TINY and data_dir
    #: Class name of each item per split ("" unlabeled), where an index over it needs them.
    written: dict[str, list[str]] = field(default_factory=dict)
    served: list[str] = field(default_factory=list)  # server paths prepare_data must fetch
    unlabeled: dict[str, int] = field(default_factory=dict)  # split -> items labelled -1 (no label)
    #: True where an undecodable file is skipped and listed, not a failure (your own folder).
    skips_unreadable: bool = False


@dataclass
class Upstream:
    """Where writers put what a user would download (``root``, a folder of the served folder,
    at ``url``) or place by hand (``data_dir``)."""

    root: Path
    url: str
    data_dir: Path
    rng: np.random.Generator
    wnids: list[str] | None = None  # the classes to write, where an index over this dataset needs them


def contract_cases() -> list[Case]:
    """Every dataset of the catalog, and each parquet source it can be read from. A bundle
    (``members``: ``data=all-auto``) is prepare-only, with no splits of its own: left out."""
    cases = []
    for name in dataset_names():
        spec = SPECS[name]
        if getattr(spec, "members", ()):
            continue
        cases.append(Case(name))
        if "parquet" in spec.options or (spec.parent and "parquet" in SPECS[spec.parent].options):
            cases.append(Case(name, "parquet"))
    return cases


def fake_kind(spec: DatasetSpec, source: str | None) -> str:
    """The key of :data:`WRITERS` that writes ``spec``'s fake."""
    if spec.parent:
        return "subset"
    if source == "parquet":
        return "hfparquet"
    return spec.handler or spec.reader


def datamodule_class(name: str) -> type[JEPADataModule]:
    """The public DataModule of dataset ``name``; a plain one over its spec where it has none."""
    for public in jepa_datamodules.__all__:
        cls = getattr(jepa_datamodules, public)
        if inspect.isclass(cls) and issubclass(cls, JEPADataModule) and cls.spec_name == name:
            return cls
    return type(f"{name}DataModule", (JEPADataModule,), {"spec_name": name})


def build_datamodule(case: Case, fake: Fake, data_dir: Path | None = None, **overrides: Any) -> JEPADataModule:
    """``case``'s DataModule over ``fake`` (or over a copy of it in ``data_dir``), with :data:`TINY` settings."""
    return datamodule_class(case.name)(data_dir=data_dir or fake.data_dir, **{**TINY, **fake.options, **overrides})


def _wnids(count: int) -> list[str]:
    """``count`` WordNet-id-shaped class names, listed unsorted (upstream lists are not sorted)."""
    return [f"n{1440764 + 97 * i:08d}" for i in range(count)][::-1]


def _classes(spec: DatasetSpec) -> int:
    return min(spec.num_classes, FEW_CLASSES)


def _catalog(spec: DatasetSpec, splits: dict[str, int], classes: int, **more: Any) -> dict[str, dict]:
    return {spec.name: {"splits": splits, "num_classes": classes, **more}}


def _served(spec: DatasetSpec, up: Upstream, write: Callable[[Path], Any], splits: dict[str, int], classes: int,
            reverse: bool = False) -> Fake:
    """Pack what ``write(folder)`` writes as ``spec``'s archive under the served root."""
    archive = packed(spec, up.root, write, reverse=reverse)
    catalog = archive_override(spec.name, archive, splits)
    catalog[spec.name]["num_classes"] = classes
    # The server serves root's parent: this dataset's archives sit in their own folder on it.
    served = [f"/{up.root.name}/{archive.path.name}"]
    return Fake(up.data_dir, splits, classes, catalog, {"mirrors": [up.url]}, served=served)


# ------------------------------------------------------------------------- the writers
def _cifar(spec: DatasetSpec, up: Upstream) -> Fake:
    """CIFAR's python pickles (``write_cifar``): two images per class in train, one in test."""
    classes = _classes(spec)
    counts = {"train": 2 * classes, "test": classes}
    images = {split: up.rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8) for split, n in counts.items()}
    labels = {split: balanced_labels(n, classes, up.rng) for split, n in counts.items()}
    return _served(spec, up, lambda folder: write_cifar(spec.replace(num_classes=classes), folder, images, labels),
                   counts, classes)


def _stl10(spec: DatasetSpec, up: Upstream) -> Fake:
    """STL-10's binaries (``write_stl10``): every class once in train and test, a few unlabeled."""
    classes, side = spec.num_classes, spec.resolution or 96
    counts = {"train": classes, "test": classes, "unlabeled": 4}
    images = {split: up.rng.integers(0, 256, (n, side, side, 3), dtype=np.uint8) for split, n in counts.items()}
    labels = {split: balanced_labels(counts[split], classes, up.rng) for split in ("train", "test")}
    folds = [np.sort(up.rng.choice(classes, size=classes // 2, replace=False)) for _ in range(spec.options["folds"])]
    splits = {"train+unlabeled": counts["train"] + counts["unlabeled"], **counts}
    fake = _served(spec, up, lambda folder: write_stl10(spec, folder, images, labels, folds), splits, classes)
    fake.unlabeled = {"unlabeled": counts["unlabeled"], "train+unlabeled": counts["unlabeled"]}
    return fake


def _class_folders(spec: DatasetSpec, up: Upstream) -> Fake:
    """An ImageNet-like archive of ``{train,val}/<wnid>/`` class folders (``write_imagenette``),
    members in reverse order so that archive order is not label order."""
    wnids = _wnids(_classes(spec))
    labels = {"train": wnids * 2, "val": list(up.rng.permutation(wnids))}
    splits = {split: len(items) for split, items in labels.items()}

    def write(folder: Path) -> None:
        write_imagenette(spec, folder, labels, lambda: pattern_jpeg(up.rng, JPEG_SIZE))

    return _served(spec, up, write, splits, len(wnids), reverse=True)


def _tinyimagenet(spec: DatasetSpec, up: Upstream) -> Fake:
    """Tiny-ImageNet's zip (``write_tinyimagenet``): two train images per class, every class in val."""
    wnids = _wnids(_classes(spec))
    val = list(up.rng.permutation(wnids))
    splits = {"train": 2 * len(wnids), "val": len(val), "unlabeled": 3}
    side = spec.resolution or 64

    def write(folder: Path) -> None:
        write_tinyimagenet(spec, folder, wnids, 2, val, splits["unlabeled"], lambda: pattern_jpeg(up.rng, (side, side)))

    fake = _served(spec, up, write, splits, len(wnids))
    fake.unlabeled = {"unlabeled": splits["unlabeled"]}
    return fake


def _imagenet(spec: DatasetSpec, up: Upstream) -> Fake:
    """The three official ILSVRC2012 files, placed by hand in the dataset folder (``make_imagenet_archives``)."""
    wnids = sorted(up.wnids or _wnids(FEW_CLASSES))
    folder = up.data_dir / spec.name
    info = make_imagenet_archives(folder, wnids, train_per_class=2, val_per_class=1, size=JPEG_SIZE,
                                  seed=int(up.rng.integers(1 << 16)))
    archives = [{"filename": a.filename, "md5": file_md5(folder / a.filename, progress=False),
                 "size": (folder / a.filename).stat().st_size} for a in spec.archives]
    splits = {"train": info["num_train"], "val": info["num_val"]}
    written = {"train": sorted(wnids * 2), "val": list(info["val_assignment"].values())}
    return Fake(up.data_dir, splits, len(wnids), _catalog(spec, splits, len(wnids), archives=archives),
                {"source": "folders"}, written)


def _hfparquet(spec: DatasetSpec, up: Upstream) -> Fake:
    """The Hugging Face release's shards (``write_hf_parquet``), read in place. Its label ids are
    positions in the packaged 1,000-class list, so the fake keeps every class: one row each in
    train and val, a few unlabelled test rows."""
    names = imagenet1k_wnids()
    facts = spec.options["parquet"]
    rows = {"train": len(names), "val": len(names), "test": 3}
    shards = {"train": 2, "val": 1, "test": 1}
    labels = {split: np.arange(len(names)) for split in ("train", "val")}
    written = write_hf_parquet(up.data_dir / spec.name, rows, shards, labels, seed=int(up.rng.integers(1 << 16)))
    catalog = _catalog(spec, rows, len(names), options={**spec.options, "parquet": {**facts, "shards": shards, "splits": rows}})
    return Fake(up.data_dir, rows, len(names), catalog, {"source": "parquet"},
                {split: [names[label] if label >= 0 else "" for label, *_ in items] for split, items in written.items()},
                unlabeled={"test": rows["test"]})


def _ownfolder(spec: DatasetSpec, up: Upstream) -> Fake:
    """Your own ``train/<class>/`` + ``val/<class>/`` folder at its default place, ``<data_dir>/<name>``,
    as users make them (``make_labelled_folder``: mixed formats and modes, one truncated JPEG,
    hidden files and a non-image, all of which the reader handles)."""
    made = make_labelled_folder(up.data_dir / spec.name, seed=int(up.rng.integers(1 << 16)))
    splits = {"train": len(made["train"]) + len(made["corrupt"]), "val": len(made["val"])}
    labels = {label for label, _ in made["train"].values()}
    return Fake(up.data_dir, splits, len(labels), skips_unreadable=True)


def _synthetic(spec: DatasetSpec, up: Upstream) -> Fake:
    """Generated by ``prepare_data`` from its own count arguments: every class in both splits."""
    classes = _classes(spec)
    splits = {"train": 4 * classes, "test": 2 * classes}
    return Fake(up.data_dir, splits, classes,
                options={"num_train": splits["train"], "num_test": splits["test"], "num_classes": classes})


def _subset(spec: DatasetSpec, up: Upstream, source: str | None = None) -> Fake:
    """A class index over its parent (ImageNet-100 over ImageNet-1k): the parent's fake, holding
    the subset's classes (its default class list) and two more that the index must leave out."""
    parent = SPECS[spec.parent]
    wnids = datamodule_class(spec.name)(data_dir=up.data_dir, **TINY).classes
    others = [w for w in imagenet1k_wnids() if w not in wnids][:2]
    up.wnids = list(wnids) + others
    base = WRITERS[fake_kind(parent, source)](parent, up)
    splits = {split: sum(name in set(wnids) for name in names) for split, names in base.written.items()
              if split in spec.splits}
    return Fake(base.data_dir, splits, len(wnids), base.catalog, base.options, served=base.served)


#: Fake writers by :func:`fake_kind`; each takes (spec, upstream) and returns the :class:`Fake`.
WRITERS: dict[str, Callable[..., Fake]] = {
    "synthetic": _synthetic,
    "cifar": _cifar,
    "stl10": _stl10,
    "imagefolder": _class_folders,
    "tinyimagenet": _tinyimagenet,
    "imagenet": _imagenet,
    "hfparquet": _hfparquet,
    "ownfolder": _ownfolder,
    "subset": _subset,
}


def missing_writer(case: Case) -> str | None:
    """None when :data:`WRITERS` can write ``case``'s fake, else the sentence that says what is needed."""
    kinds = [fake_kind(case.spec, case.source)]
    if case.spec.parent:
        kinds.append(fake_kind(SPECS[case.spec.parent], case.source))
    missing = [kind for kind in kinds if kind not in WRITERS]
    if not missing:
        return None
    return (f"{case.id}: no fake writer for format {missing[0]!r}; the dataset contract needs one: add a writer of "
            f"that format's exact upstream layout to WRITERS in tests/helpers/contract.py.")


def write_fake(case: Case, up: Upstream) -> Fake:
    """Write ``case``'s fake (see :func:`missing_writer` first)."""
    kind = fake_kind(case.spec, case.source)
    if kind == "subset":
        return _subset(case.spec, up, case.source)
    return WRITERS[kind](case.spec, up)
