"""One spec per dataset: where it comes from, what a complete copy holds, how to read it.

Datasets differ in data, not in code: every DataModule, the downloader, the verifier and
the ``jepa-datasets`` table read these specs. Adding a dataset means one spec here and
one YAML in ``conf/data``.

Overrides: ``$JEPA_CATALOG`` may name a YAML file whose top-level keys are dataset names
and whose values replace spec fields (archive checksums, split sizes, ...). It exists for
mirrors that serve re-packed archives and for the test-suite's small fakes; every use is
announced (a :class:`~jepa_datamodules.notices.Notice`, once per file and dataset) so a run never
silently trusts other checksums.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .choices import check_choice, choice_message
from .errors import ConfigError
from .notices import Notice

CATALOG_ENV = "JEPA_CATALOG"

# Channel statistics. CIFAR figures are the usual per-channel mean/std of the training
# images (as used by solo-learn and lightning-bolts); ImageNet's are torchvision's.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
STL10_MEAN = (0.4467, 0.4398, 0.4066)
STL10_STD = (0.2603, 0.2566, 0.2713)


@dataclass(frozen=True)
class ArchiveSpec:
    """One file fetched from upstream (or placed by hand for manual datasets).

    ``size`` and ``extracted_size`` are bytes; they drive the free-space check. A download
    is also checked against ``size`` unless ``size_known`` is False (the size is then an
    estimate, used for the free-space check only; the md5 still decides).
    ``extract_to`` is the folder (relative to the dataset folder) the archive unpacks into;
    empty means the archive is used as it is.
    """

    filename: str
    md5: str
    size: int
    urls: tuple[str, ...] = ()
    extracted_size: int = 0
    extract_to: str = ""
    size_known: bool = True


@dataclass(frozen=True)
class DatasetSpec:
    """Everything that makes one dataset different from another.

    ``splits`` maps split name to image count; ``files`` are paths (relative to the
    dataset folder) that a complete copy must hold; ``data_root`` is where the reader
    looks; ``options`` are reader-specific facts (batch file names, label keys).
    ``options["variants"]`` (optional) maps a variant name to the spec fields it replaces
    (Imagenette's image sizes); ``options["default_variant"]`` names the one the spec holds.
    ``handler`` names the format module whose ``dataset_type`` holds the dataset's own steps
    when they are not its reader's (ImageNet's archives and parquet release; empty = the
    reader's module); ``parent`` is the dataset this one is an index over (ImageNet-100 over
    ImageNet-1k), prepared first.
    """

    name: str
    title: str
    reader: str  # "cifar" | "stl10" | "imagefolder" | "synthetic" | "ownfolder"
    auto_download: bool
    splits: dict[str, int]
    num_classes: int
    resolution: int | None  # native side in pixels; None when images vary in size
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    image_size: int  # default training resolution
    patch_size: int  # default ViT patch size
    pretrain_split: str = "train"
    eval_split: str = "test"
    archives: tuple[ArchiveSpec, ...] = ()
    data_root: str = ""
    files: tuple[str, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)
    homepage: str = ""
    handler: str = ""
    parent: str = ""

    @property
    def archive_bytes(self) -> int:
        return sum(a.size for a in self.archives)

    @property
    def extracted_bytes(self) -> int:
        return sum(a.extracted_size for a in self.archives)

    def replace(self, **changes: Any) -> "DatasetSpec":
        return dataclasses.replace(self, **changes)


_CIFAR10_DIR = "cifar-10-python/cifar-10-batches-py"
_CIFAR100_DIR = "cifar-100-python/cifar-100-python"
_STL10_DIR = "stl10_binary/stl10_binary"

SPECS: dict[str, DatasetSpec] = {}


def _register(spec: DatasetSpec) -> DatasetSpec:
    SPECS[spec.name] = spec
    return spec


_register(
    DatasetSpec(
        name="synthetic", title="Synthetic shapes (generated offline)", reader="synthetic", auto_download=False,
        # The DataModule derives the real sizes from its arguments; these are the defaults.
        splits={"train": 4096, "test": 1024}, num_classes=10, resolution=32,
        mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), image_size=32, patch_size=4,
        files=("train_images.npy", "train_labels.npy", "test_images.npy", "test_labels.npy"),
    )
)

# CIFAR: https://www.cs.toronto.edu/~kriz/cifar.html; archive and batch md5s are the
# ones torchvision's CIFAR10/CIFAR100 classes check.
def _cifar(name: str, title: str, archive: str, md5: str, size: int, extracted: int, data_root: str,
           options: dict[str, Any], **spec: Any) -> DatasetSpec:
    """A CIFAR spec: what CIFAR-10 and CIFAR-100 share (the reader, 32 px, the split sizes, the
    archive's URL folder) around what differs (archive, batch files in ``options``, labels,
    statistics)."""
    batches = [*options["train_files"], *options["test_files"], options["meta_file"]]
    return DatasetSpec(
        name=name, title=title, reader="cifar", auto_download=True,
        splits={"train": 50000, "test": 10000}, resolution=32, image_size=224, patch_size=16,
        archives=(ArchiveSpec(filename=archive, md5=md5, size=size, extracted_size=extracted,
                              extract_to=archive.removesuffix(".tar.gz"),
                              urls=(f"https://www.cs.toronto.edu/~kriz/{archive}",)),),
        data_root=data_root, files=tuple(f"{data_root}/{batch}" for batch in batches), options=options,
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html", **spec,
    )


_register(_cifar(
    "cifar10", "CIFAR-10", "cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a", 170_498_071, 186_214_200,
    _CIFAR10_DIR, num_classes=10, mean=CIFAR10_MEAN, std=CIFAR10_STD,
    options={"train_files": [f"data_batch_{i}" for i in range(1, 6)], "test_files": ["test_batch"],
             "meta_file": "batches.meta", "label_keys": {"fine": "labels"}, "class_names_key": {"fine": "label_names"}},
))

_register(_cifar(
    "cifar100", "CIFAR-100", "cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85", 169_001_437, 186_301_151,
    _CIFAR100_DIR, num_classes=100, mean=CIFAR100_MEAN, std=CIFAR100_STD,
    options={"train_files": ["train"], "test_files": ["test"], "meta_file": "meta",
             # 100 fine classes by default; 20 coarse superclasses on request.
             "label_keys": {"fine": "fine_labels", "coarse": "coarse_labels"},
             "class_names_key": {"fine": "fine_label_names", "coarse": "coarse_label_names"},
             # Class counts of the other label types; the fine count is the spec's num_classes
             # (so a $JEPA_CATALOG num_classes override takes effect).
             "num_classes": {"coarse": 20}},
))

# STL-10: https://cs.stanford.edu/~acoates/stl10/ (archive md5 as checked by torchvision).
_register(
    DatasetSpec(
        name="stl10",
        title="STL-10",
        reader="stl10",
        auto_download=True,
        splits={"train": 5000, "test": 8000, "unlabeled": 100000, "train+unlabeled": 105000},
        num_classes=10,
        resolution=96,
        mean=STL10_MEAN,
        std=STL10_STD,
        image_size=96,
        patch_size=8,
        pretrain_split="train+unlabeled",
        eval_split="test",
        archives=(ArchiveSpec(filename="stl10_binary.tar.gz", md5="91f7769df0f17e558f3565bffb0c7dfb",
                              size=2_640_397_119, extracted_size=3_124_288_000, extract_to="stl10_binary",
                              urls=("http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz",)),),
        data_root=_STL10_DIR,
        files=tuple(
            f"{_STL10_DIR}/{name}"
            for name in (
                "train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin", "unlabeled_X.bin",
                "fold_indices.txt", "class_names.txt",
            )
        ),
        options={"folds": 10},
        homepage="https://cs.stanford.edu/~acoates/stl10/",
    )
)

# ImageNet-1k (ILSVRC2012): file names, sizes and md5s as published with the 2012
# challenge data and checked by torchvision's ImageNet class; counts from the
# challenge description (1,281,167 train, 50,000 val).
_IMAGENET_ARCHIVES = (
    ArchiveSpec(filename="ILSVRC2012_img_train.tar", md5="1d675b47d978889d74fa0da5fadfb00e",
                size=147_897_477_120, extracted_size=147_897_477_120),
    ArchiveSpec(filename="ILSVRC2012_img_val.tar", md5="29b22e2961454d5413ddabcf34fc5622",
                size=6_744_924_160, extracted_size=6_744_924_160),
    ArchiveSpec(filename="ILSVRC2012_devkit_t12.tar.gz", md5="fa75699e90414af021442c21a62c3abf",
                size=2_568_145, extracted_size=0),
)

# The Hugging Face release (huggingface.co/datasets/ILSVRC/imagenet-1k, gated): data/<prefix>-NNNNN-of-MMMMM.parquet
# shards, rows {image: {bytes, path}, label: int64} (test: label -1). Shard counts as in the
# release's file names (train-*-of-00294, validation-*-of-00014, test-*-of-00028); rows per
# split as in the ILSVRC2012 description (the test split's 100,000 images have no labels).
_IMAGENET_PARQUET = {
    "repo": "ILSVRC/imagenet-1k",
    "prefixes": {"train": "train", "val": "validation", "test": "test"},
    "shards": {"train": 294, "val": 14, "test": 28},
    "splits": {"train": 1_281_167, "val": 50_000, "test": 100_000},
}

# What an ImageNet-like folder of photos of varying size shares (defaults: 224 px, 16 px patches).
_IMAGENET_LIKE: dict[str, Any] = dict(resolution=None, mean=IMAGENET_MEAN, std=IMAGENET_STD, image_size=224,
                                      patch_size=16, eval_split="val")
# ImageNet-1k and its subsets: placed by hand, read as class folders (or parquet shards), with
# the devkit and val sorting of formats/imagenet.py.
_IMAGENET_FAMILY: dict[str, Any] = dict(**_IMAGENET_LIKE, reader="imagefolder", auto_download=False, handler="imagenet")

_register(
    DatasetSpec(
        name="imagenet",
        title="ImageNet-1k (ILSVRC2012)",
        splits={"train": 1_281_167, "val": 50_000},
        num_classes=1000,
        **_IMAGENET_FAMILY,
        archives=_IMAGENET_ARCHIVES,
        options={"parquet": _IMAGENET_PARQUET},
        homepage="https://image-net.org/challenges/LSVRC/2012/",
    )
)

# ImageNet-100: the 100-class subset of CMC (Tian et al. 2019), built from a prepared
# ImageNet-1k folder. Counts are computed from the parent at verification time.
_register(
    DatasetSpec(
        name="imagenet100", title="ImageNet-100 (CMC subset)",
        splits={"train": 126_689, "val": 5_000}, num_classes=100, **_IMAGENET_FAMILY,
        parent="imagenet",
        homepage="https://github.com/HobbitLong/CMC",
    )
)


# Imagenette (https://github.com/fastai/imagenette): fast.ai's 10 easily told apart ImageNet
# classes, as <root>/train/<wnid>/*.JPEG and <root>/val/<wnid>/*.JPEG; labels in sorted wnid order.
# URLs and md5s as torchvision's Imagenette class (torchvision/datasets/imagenette.py,
# _ARCHIVES) has them. Counts as in the Hugging Face card frgfm/imagenette (dataset_infos.json:
# train 9,469, validation 3,925), the same for every variant. The archive sizes are estimates
# (only the free-space check uses them; size_known=False), so the md5 alone decides a download.
def _imagenette(variant: str, stem: str, md5: str, size: int, extracted: int) -> dict[str, Any]:
    return {
        "archives": (ArchiveSpec(filename=f"{stem}.tgz", md5=md5, size=size, size_known=False,
                                 urls=(f"https://s3.amazonaws.com/fast-ai-imageclas/{stem}.tgz",),
                                 extracted_size=extracted, extract_to=stem),),
        "data_root": f"{stem}/{stem}",
        "title": f"Imagenette ({variant})",
    }


_IMAGENETTE_VARIANTS = {
    "320": _imagenette("320 px", "imagenette2-320", "3df6f0d01a2c9592104656642f5e78a3", 341_000_000, 345_000_000),
    "160": _imagenette("160 px", "imagenette2-160", "e793b78cc4c9e9a4ccc0c1155377a412", 99_000_000, 101_000_000),
    "full": _imagenette("full size", "imagenette2", "fe2fc210e6bb7c5664d602c3cd71e612", 1_557_000_000, 1_560_000_000),
}

_register(
    DatasetSpec(
        name="imagenette",
        reader="imagefolder",
        auto_download=True,
        splits={"train": 9_469, "val": 3_925},
        num_classes=10,
        **_IMAGENET_LIKE,
        options={"variants": _IMAGENETTE_VARIANTS, "default_variant": "320"},
        homepage="https://github.com/fastai/imagenette",
        **_IMAGENETTE_VARIANTS["320"],
    )
)

# Tiny-ImageNet-200 (CS231n, http://cs231n.stanford.edu/tiny-imagenet-200.zip): 64x64 images of
# 200 ImageNet classes. Archive md5 and size as published with the dataset and checked by the
# public loaders (e.g. avalanche's TinyImagenet: md5 90528d7ca1a48142e341f4ef8d21d0de;
# 248,100,043 bytes); 500 train and 50 val images per class, 10,000 unlabeled test images
# (read here as the "unlabeled" split, label -1). Layout: tinyimagenet.py.
_TINY_ROOT = "tiny-imagenet-200/tiny-imagenet-200"
_register(
    DatasetSpec(
        name="tinyimagenet",
        title="Tiny-ImageNet-200",
        reader="tinyimagenet",
        auto_download=True,
        splits={"train": 100_000, "val": 10_000, "unlabeled": 10_000},
        num_classes=200,
        **{**_IMAGENET_LIKE, "resolution": 64, "image_size": 64, "patch_size": 8},
        # extracted_size is an estimate: 120,000 small JPEGs plus the annotations.
        archives=(ArchiveSpec(filename="tiny-imagenet-200.zip", md5="90528d7ca1a48142e341f4ef8d21d0de",
                              size=248_100_043, extracted_size=260_000_000, extract_to="tiny-imagenet-200",
                              urls=("http://cs231n.stanford.edu/tiny-imagenet-200.zip",)),),
        data_root=_TINY_ROOT,
        files=(f"{_TINY_ROOT}/wnids.txt", f"{_TINY_ROOT}/val/val_annotations.txt"),
        homepage="http://cs231n.stanford.edu/",
    )
)


# Your own images (ownfolder.py): nothing is downloaded, counts and classes come from the folder.
_register(
    DatasetSpec(
        name="imagefolder",
        title="Your own image folder",
        reader="ownfolder",
        auto_download=False,
        splits={},
        num_classes=0,
        **_IMAGENET_LIKE,
        # What the README's datasets table shows for facts that only the user's folder knows.
        options={"table": {"source": "your files", "images": "yours (val: a val/ folder or 1 % of train)",
                           "classes": "class folders or none"}},
    )
)


def dataset_names() -> list[str]:
    return list(SPECS)


def get_spec(name: str, variant: str | None = None) -> DatasetSpec:
    """The spec called ``name`` (in ``variant``, where it has variants; None = its default),
    with any ``$JEPA_CATALOG`` overrides applied."""
    if name not in SPECS:
        raise ConfigError(choice_message(name, SPECS, noun="dataset"), allowed=list(SPECS))
    return _apply_overrides(select_variant(SPECS[name], variant))


def select_variant(spec: DatasetSpec, variant: str | None) -> DatasetSpec:
    """``spec`` with the fields of ``options["variants"][variant]``; None = the spec as it is."""
    variants = spec.options.get("variants", {})
    if variant is None or variant == spec.options.get("default_variant"):
        return spec
    check_choice(f"variant of {spec.name}", str(variant), variants or ["none (it has no variants)"])
    return spec.replace(**variants[str(variant)])


_ANNOUNCED: set[tuple[str, str]] = set()


def _apply_overrides(spec: DatasetSpec) -> DatasetSpec:
    path = os.environ.get(CATALOG_ENV)
    if not path:
        return spec
    from omegaconf import OmegaConf

    overrides = OmegaConf.to_container(OmegaConf.load(path), resolve=True) or {}
    changes = overrides.get(spec.name)
    if not changes:
        return spec
    unknown = set(changes) - {f.name for f in dataclasses.fields(DatasetSpec)}
    if unknown:
        allowed = sorted(f.name for f in dataclasses.fields(DatasetSpec))
        raise ConfigError(f"{path} overrides unknown spec fields {sorted(unknown)} for '{spec.name}'; allowed are {allowed}.",
                          path=path, allowed=allowed)
    if "archives" in changes:
        by_name = {a.filename: a for a in spec.archives}
        archives = []
        for item in changes["archives"]:
            base = by_name.get(item.get("filename"))
            item = {**item, "urls": tuple(item.get("urls", base.urls if base else ()))}
            archives.append(dataclasses.replace(base, **item) if base else ArchiveSpec(**item))
        changes["archives"] = tuple(archives)
    for key in ("files", "mean", "std"):
        if key in changes:
            changes[key] = tuple(changes[key])
    if (path, spec.name) not in _ANNOUNCED:
        _ANNOUNCED.add((path, spec.name))
        warnings.warn(Notice(f"catalog overrides from {path} apply to '{spec.name}' ({', '.join(sorted(changes))})."),
                      stacklevel=3)
    return spec.replace(**changes)


def parquet_spec(spec: DatasetSpec) -> DatasetSpec:
    """``spec`` as read from the Hugging Face parquet shards (``options["parquet"]``): their
    splits (a ``test`` split of unlabelled rows included) and no archives."""
    facts = spec.options["parquet"]
    return spec.replace(reader="hfparquet", splits=dict(facts["splits"]), archives=())


def dataset_folder(data_dir: str | Path, spec: DatasetSpec) -> Path:
    """Where a dataset lives under the data directory: ``<data_dir>/<name>``."""
    return Path(data_dir).expanduser() / spec.name
