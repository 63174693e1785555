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
from typing import Any, Callable, Sequence

import numpy as np

from ..catalog import DatasetSpec, dataset_folder, get_spec
from ..choices import check_choice, choice_message
from ..errors import ConfigError, JEPADataError
from ..storage.files import human_bytes
from ..storage.verify import VerifyReport, check_archives, check_files, nothing_on_disk, recorded_sizes
from .base import Source, label_problem
from .images import item_name, item_problem

#: Items decoded per split by a verification that is not ``full``.
VERIFY_SAMPLE = 16

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


# ----------------------------------------------------------------------- the split checks
# The verification engine's checks that open a split (storage/verify.py has those that only
# look at files). Each adds rows to a VerifyReport and returns whether they passed; a
# dataset's verify() composes them (verify_dataset is the composition most datasets use).
def read_checked(report: VerifyReport, split: str, open_split: Callable[[str], Source],
                 blame: Sequence[str] = ()) -> Source | None:
    """Split ``split`` opened, or None after a failed ``read <split>`` row giving the reason
    (paths relative to ``report.folder``); the files of ``blame`` the reason names are blamed."""
    try:
        return open_split(split)
    except Exception as error:  # noqa: BLE001 - an unreadable split is the finding
        # A package error's message keeps its marks (the console speaks them as overrides).
        text = f"{type(error).__name__}: {error.message if isinstance(error, JEPADataError) else error}"
        text = text.replace(f"{report.folder}{os.sep}", "")
        report.add(f"read {split}", "readable", text, False)
        for rel in blame:
            if rel in text:
                report.blame(rel)
        return None


def check_count(report: VerifyReport, name: str, found: int, expected: int | None = None) -> bool:
    """Row ``name``: ``found`` items, exactly ``expected`` [None = at least one]."""
    if expected is None:
        return report.add(name, "> 0", found, found > 0)
    return report.add(name, expected, found, found == expected)


def check_label_range(report: VerifyReport, split: str, source: Source, classes: int, unlabeled_ok: bool | None = None) -> bool:
    """Row ``labels <split>``: every label in ``0..classes-1`` (or -1 where ``unlabeled_ok``
    [None = the split's name says "unlabeled"]); a failure blames the source's ``label_files``."""
    unlabeled_ok = "unlabeled" in split if unlabeled_ok is None else unlabeled_ok
    out_of_range = label_problem(source.labels, classes, unlabeled_ok=unlabeled_ok)
    allowed = f"all in 0..{classes - 1}" + (" or -1" if unlabeled_ok else "")
    if report.add(f"labels {split}", allowed, out_of_range or "all in range", out_of_range is None):
        return True
    for path in getattr(source, "label_files", []):
        report.blame(os.path.relpath(path, report.folder))
    return False


def check_classes(report: VerifyReport, split: str, source: Source, classes: int) -> bool:
    """Row ``classes <split>``: the labelled items hold all ``classes`` classes and no other
    (no row for a split without labels)."""
    labeled = source.labels[source.labels >= 0]
    if not len(labeled):
        return True
    found = len(np.unique(labeled))
    return report.add(f"classes {split}", classes, found, found == classes and labeled.max() < found)


def sample_picks(source: Source, rng: np.random.Generator, sample: int, full: bool = False) -> list[int]:
    """The items a decode check reads, in index order: ``sample`` drawn by ``rng``, or every
    item with ``full`` where items are files (``paths`` or ``read_bytes``; arrays are touched
    by the count and label checks already)."""
    every = full and (hasattr(source, "paths") or hasattr(source, "read_bytes"))
    count = len(source) if every else min(sample, len(source))
    return sorted(rng.choice(len(source), size=count, replace=False).tolist()) if len(source) else []


def check_decode(report: VerifyReport, split: str, source: Source, picks: Sequence[int], *, pixels: bool = True,
                 skipped: Callable[[int], str] | None = None) -> bool:
    """Items ``picks`` of ``source`` must decode (:func:`images.item_problem`; ``pixels``: every
    pixel, else a JPEG's header and end marker only). Row ``decode <split>``, failing on any
    undecodable item; or, where training skips undecodable files (``skipped`` names item ``i``
    for the report), row ``decodable <split>``, failing only when nothing decodes, plus one
    ``unreadable <name>`` row per skipped file (shown, not failed)."""
    bad = [(i, why) for i in picks if (why := item_problem(source, int(i), full=pixels)) is not None]
    if skipped is not None:
        ok = report.add(f"decodable {split}", f"{len(picks)} of {len(picks)} checked",
                        f"{len(picks) - len(bad)} ({len(bad)} skipped)", len(bad) < len(picks))
        for i, why in bad:
            report.skip(skipped(i), why)
        return ok
    names = ", ".join(f"{item_name(source, i)} ({why})" for i, why in bad[:5])
    return report.add(f"decode {split}", f"{len(picks)} of {len(picks)} decode",
                      f"{len(bad)} fail: {names}" if bad else "all decode", not bad)


def check_split(report: VerifyReport, split: str, source: Source, *, expected: int | None, classes: int,
                picks: Sequence[int], count_name: str = "count", pixels: bool = True) -> bool:
    """The per-split checks most datasets run: ``<count_name> <split>`` (``expected`` items),
    labels in range, classes, and ``picks`` that decode."""
    results = [check_count(report, f"{count_name} {split}", len(source), expected),
               check_label_range(report, split, source, classes),
               check_classes(report, split, source, classes),
               check_decode(report, split, source, picks, pixels=pixels)]
    return all(results)


def verify_dataset(spec: DatasetSpec, folder: Path, open_split: Callable[[str], Source], *,
                   splits: dict[str, int] | None = None, full: bool = False, sample: int = VERIFY_SAMPLE,
                   md5: Callable[[Path], str] | None = None, known_md5: dict[str, str] | None = None,
                   num_classes: int | None = None, seed: int = 0) -> VerifyReport:
    """Run every check of ``spec`` against ``folder`` and return the report (nothing is raised):
    :func:`~jepa_datamodules.storage.verify.check_archives`, ``check_files``, then, when every
    file is there, :func:`check_split` on each split.

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
    check_archives(report, spec.archives, md5=md5, known_md5=known_md5, full=full)
    files_ok = check_files(report, spec.files, recorded_sizes(folder, spec))
    report.nothing_on_disk = nothing_on_disk(folder, spec)
    if not files_ok:
        return report  # reading half a dataset would only repeat the same finding less clearly
    rng = np.random.default_rng(seed)
    classes = num_classes or spec.num_classes
    for split, expected in (splits or spec.splits).items():
        source = read_checked(report, split, open_split, blame=spec.files)
        if source is not None:
            check_split(report, split, source, expected=expected, classes=classes,
                        picks=sample_picks(source, rng, sample, full))
    return report
