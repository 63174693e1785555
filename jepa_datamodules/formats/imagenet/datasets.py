"""ImageNet-1k and its class subsets (ImageNet-100) as Datasets, and the class lists that pick a subset.

ImageNet-1k reads the ``train/<wnid>/``, ``val/<wnid>/`` layout that :func:`~.unpack.prepare_imagenet`
builds from the official files, or the Hugging Face parquet shards in place. A subset is an
index over the parent's files; its classes come from a list of wnids, by default the 100-class
list of CMC used by many JEPA papers (:func:`load_class_list`).
"""

from __future__ import annotations

import hashlib
import importlib.resources
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ...catalog import DatasetSpec, parquet_spec
from ...choices import check_choice
from ...errors import ConfigError, ImageNetSetupError, setting
from ...storage.verify import VerifyReport
from .. import hfparquet
from ..base import Source
from ..dataset import VERIFY_SAMPLE, Dataset, check_split, open_dataset, read_checked, sample_picks
from .detect import TRAIN_TAR, WNID_RE, check_nesting, detect_source
from .unpack import unpack_imagenet

__all__ = ["IMAGENET_SOURCES", "IMAGENET100_SHA256", "ImageNetDataset", "ImageNetSubset", "dataset_type",
           "load_class_list"]

#: sha256 of resources/imagenet100.txt, the CMC list (github.com/HobbitLong/CMC, imagenet100.txt).
IMAGENET100_SHA256 = "79f3f1552ccc478ce24bd934b4573625db584ddc1f4643ae23c994a94cb11397"
_IMAGENET100_RESOURCE = ("resources", "imagenet100.txt")


# --------------------------------------------------------------------------- the datasets
#: Where ``ImageNetDataModule(source=...)`` reads the images from.
IMAGENET_SOURCES = ("auto", "folders", "parquet")


class ImageNetDataset(Dataset):
    """ImageNet-1k on disk, from the official files (unpacked by :func:`~.unpack.prepare_imagenet`) or
    the Hugging Face parquet shards read in place (option ``source``, one of :data:`IMAGENET_SOURCES`:
    ``"auto"`` takes the shards when they are there and neither ``train/`` nor the train archive is)."""

    def __init__(self, spec: DatasetSpec, data_dir: Any, *, source: str = "auto", **rest: Any):
        check_choice("source", source, IMAGENET_SOURCES)
        super().__init__(spec, data_dir, **rest)
        folder = self.folder
        if source == "parquet" or (source == "auto" and hfparquet.has_parquet(folder) and not (folder / "train").is_dir()
                                   and not (folder / TRAIN_TAR).exists()):
            self.spec = parquet_spec(spec)
            self.label_files = False  # the label column; verify() checks it per split (test: all -1)

    @property
    def parquet(self) -> bool:
        """True when the Hugging Face parquet shards are read."""
        return self.spec.reader == "hfparquet"

    def open_split(self, split: str, whole: bool = False) -> Source:
        if not self.parquet:  # a train/<wnid>/<wnid>/ layout would read as no images at all
            check_nesting(self.folder / split)
        return super().open_split(split, whole)

    def pending_writes(self) -> str | None:
        if self.parquet:
            return None  # the shards are read where they are: nothing to unpack
        if detect_source(self.folder) == "layout" and not any((self.folder / a.filename).exists() for a in self.spec.archives):
            return None
        return "the unpacked train/<wnid>/ and val/<wnid>/ class folders"

    def build(self, force: bool = False) -> dict[str, str]:
        # prepare() holds the dataset lock and has cleared stale staging; the parquet shards need
        # no unpacking (verify() checks shards, rows and a sample).
        if not self.parquet:
            unpack_imagenet(self.folder, progress=self.progress)
        return {}

    def verify(self, full: bool = False, known_md5: dict[str, str] | None = None,
               md5: Callable[[Path], str] | None = None, quick: bool = False) -> VerifyReport:
        if self.parquet:
            return hfparquet.verify_shards(self.spec, self.folder, self.open_split, full=full, seed=self.seed)
        return super().verify(full=full, known_md5=known_md5, md5=md5, quick=quick)

    def tracked_files(self) -> list[str]:
        if self.parquet:
            return hfparquet.shard_files(self.spec, self.folder)
        tracked = [a.filename for a in self.spec.archives if (self.folder / a.filename).exists()]
        for split in self.spec.splits:
            tracked.append(split)
            tracked += sorted(f"{split}/{e.name}" for e in os.scandir(self.folder / split)
                              if e.is_dir() and not e.name.startswith("."))
        return tracked


class ImageNetSubset(Dataset):
    """A class subset of a prepared ImageNet-1k (``spec.parent``), e.g. ImageNet-100: an index
    (file list + labels 0..C-1 in sorted-wnid order) over the parent's files, kept in this
    dataset's folder; no image is copied or linked. Options: ``class_list`` (a file of wnids;
    None = the packaged CMC list) and the parent's ``source``."""

    def __init__(self, spec: DatasetSpec, data_dir: Any, *, class_list: str | Path | None = None,
                 source: str = "auto", **rest: Any):
        self.wnids = load_class_list(Path(class_list) if class_list else None)
        super().__init__(spec.replace(num_classes=len(self.wnids)), data_dir, **rest)
        self.parent = open_dataset(spec.parent, data_dir, progress=self.progress, source=source)
        self.label_files = self.parent.label_files
        self.options = {"root": self.parent.folder, "classes": self.wnids, "cache_dir": self.folder}

    @property
    def classes(self) -> list[str]:
        return self.wnids

    def open_split(self, split: str, whole: bool = False) -> Source:
        if self.parent.spec.reader != "hfparquet":
            return super().open_split(split, whole)
        check_choice(f"split of {self.spec.name}", split, self.spec.splits)
        return hfparquet.class_subset(self.parent.open_split(split), self.wnids)

    def pending_writes(self) -> str | None:
        return self.parent.pending_writes()

    def build(self, force: bool = False) -> dict[str, str]:
        self.folder.mkdir(parents=True, exist_ok=True)  # the parent was prepared first (preparation.py)
        return {}

    def verify(self, full: bool = False, known_md5: dict[str, str] | None = None,
               md5: Callable[[Path], str] | None = None, quick: bool = False) -> VerifyReport:
        # No files or archives of its own; the counts are whatever the parent holds for these
        # classes (at least one image a split). A split the parent cannot read is a failed row.
        report = VerifyReport(self.spec.name, self.folder)
        rng = np.random.default_rng(self.seed)
        for split in self.spec.splits:
            source = read_checked(report, split, self.open_split)
            if source is not None:
                check_split(report, split, source, expected=None, classes=self.num_classes,
                            picks=sample_picks(source, rng, VERIFY_SAMPLE, full), count_name="images")
        return report

    def tracked_files(self) -> list[str]:
        parent = self.parent.folder
        return [str(parent / rel) for rel in self.parent.tracked_files()
                if rel not in {a.filename for a in self.parent.spec.archives}]


def dataset_type(spec: DatasetSpec) -> type[Dataset]:
    return ImageNetSubset if spec.parent else ImageNetDataset


# --------------------------------------------------------------------------- class lists


def _parse_class_list(text: str, source: str, path: Path | None = None) -> list[str]:
    wnids: list[str] = []
    first_line: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if not WNID_RE.fullmatch(line):
            raise ConfigError(f"{source} line {number}: {line!r} is not a WordNet id like n01440764; put one wnid per line.",
                              setting="class_list", path=path, allowed="one wnid per line")
        if line in first_line:
            raise ConfigError(f"{source} line {number}: {line} already appears on line {first_line[line]}; list each class once.",
                              setting="class_list", path=path, allowed="each wnid once")
        first_line[line] = number
        wnids.append(line)
    if not wnids:
        raise ConfigError(f"{source} lists no classes; put one wnid (like n01440764) per line.",
                          setting="class_list", path=path, allowed="one wnid per line")
    return wnids


def load_class_list(path: Path | None = None) -> list[str]:
    """Read a list of ImageNet classes (wnids), in file order.

    Args:
        path: default None = the packaged ImageNet-100 list of CMC (Tian et al. 2019), whose
            sha256 is checked against :data:`IMAGENET100_SHA256`. Otherwise a text file with
            one wnid per line; blank lines and ``#`` comments are ignored.

    Raises:
        ImageNetSetupError: the packaged list does not match its sha256 (a damaged install).
        ConfigError: a line of the file is not a wnid or repeats one (the line number is named).
    """
    if path is None:
        data = importlib.resources.files("jepa_datamodules").joinpath(*_IMAGENET100_RESOURCE).read_bytes()
        actual = hashlib.sha256(data).hexdigest()
        if actual != IMAGENET100_SHA256:
            raise ImageNetSetupError(
                f"The packaged ImageNet-100 class list has sha256 {actual}, expected {IMAGENET100_SHA256}; "
                "reinstall jepa_datamodules.")
        return _parse_class_list(data.decode("ascii"), "packaged imagenet100.txt")
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ConfigError(f"The class list {setting('class_list', str(path))} cannot be read ({reason}); "
                          "give a UTF-8 text file with one wnid per line.", setting="class_list", path=path,
                          allowed="a text file with one wnid per line") from exc
    return _parse_class_list(text, str(path), path)


