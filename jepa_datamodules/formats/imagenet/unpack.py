"""Unpack the official ILSVRC2012 files into ``root/train/<wnid>/`` and ``root/val/<wnid>/``.

Every member is vetted before anything is written (``storage.extract.tar_member_problem``, then
ImageNet's own rule: official tars hold plain files only). Each training class is unpacked into
``storage``'s staging (``train/.<wnid>.partial-<random>``) and renamed into place when complete,
and the sorted validation set is built the same way and swapped in (``storage.files.swap_in``),
so an interrupted run leaves nothing half-written under a final name, the next run's
``remove_stale_staging`` / ``clear_staging`` clears what it left, and a re-run resumes where it
stopped. Runs on one folder are serialised by the dataset's lock (``storage.locks.dataset_lock``),
the one ``prepare`` takes.
"""

from __future__ import annotations

import concurrent.futures as cf
import io
import logging
import os
import re
import shutil
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, NamedTuple, NoReturn

from ...errors import ExtractError, ImageNetSetupError, action
from ...progress import mode as progress_mode
from ...progress import progress_bar
from ...storage.extract import tar_member_problem
from ...storage.files import clear_staging, remove_path, remove_stale_staging, staging_folder, swap_in
from ...storage.locks import dataset_lock
from .detect import DEVKIT, TRAIN_TAR, VAL_NAME_RE, VAL_TAR, check_nesting, detect_source, manual_instructions, val_state
from .devkit import parse_devkit

__all__ = ["prepare_imagenet", "unpack_imagenet"]

log = logging.getLogger(__name__)

_CLASS_TAR_RE = re.compile(r"(n\d{8})\.tar")
_COPY_CHUNK = 1 << 20
# The fix most messages end with: prepare ImageNet again once the named file is in order.
_PREPARE = action("prepare", "imagenet")


# --------------------------------------------------------------------------- tar safety


def _safe_name(member: tarfile.TarInfo, archive: str, path: Path) -> str:
    """Return the member's plain file name, or refuse the archive if writing it could be unsafe.

    The shared vetting (``storage.extract.tar_member_problem``: absolute paths, '..', links
    out, devices) first; then ImageNet's own rule: official tars hold only regular files with
    plain names, so a link, a sub-folder or a backslash means a damaged or tampered archive.
    """
    name = member.name
    member_path = PurePosixPath(name)
    problem = tar_member_problem(member)
    if problem is None and "\\" in name:
        problem = "contains a backslash"
    elif problem is None and (member.issym() or member.islnk()):
        problem = "is a link"
    elif problem is None and not member.isreg():
        problem = "is not a regular file"
    elif problem is None and len(member_path.parts) != 1:
        problem = "is inside a sub-folder"
    if problem:
        raise ExtractError(
            f"Refusing to unpack {archive}: its member {name!r} {problem}, which official ImageNet archives never contain; "
            "download the file again from image-net.org.", path=path)
    return member_path.parts[0]


class _ArchiveSlice(io.RawIOBase):
    """Read-only view of bytes [start, start + size) of a binary file opened by the caller.

    Lets each worker open one class's tar inside the 138 GB train tar without copying it
    and without reading past it, even if the inner tar lacks its end-of-archive blocks.
    Each worker opens the train tar itself, so seeking the shared handle is race-free.
    """

    def __init__(self, file: BinaryIO, start: int, size: int) -> None:
        super().__init__()
        self._file, self._start, self._size, self._pos = file, start, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def read(self, n: int = -1) -> bytes:
        remaining = max(0, self._size - self._pos)
        n = remaining if n is None or n < 0 else min(n, remaining)
        chunks = []
        self._file.seek(self._start + self._pos)
        while n > 0:
            chunk = self._file.read(n)
            if not chunk:
                break  # the outer file is shorter than its header claims; tarfile reports it
            chunks.append(chunk)
            self._pos += len(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


# --------------------------------------------------------------------------- train


class _ClassTar(NamedTuple):
    wnid: str
    offset: int  # of the inner tar's data inside the train tar
    size: int


def _scan_train_tar(train_tar: Path) -> list[_ClassTar]:
    """List the per-class tars inside the train tar (headers only: tarfile seeks past the data)."""
    found: list[_ClassTar] = []
    try:
        with tarfile.open(train_tar, "r:") as tar:
            for member in tar:
                match = _CLASS_TAR_RE.fullmatch(member.name)
                if not (match and member.isreg()):
                    raise ImageNetSetupError(
                        f"{train_tar} contains {member.name!r}, but should hold only per-class <wnid>.tar files; "
                        "download it again from image-net.org.", path=train_tar)
                found.append(_ClassTar(match.group(1), member.offset_data, member.size))
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ImageNetSetupError(
            f"{train_tar} is incomplete or damaged ({exc}); finish or restart the download from image-net.org.",
            path=train_tar) from exc
    if not found:
        raise ImageNetSetupError(f"{train_tar} is empty; download it again from image-net.org.", path=train_tar)
    return found


def _extract_class(train_tar: str, wnid: str, offset: int, size: int, train_dir: str) -> int:
    """Unpack one class's tar into staging (``train/.<wnid>.partial-<random>``) and rename it to
    ``train/<wnid>``. Runs in a worker process. Returns the number of images written.
    """
    final = Path(train_dir) / wnid
    tmp = staging_folder(final)
    archive = f"{TRAIN_TAR} (class tar {wnid}.tar)"
    try:
        count = 0
        with open(train_tar, "rb", buffering=0) as outer:
            view = _ArchiveSlice(outer, offset, size)
            try:
                with tarfile.open(fileobj=view, mode="r:") as inner:
                    for member in inner:
                        name = _safe_name(member, archive, Path(train_tar))  # checked before anything is written
                        src = inner.extractfile(member)
                        assert src is not None  # _safe_name admits regular files only
                        with src, open(tmp / name, "wb") as dst:
                            shutil.copyfileobj(src, dst, _COPY_CHUNK)
                        count += 1
            except tarfile.TarError as exc:
                raise ImageNetSetupError(f"{archive} is damaged ({exc}); download {TRAIN_TAR} again from image-net.org.",
                                         path=train_tar) from exc
        if count == 0:
            raise ImageNetSetupError(f"{archive} holds no images; download {TRAIN_TAR} again from image-net.org.",
                                     path=train_tar)
        os.rename(tmp, final)
    except BaseException:
        remove_path(tmp)
        raise
    return count


def _prepare_train(root: Path, workers: int, progress: str) -> None:
    train_tar = root / TRAIN_TAR
    train_dir = root / "train"
    train_dir.mkdir(exist_ok=True)
    clear_staging(train_dir)  # no other prepare run is active (we hold the lock): all of it is stale

    classes = _scan_train_tar(train_tar)
    # A class folder exists only once its extraction finished (it appears by rename), so it is complete.
    todo = [c for c in classes if not (train_dir / c.wnid).is_dir()]
    if not todo:
        return
    log.info("Unpacking %d of %d ImageNet training classes into %s", len(todo), len(classes), train_dir)
    jobs = max(1, min(workers, len(todo)))
    with progress_bar(len(todo), "ImageNet train classes", unit="classes", progress=progress) as bar:
        if jobs == 1:
            for c in todo:  # in-process: no pool start-up cost for a single class or workers=1
                _extract_class(str(train_tar), c.wnid, c.offset, c.size, str(train_dir))
                bar.update()
            return
        with cf.ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(_extract_class, str(train_tar), c.wnid, c.offset, c.size, str(train_dir)) for c in todo]
            try:
                for future in cf.as_completed(futures):
                    future.result()
                    bar.update()
            except BaseException:
                # Finish the classes in flight (each is atomic) but start no more.
                for future in futures:
                    future.cancel()
                raise


# --------------------------------------------------------------------------- val


def _flat_val_files(val_dir: Path, expected: int) -> dict[int, Path] | None:
    """Index a flat validation folder by image number; None if it is incomplete.

    Raises if it holds anything but ``ILSVRC2012_val_*.JPEG`` files, because the folder is
    deleted once its images are sorted and nothing of the user's may be lost with it.
    """
    files: dict[int, Path] = {}
    with os.scandir(val_dir) as it:
        for entry in it:
            if entry.name.startswith("."):
                continue
            match = VAL_NAME_RE.fullmatch(entry.name)
            if not (match and entry.is_file()):
                raise ImageNetSetupError(
                    f"{val_dir} holds {entry.name!r} besides the ILSVRC2012_val_*.JPEG images; "
                    f"move it out of that folder and run {_PREPARE} again.", path=Path(entry.path))
            number = int(match.group(1))
            if not 1 <= number <= expected:
                raise ImageNetSetupError(
                    f"{val_dir} holds {entry.name}, but the devkit labels only {expected} validation images; "
                    "remove that file or use the official ILSVRC2012 validation set.", path=Path(entry.path))
            files[number] = Path(entry.path)
    return files if len(files) == expected else None


def _link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link (instant, no extra space) or copy when the folders are on different file systems.

    A copy is a new file with the mode the umask gives (``copyfile``, not ``copy2``, which would
    carry over the source's permission bits)."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _prepare_val(root: Path, progress: str) -> None:
    val_dir = root / "val"
    state = val_state(val_dir)
    if state == "sorted":
        return
    if state == "other":
        raise ImageNetSetupError(
            f"{val_dir} exists but holds neither val/<wnid>/ class folders nor ILSVRC2012_val_*.JPEG images; "
            f"move it aside and run {_PREPARE} again.", path=val_dir)
    id_to_wnid, truth = parse_devkit(root / DEVKIT)
    expected = len(truth)
    val_tar = root / VAL_TAR

    flat = _flat_val_files(val_dir, expected) if state == "flat" else None
    if flat is None and not val_tar.is_file():
        if state != "flat":
            raise ImageNetSetupError(manual_instructions(root), path=root)
        with os.scandir(val_dir) as it:
            have = sum(1 for e in it if VAL_NAME_RE.fullmatch(e.name))
        raise ImageNetSetupError(
            f"{val_dir} holds {have} of the {expected} validation images; copy the missing ones there "
            f"or put {VAL_TAR} in {root}, then run {_PREPARE} again.", path=val_dir)

    tmp = staging_folder(val_dir)
    try:
        made: set[str] = set()

        def target(number: int, name: str) -> Path:
            wnid = id_to_wnid[truth[number - 1]]
            if wnid not in made:
                (tmp / wnid).mkdir(exist_ok=True)
                made.add(wnid)
            return tmp / wnid / name

        with progress_bar(expected, "ImageNet val images", unit="images", progress=progress) as bar:
            if flat is not None:
                log.info("Sorting %d flat validation images in %s into class folders", expected, val_dir)
                for number, src in flat.items():
                    _link_or_copy(src, target(number, src.name))
                    bar.update()
            else:
                log.info("Unpacking %s into class folders", val_tar)
                _unpack_val_tar(val_tar, expected, target, bar)
        swap_in(tmp, val_dir)  # a flat val/ (or a link to one) is removed once the sorted copy is in place
    except BaseException:
        remove_path(tmp)
        raise


def _unpack_val_tar(val_tar: Path, expected: int, target: Callable[[int, str], Path], bar: Any) -> None:
    """Stream the val tar, writing each image where ``target`` says; refuses unexpected members."""
    seen: set[int] = set()
    try:
        with tarfile.open(val_tar, "r:*") as tar:
            for member in tar:
                name = _safe_name(member, VAL_TAR, val_tar)
                match = VAL_NAME_RE.fullmatch(name)
                if not match or not 1 <= int(match.group(1)) <= expected:
                    raise ImageNetSetupError(
                        f"{val_tar} contains {name!r}, which is not one of the {expected} validation images the devkit labels; "
                        "download it again from image-net.org.", path=val_tar)
                number = int(match.group(1))
                src = tar.extractfile(member)
                assert src is not None  # _safe_name admits regular files only
                with src, open(target(number, name), "wb") as dst:
                    shutil.copyfileobj(src, dst, _COPY_CHUNK)
                seen.add(number)
                bar.update()
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise ImageNetSetupError(f"{val_tar} is damaged ({exc}); download it again from image-net.org.", path=val_tar) from exc
    if len(seen) != expected:
        raise ImageNetSetupError(
            f"{val_tar} holds {len(seen)} of the {expected} validation images the devkit labels; "
            "download it again from image-net.org.", path=val_tar)


# --------------------------------------------------------------------------- entry points


def prepare_imagenet(root: Path, *, workers: int | None = None, progress: bool | None = None) -> None:
    """Build ``root/train/<wnid>/*.JPEG`` and ``root/val/<wnid>/*.JPEG`` from what :func:`detect_source` finds.

    Resumable: training classes already unpacked are skipped, half-unpacked ones (left by
    an interruption) are redone, and ``val/`` appears only once complete. With the layout
    already in place (and no archives) it returns at once without writing, so read-only
    shared copies of ImageNet work. Otherwise it holds the dataset's lock (``dataset_lock(root)``,
    the file ``.<root name>.lock`` beside ``root``: the one ``prepare_data()`` takes) and first
    clears what killed runs left (``remove_stale_staging``). The archives are left in place.

    Args:
        root: the ImageNet folder.
        workers: default None = ``min(8, os.cpu_count())``; processes unpacking training
            classes in parallel (1 = in this process).
        progress: default None = bars on a terminal, plain lines otherwise; False = silent
            (see progress.py).

    Raises:
        ImageNetSetupError: nothing usable is in ``root`` (the message is
            :func:`manual_instructions`), an archive is damaged, or ``root``'s folder cannot hold the lock.
        ExtractError: an archive holds a member that is unsafe to write (a link, a path out).
    """
    root = Path(root)
    source = detect_source(root)
    if source is None:
        _refuse(root)
    if source == "layout":
        return
    try:
        lock = dataset_lock(root)
        lock.acquire()
    except OSError as exc:
        raise ImageNetSetupError(f"Cannot write the lock file beside {root} ({exc}); make {root.parent} writable "
                                 "or unpack ImageNet somewhere writable.", path=root.parent) from exc
    try:
        remove_stale_staging(root)  # also puts back a val/ set aside by a swap that was cut short
        unpack_imagenet(root, workers=workers, progress=progress)
    finally:
        lock.release()


def unpack_imagenet(root: Path, *, workers: int | None = None, progress: bool | None = None) -> None:
    """What :func:`prepare_imagenet` does once it holds the lock: the caller holds
    ``dataset_lock(root)`` and has run ``remove_stale_staging(root)`` (``prepare`` does both
    before a Dataset's ``build()``). Arguments and errors as :func:`prepare_imagenet`'s."""
    root = Path(root)
    workers = min(8, os.cpu_count() or 1) if workers is None else workers
    progress = progress_mode(progress)
    source = detect_source(root)  # again: another run may have finished while this one waited for the lock
    if source is None:
        _refuse(root)
    if source == "archives":
        _prepare_train(root, workers, progress)
    if source != "layout":
        _prepare_val(root, progress)


def _refuse(root: Path) -> NoReturn:
    """Raise the error for a ``root`` with no usable ImageNet: a split unpacked one level too
    deep is named as such, anything else gets the manual steps."""
    for split in ("train", "val"):
        check_nesting(root / split)
    raise ImageNetSetupError(manual_instructions(root), path=root)
