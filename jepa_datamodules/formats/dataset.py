"""One dataset on disk: its spec, its folder, its format options, and the checks that read it.

A :class:`Dataset` is what the preparation pipeline (``preparation.py``) and the DataModule
work on. This class is the whole story for most datasets (CIFAR-10, Imagenette,
Tiny-ImageNet: a spec is enough). A dataset whose files need code of their own (the
synthetic set is generated, ImageNet's devkit sorts the val images, your own folder is
listed, not fetched) has a subclass in its format module, found through the spec: the
module named by ``spec.handler`` (default: ``spec.reader``) and its ``dataset_type(spec)``.

Format options are the keyword arguments a DataModule alias declares (CIFAR-100's
``label_type``, STL-10's ``train_split`` and ``fold``, ...); each subclass takes its own.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import numpy as np

from ..catalog import DatasetSpec, dataset_folder, get_spec
from ..choices import check_choice, choice_message
from ..storage.files import human_bytes
from ..storage.verify import VerifyReport, recorded_md5, recorded_sizes
from .base import Source, label_problem
from ..errors import ConfigError

#: ``spec.reader`` (or ``spec.handler``) -> the module (in this package) that reads it.
READERS = {
    "cifar": "cifar",
    "stl10": "stl10",
    "synthetic": "synthetic",
    "imagefolder": "imagefolder",
    "tinyimagenet": "tinyimagenet",
    "imagenet": "imagenet",
    "hfparquet": "hfparquet",
    "ownfolder": "ownfolder",
}


def format_module(reader: str) -> ModuleType:
    """The module that reads ``reader`` (imported on first use, so reading CIFAR never imports pyarrow)."""
    if reader not in READERS:
        raise ConfigError(choice_message(reader, sorted(READERS), noun="reader"))
    return importlib.import_module(f"jepa_datamodules.formats.{READERS[reader]}")


def open_split(spec: DatasetSpec, folder: Path, split: str, **options: Any) -> Source:
    """Split ``split`` of the dataset ``spec`` stored in ``folder``, read by its format's module."""
    check_choice(f"split of {spec.name}", split, spec.splits)
    return format_module(spec.reader).open_split(spec, Path(folder), split, **options)


def open_dataset(name: str, data_dir: str | Path, *, seed: int = 0, progress: bool | None = None,
                 variant: str | None = None, **options: Any) -> "Dataset":
    """The dataset ``name`` (in ``variant``) under ``data_dir`` with its format ``options``;
    an unknown option or value is refused with one sentence."""
    spec = get_spec(name, variant)
    module = format_module(spec.handler or spec.reader)
    kind = module.dataset_type(spec) if hasattr(module, "dataset_type") else Dataset
    return kind(spec, data_dir, seed=seed, progress=progress, variant=variant, **options)


class Dataset:
    """A dataset as its spec describes it, under ``<data_dir>/<name>``.

    Subclasses change the spec in ``__init__`` (from their options), and override the hooks
    below where the dataset needs code; everything else reads the spec.
    """

    #: Format options that select part of a split (STL-10's ``fold``): verification reads
    #: whole splits, and LitData chunks (whole splits) refuse them.
    subset_options: tuple[str, ...] = ()
    #: Whether opening a split checks its labels against the class count (they come from
    #: label files that can be damaged); False where labels come from folder names.
    label_files: bool = True

    def __init__(self, spec: DatasetSpec, data_dir: str | Path, *, seed: int = 0, progress: bool | None = None,
                 variant: str | None = None, **options: Any):
        if options:
            unknown = ", ".join(sorted(options))
            raise TypeError(f"{spec.name} has no option {unknown}; its DataModule's arguments are the valid ones.")
        self.spec = spec
        self.data_dir = Path(data_dir)
        self.seed, self.progress, self.variant = seed, progress, variant
        self.options: dict[str, Any] = {}  # what open_split passes to the format module
        #: A dataset this one is read from (ImageNet-100: ImageNet-1k), prepared first.
        self.parent: Dataset | None = None

    # ------------------------------------------------------------------ reading
    @property
    def folder(self) -> Path:
        return dataset_folder(self.data_dir, self.spec)

    @property
    def shown_folder(self) -> Path:
        """The folder a user knows this dataset by (an own folder's ``root``; ``folder`` holds our state)."""
        return self.folder

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    @property
    def classes(self) -> list[str] | None:
        """Class names in label order, read from the dataset's own files by its reader's
        ``class_names`` (CIFAR's meta batch, STL-10's ``class_names.txt``, the wnid folders), or
        from LitData chunks' facts (:meth:`adopt_facts`); None before they are on disk, or where
        the format names no classes."""
        if hasattr(self, "_facts_classes"):
            return self._facts_classes
        reader = format_module(self.spec.reader)
        if not hasattr(reader, "class_names"):
            return None
        try:
            return reader.class_names(self.spec, self.folder, **self.options)
        except (FileNotFoundError, NotADirectoryError):
            return None

    def adopt_facts(self, facts: dict[str, Any]) -> None:
        """Take the dataset's shape from the facts LitData chunks recorded (``streaming.read_facts``)
        instead of from its files: the machine reading the chunks may hold nothing else."""
        self.spec = self.spec.replace(pretrain_split=facts["pretrain_split"], eval_split=facts["eval_split"],
                                      num_classes=int(facts["num_classes"]))
        self._facts_classes = facts.get("classes")

    def open_split(self, split: str, whole: bool = False) -> Source:
        """One split; ``whole`` leaves out the options that select part of it (verification)."""
        options = {k: v for k, v in self.options.items() if not (whole and k in self.subset_options)}
        return open_split(self.spec, self.folder, split, **options)

    def resolve_val_fraction(self, val_fraction: float | None) -> float:
        """The share of train carved out as val; None = this dataset's default (0: its own val split)."""
        return 0.0 if val_fraction is None else val_fraction

    # ------------------------------------------------------- what preparation asks
    def check_present(self) -> None:
        """Raise when nothing can ever be prepared (your own folder is missing); default: nothing."""

    def pending_writes(self) -> str | None:
        """What preparing would write besides the stamp, as a phrase; None when the data looks
        complete (then only verifying and stamping are left)."""
        folder, spec = self.folder, self.spec
        if all((folder / rel).is_file() for rel in spec.files) and (spec.files or not spec.archives):
            return None
        if not spec.archives:
            return f"the files of {spec.name}"
        parts = [f"the download of {a.filename} ({human_bytes(a.size)})" for a in spec.archives
                 if not (folder / a.filename).is_file()]
        extracted = spec.extracted_bytes
        parts.append(f"the extracted files ({human_bytes(extracted)})" if extracted else "the extracted files")
        return " and ".join(parts)

    def build(self, force: bool = False) -> dict[str, str]:
        """The format's own step once the archives are fetched and extracted (ImageNet's val
        sorting, the synthetic generation); returns md5s it computed. Default: nothing to do."""
        return {}

    def verify(self, full: bool = False, known_md5: dict[str, str] | None = None,
               md5: Callable[[Path], str] | None = None, quick: bool = False) -> VerifyReport:
        """Check the copy on disk (see :func:`verify_dataset`); ``quick``: inside ``prepare_data``."""
        return verify_dataset(self.spec, self.folder, lambda split: self.open_split(split, whole=True), full=full,
                              known_md5=known_md5, md5=md5, num_classes=self.num_classes, seed=self.seed)

    def tracked_files(self) -> list[str]:
        """Files whose size and mtime the stamp records (relative to ``folder``, or absolute)."""
        present = [a.filename for a in self.spec.archives if (self.folder / a.filename).exists()]
        return list(self.spec.files) + present

    # ------------------------------------------------------------- for people
    def settings(self) -> dict[str, Any]:
        """The constructor arguments beyond the dataset's name that pick this very dataset (its
        variant, where it is not the default); fix hints repeat them."""
        if self.variant is not None and str(self.variant) != self.spec.options.get("default_variant"):
            return {"variant": str(self.variant)}
        return {}

    def resolved_options(self) -> dict[str, Any]:
        """Options whose default is decided here (your own folder's ``root``), as the
        DataModule's hyper-parameters record them; default none."""
        return {}

    def val_description(self, val_fraction: float) -> str | None:
        """How val is made, for summaries, where the dataset decides it (your own folder); else None."""
        return None

    def describe(self, val_fraction: float) -> dict[str, Any]:
        """Facts for summaries beyond splits, sizes and classes; default none."""
        return {}


# ----------------------------------------------------------------------- the checks
def _decodes(item: object) -> str | None:
    """None when ``item`` is a usable RGB image, else why not."""
    try:
        if isinstance(item, np.ndarray):
            if item.dtype != np.uint8 or item.ndim != 3 or item.shape[2] != 3:
                return f"array of {item.dtype} {item.shape}"
            np.asarray(item).sum()  # touches the bytes (memmaps fail here when truncated)
            return None
        item.load()  # PIL: decodes fully, raises on truncated data
        return None
    except Exception as error:  # noqa: BLE001 - any failure to decode is the finding
        return f"{type(error).__name__}: {error}"


def verify_dataset(spec: DatasetSpec, folder: Path, open_split: Callable[[str], Source], *,
                   splits: dict[str, int] | None = None, full: bool = False, sample: int = 16,
                   md5: Callable[[Path], str] | None = None, known_md5: dict[str, str] | None = None,
                   num_classes: int | None = None, seed: int = 0) -> VerifyReport:
    """Run every check of ``spec`` against ``folder`` and return the report (nothing is raised).

    Args:
        spec: the dataset's spec; its archives, files, splits and class count are checked.
        folder: the dataset folder.
        open_split: opens one split of the data in ``folder``.
        splits: expected image count per split; default None = the spec's (derived datasets).
        full: hash every archive present even when its md5 is known (``known_md5`` or a stamp
            whose recorded size and mtime still match), and decode every item of file-based
            splits instead of a sample; default False.
        sample: items decoded per split when not ``full``; default 16.
        md5: hashes one file; default None = archives are not checked.
        known_md5: ``{archive file name: md5}`` computed this run (while downloading); default none.
        num_classes: expected class count; default None = the spec's.
        seed: picks the decoded sample; default 0.
    """
    report = VerifyReport(spec.name, folder)
    from_this_run = dict(known_md5 or {})
    from_stamp = {} if full else recorded_md5(folder)
    for archive in spec.archives:
        path = folder / archive.filename
        if not path.exists() or md5 is None:
            continue
        if not full and archive.filename in from_this_run:
            digest = found = from_this_run[archive.filename]
        elif archive.filename in from_stamp:
            digest = from_stamp[archive.filename]
            found = f"{digest} (stamp)"
        else:
            digest = found = md5(path)
        report.hashed[archive.filename] = digest
        if not report.add(f"md5 {archive.filename}", archive.md5, found, digest == archive.md5):
            report.blame(archive.filename)
    sizes = recorded_sizes(folder, spec)
    present, files_ok = 0, True
    for rel in spec.files:
        path = folder / rel
        size = path.stat().st_size if path.exists() else None
        verified_size = sizes.get(rel)
        if size is None:
            ok, expected, found = False, "present", "missing"
        elif verified_size is not None:
            # A verified copy had exactly this many bytes: catches truncation by name.
            ok, expected, found = size == verified_size, f"{verified_size} bytes", f"{size} bytes"
        else:
            ok, expected, found = size > 0, "present", f"{size} bytes"
        present += size is not None
        if not report.add(f"file {rel}", expected, found, ok):
            report.blame(rel)
            files_ok = False
    if spec.files and not present and not any((folder / a.filename).exists() for a in spec.archives):
        report.nothing_on_disk = True
    if not files_ok:
        return report  # reading half a dataset would only repeat the same finding less clearly
    rng = np.random.default_rng(seed)
    classes = num_classes or spec.num_classes
    for split, expected in (splits or spec.splits).items():
        try:
            source = open_split(split)
        except Exception as error:  # noqa: BLE001 - unreadable split is a finding
            text = f"{type(error).__name__}: {error}".replace(f"{folder}{os.sep}", "")
            report.add(f"read {split}", "readable", text, False)
            for rel in spec.files:
                if rel in text:
                    report.blame(rel)
            continue
        report.add(f"count {split}", expected, len(source), len(source) == expected)
        out_of_range = label_problem(source.labels, classes, unlabeled_ok="unlabeled" in split)
        allowed = f"all in 0..{classes - 1}" + (" or -1" if "unlabeled" in split else "")
        if not report.add(f"labels {split}", allowed, out_of_range or "all in range", out_of_range is None):
            for path in getattr(source, "label_files", []):
                report.blame(os.path.relpath(path, folder))
        labeled = source.labels[source.labels >= 0]
        if len(labeled):
            found = len(np.unique(labeled))
            report.add(f"classes {split}", classes, found, found == classes and labeled.max() < found)
        file_based = hasattr(source, "paths")
        count = len(source) if (full and file_based) else min(sample, len(source))
        picks = rng.choice(len(source), size=count, replace=False) if len(source) else []
        bad = [(int(i), why) for i in picks if (why := _decodes(source.load(int(i)))) is not None]
        if bad and file_based:
            names = ", ".join(f"{source.paths[i]} ({why})" for i, why in bad[:5])
        else:
            names = ", ".join(f"item {i} ({why})" for i, why in bad[:5])
        report.add(f"decode {split}", f"{count} of {count} decode", "all decode" if not bad else f"{len(bad)} fail: {names}", not bad)
    return report
