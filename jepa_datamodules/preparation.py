"""One preparation pipeline: lock -> stamp check -> fetch -> extract -> verify -> stamp.

Every way a dataset gets ready goes through here: ``JEPADataModule.prepare_data`` (so
``jepa-fit`` and ``jepa-prepare``), ``jepa-prepare data=all-auto`` (each member's
``prepare_data``), ``jepa-verify`` (:func:`verify`) and ``jepa-bench`` (:func:`is_prepared`).
What differs between datasets is data (the spec's archives, files and counts) or the
format's own step (``Dataset.build``: ImageNet's devkit and val sorting, the synthetic
generation), never this sequence.

:func:`prepare`, in order:

1. a copy whose stamp matches is used as it is, before any lock: nothing is written, so a
   verified copy on read-only storage trains;
2. where the folder cannot be written, a copy that looks complete is verified without a
   stamp (a warning says so), anything else raises :class:`StorageError`;
3. under the dataset's lock: staging left by killed runs is removed, the parent dataset
   (ImageNet-100's ImageNet-1k) is prepared, each archive fetched (``force``: beside the old
   one, swapped in once its md5 matches) or, when placed by hand, checked against its size
   and md5 (md5s a stamp remembers for unchanged files are not computed again), extracted,
   then the format's own step runs;
4. the copy is verified and, when every check passes, stamped.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from .catalog import ArchiveSpec
from .errors import action, setting
from .formats.dataset import Dataset
from .notices import Notice
from .storage import download as dl
from .storage.extract import safe_extract
from .storage.locks import dataset_lock
from .storage.files import (
    DATA_DIR_HINT,
    StorageError,
    check_free_space,
    is_storage_error,
    remove_stale_staging,
    storage_error,
    unwritable,
)
from .storage.verify import (
    VerificationError,
    VerifyReport,
    recorded_md5,
    remove_stamp,
    stamp_matches,
    write_stamp,
)


@dataclass(frozen=True)
class FetchSettings:
    """How archives are fetched (the DataModule's arguments of the same names).

    ``download``: fetch missing archives [True]; ``mirrors``: base URLs or folders tried
    first [()]; ``force``: fetch and extract again even if verified [False];
    ``keep_archives`` [True]; ``retries`` per URL [4]; ``timeout`` seconds [30.0];
    ``progress``: bars [None = on a terminal].
    """

    download: bool = True
    mirrors: Sequence[str] = ()
    force: bool = False
    keep_archives: bool = True
    retries: int = 4
    timeout: float = 30.0
    progress: bool | None = None


def dataset_settings(dataset: Dataset, mirrors: Sequence[str] = ()) -> dict[str, Any]:
    """The constructor arguments that pick this very dataset and its folder (data_dir unless it
    is the default, mirrors, seed, the dataset's own options): what fix hints repeat."""
    settings: dict[str, Any] = {}
    default_dir = Path(os.environ.get("JEPA_DATA_DIR") or "data").expanduser().absolute()
    data_dir = dataset.data_dir.expanduser().absolute()
    if data_dir != default_dir:
        settings["data_dir"] = str(data_dir)
    if mirrors:
        settings["mirrors"] = list(mirrors)
    if dataset.seed != 0:
        settings["seed"] = dataset.seed
    return {**settings, **dataset.settings()}


def prepare_action(dataset: Dataset, settings: FetchSettings | None = None, verb: str = "prepare",
                   **options: Any) -> str:
    """The marked fix (``errors.action``) that runs ``verb`` on this very dataset: Python callers
    read ``prepare_data()`` with its arguments, the console ``jepa-prepare data=... ...``."""
    return action(verb, dataset.spec.name, dataset_settings(dataset, settings.mirrors if settings else ()), **options)


def is_prepared(dataset: Dataset) -> bool:
    """True when a stamp records this very copy as verified (``stat`` only, nothing read)."""
    return stamp_matches(dataset.folder, dataset.spec)


def prepare(dataset: Dataset, settings: FetchSettings = FetchSettings(), command: str | None = None) -> None:
    """Make ``dataset`` ready and verified (see the module docstring); ``command`` is the
    marked fix that prepares it (``errors.action``), for hints [None = :func:`prepare_action`]."""
    command = command or prepare_action(dataset, settings)
    dataset.check_present()
    folder = dataset.folder
    if not settings.force and is_prepared(dataset):
        return
    _check_data_dir(dataset.data_dir)
    problem = unwritable(folder.parent) or (unwritable(folder) if folder.is_dir() else None)
    if problem is not None:
        _verify_unwritable(dataset, settings, command, problem)
        return
    try:
        with dataset_lock(folder):
            if not settings.force and is_prepared(dataset):
                return  # another process prepared it while this one waited
            remove_stale_staging(folder)
            # Archives the last verification hashed and that are unchanged need no second hash.
            remembered = {} if settings.force else recorded_md5(folder)
            remove_stamp(folder)
            known_md5 = {**remembered, **_acquire(dataset, settings, command, remembered)}
            report = check(dataset, command, known_md5=known_md5, quick=True)
            if not report.ok:
                raise VerificationError(report)  # no stamp: the next run checks again
            write_stamp(folder, dataset.spec, report, dataset.tracked_files())
    except OSError as error:
        if not is_storage_error(error):
            raise
        raise storage_error(error, folder, dataset.pending_writes() or "the verification stamp",
                            fix=_way_out(folder, command)) from error


def check(dataset: Dataset, command: str | None = None, *, full: bool = False,
          known_md5: Mapping[str, str] | None = None, quick: bool = False) -> VerifyReport:
    """Verify the copy on disk (nothing written); ``quick``: the sample ``prepare`` checks."""
    report = dataset.verify(full=full, known_md5=dict(known_md5 or {}), quick=quick,
                            md5=lambda path: dl.file_md5(path, progress=dataset.progress))
    report.prepare_command = command or prepare_action(dataset)
    report.refetchable = bool(dataset.spec.archives)
    return report


def verify(dataset: Dataset, command: str | None = None, *, full: bool = False) -> tuple[VerifyReport, str | None]:
    """``jepa-verify``: check the copy; a failure removes its stamp (the next ``prepare`` checks
    again), a pass records one. Returns the report and, when the stamp could not be written,
    why (the folder is read-only, say)."""
    folder = dataset.folder
    report = check(dataset, command, full=full)
    if not report.ok:
        try:
            remove_stamp(folder)
        except OSError:
            pass  # read-only: nothing can trust-and-write there anyway; a stale stamp no longer matches
        return report, None
    problem = unwritable(folder)
    if problem is None:
        write_stamp(folder, dataset.spec, report, dataset.tracked_files())
    return report, problem


# ------------------------------------------------------------------------ the steps
def _check_data_dir(data_dir: Path) -> None:
    """Raise :class:`StorageError` when ``data_dir`` is a file or cannot be created."""
    data_dir = Path(data_dir).expanduser().absolute()
    problem = unwritable(data_dir) if not data_dir.is_dir() else None
    if problem is not None and "read-only" not in problem and "not writable" not in problem:
        raise StorageError(f"{setting('data_dir', str(data_dir))} {problem}; {DATA_DIR_HINT} a folder you can write.",
                           setting="data_dir", path=data_dir)


def _way_out(folder: Path, command: str) -> str:
    """The end of a sentence: how to get going when ``folder`` cannot be written."""
    return (f"{DATA_DIR_HINT} a writable folder, or run {command} once from an account "
            f"or machine that can write in {folder}")


def _verify_unwritable(dataset: Dataset, settings: FetchSettings, command: str, problem: str) -> None:
    folder = dataset.folder
    where = folder.parent if unwritable(folder.parent) else folder
    pending = "the files it fetches and extracts again" if settings.force else dataset.pending_writes()
    if pending is not None:
        raise StorageError(f"{where} {problem}, so {pending} cannot be written there "
                           f"(to prepare {dataset.spec.name}); {_way_out(folder, command)}.", setting="data_dir",
                           path=where)
    report = check(dataset, command, quick=True)
    if not report.ok:
        raise VerificationError(report)
    warnings.warn(f"{where} {problem}: {dataset.spec.name} at {folder} passed verification, but the stamp that "
                  f"lets later runs skip the check cannot be written there, so it runs again each time; run "
                  f"{command} once where it is writable to record it.", stacklevel=4, category=Notice)


def _acquire(dataset: Dataset, settings: FetchSettings, command: str, remembered: Mapping[str, str]) -> dict[str, str]:
    """Put the raw data in place (parent, archives, the format's step); returns md5s computed on the way."""
    if dataset.parent is not None:  # read from another dataset's files: those first, as they are
        parent_settings = dataclasses.replace(settings, download=False, force=False, mirrors=())
        prepare(dataset.parent, parent_settings)
    spec, folder = dataset.spec, dataset.folder
    known: dict[str, str] = {}
    for archive in spec.archives:
        path = folder / archive.filename
        target = folder / archive.extract_to if archive.extract_to else None
        if not spec.auto_download:
            # Placed by hand or not at all (ImageNet): the format's step says what is missing.
            if path.exists():
                known[archive.filename] = check_placed_archive(path, archive, command, settings.progress, remembered)
            continue
        if target is not None and target.exists() and not settings.force and not path.exists():
            continue  # extracted earlier and the archive was deleted on purpose
        if (settings.force and settings.download) or not path.exists():
            known[archive.filename] = _fetch(archive, folder, settings)
        else:  # placed by hand (or left by an earlier run): the right file, whole, before extracting it
            known[archive.filename] = check_placed_archive(path, archive, command, settings.progress, remembered)
        if target is not None:
            safe_extract(path, target, progress=settings.progress)
            if not settings.keep_archives:
                path.unlink()
    known.update(dataset.build(force=settings.force))
    return known


def _fetch(archive: ArchiveSpec, folder: Path, settings: FetchSettings) -> str:
    """Download ``archive`` into ``folder``; returns its (checked) md5."""
    path = folder / archive.filename
    if not settings.download:
        raise dl.DownloadError(f"{path} is missing and {setting('download', False)}; place {archive.filename} there "
                               f"by hand (md5 {archive.md5}) or allow downloading.", setting="download", path=path)
    check_free_space(folder, archive.size + archive.extracted_size, f"download and extract {archive.filename}")
    urls = dl.candidate_urls(archive.filename, archive.urls, settings.mirrors)
    # force fetches again beside the archive and swaps it in only once its md5 matches, so a
    # failed re-download (no network) keeps the archive there was.
    landing = path.with_name(f".{archive.filename}.refetch") if path.exists() else path
    landing.unlink(missing_ok=True)
    dl.fetch(urls, landing, md5=archive.md5, size=archive.size if archive.size_known else None,
             retries=settings.retries, timeout=settings.timeout, progress=settings.progress)
    os.replace(landing, path)
    return archive.md5


def check_placed_archive(path: Path, archive: ArchiveSpec, command: str, progress: bool | None,
                         remembered: Mapping[str, str] | None = None) -> str:
    """Return the md5 of an archive found at ``path``, or raise naming how it differs from
    the official file (size first: a truncated 138 GB tar is not hashed). ``remembered``:
    md5s a stamp recorded for files that have not changed since (no second hash)."""
    size = path.stat().st_size
    expected = f"expected {archive.size:,} bytes with md5 {archive.md5}"
    if size != archive.size:
        raise dl.DownloadError(
            f"{path} is not the official {archive.filename}: it has {size:,} bytes, {expected}; it is truncated "
            f"or another file, so nothing was extracted: replace it with the official file, or delete it and "
            f"run {command} to download it.", path=path)
    digest = (remembered or {}).get(archive.filename) or dl.file_md5(path, progress=progress)
    if digest != archive.md5:
        raise dl.DownloadError(
            f"{path} is not the official {archive.filename}: it has the expected {size:,} bytes but md5 {digest}, "
            f"{expected}; the file is damaged or another one, so nothing was extracted: replace it with the "
            f"official file, or delete it and run {command} to download it.", path=path)
    return digest
