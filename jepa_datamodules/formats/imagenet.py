"""Turn the official ILSVRC2012 (ImageNet-1k) downloads into ``train/<wnid>/``, ``val/<wnid>/``.

ImageNet cannot be downloaded without an image-net.org account, so this module starts
from whatever the user has put in ``root``:

* the three official files (see :func:`manual_instructions`),
* an already unpacked ``train/<wnid>/*.JPEG`` + ``val/<wnid>/*.JPEG`` layout, or
* an unpacked ``train/<wnid>/`` plus the flat validation folder (or tar) and the devkit,

and builds the standard layout in place. Every step that writes goes through a hidden
temporary folder that is renamed into place when complete, so an interrupted run leaves
nothing half-written under a final name and a re-run resumes where it stopped.

It also ships the 100-class ImageNet subset list used by CMC and many JEPA papers
(:func:`load_class_list`).
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import importlib.resources
import io
import logging
import os
import re
import shutil
import tarfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, NamedTuple

import numpy as np
from filelock import FileLock

from ..catalog import SPECS, DatasetSpec, parquet_spec
from ..choices import check_choice
from ..errors import ConfigError, ImageNetSetupError
from ..progress import mode as progress_mode
from ..progress import progress_bar
from ..storage.extract import tar_member_problem
from ..storage.verify import VerifyReport
from . import hfparquet
from .base import Source
from .dataset import Dataset, open_dataset, verify_dataset
from .hfparquet import parquet_instructions
from .imagefolder import IMG_EXTENSIONS, ilsvrc_names, write_class_folders
from .writing import gzip_bytes, tar_bytes

__all__ = [
    "TRAIN_TAR",
    "VAL_TAR",
    "DEVKIT",
    "IMAGENET100_SHA256",
    "ImageNetSetupError",
    "detect_source",
    "prepare_imagenet",
    "parse_devkit",
    "manual_instructions",
    "load_class_list",
]

log = logging.getLogger(__name__)

# The three official files are the catalog's ImageNet archives (train, val, devkit, in that
# order); sizes as image-net.org's ILSVRC2012 download page words them.
TRAIN_TAR, VAL_TAR, DEVKIT = (archive.filename for archive in SPECS["imagenet"].archives)
_SIZES = {TRAIN_TAR: "138 GB", VAL_TAR: "6.3 GB", DEVKIT: "2.5 MB"}
_DESCRIPTIONS = {TRAIN_TAR: "training images", VAL_TAR: "validation images", DEVKIT: "development kit, Task 1 & 2"}

#: sha256 of resources/imagenet100.txt, the CMC list (github.com/HobbitLong/CMC, imagenet100.txt).
IMAGENET100_SHA256 = "79f3f1552ccc478ce24bd934b4573625db584ddc1f4643ae23c994a94cb11397"
_IMAGENET100_RESOURCE = ("resources", "imagenet100.txt")

_WNID_RE = re.compile(r"n\d{8}")
_VAL_NAME_RE = re.compile(r"ILSVRC2012_val_(\d{8})\.JPEG")
_CLASS_TAR_RE = re.compile(r"(n\d{8})\.tar")

# Hidden names, so that index_image_folder and detect_source never take them for data.
_PARTIAL_SUFFIX = ".partial"
_VAL_PARTIAL = ".val.partial"
_VAL_OLD = ".val.flat-old"
_LOCK_NAME = ".imagenet-prepare.lock"

_COPY_CHUNK = 1 << 20




# --------------------------------------------------------------------------- detection


def _has_wnid_images(split_dir: Path) -> bool:
    """True if some ``split_dir/<wnid>/`` folder holds at least one image (stops at the first)."""
    if not split_dir.is_dir():
        return False
    with os.scandir(split_dir) as classes:
        for cls in classes:
            if _WNID_RE.fullmatch(cls.name) and cls.is_dir() and _has_wnid_images_in(Path(cls.path)):
                return True
    return False


def check_nesting(split_dir: Path) -> None:
    """Refuse a split unpacked one level too deep, ``<split>/<wnid>/<wnid>/*.JPEG`` (torchvision's
    test fake has it, and so do many hand unpackings): read as it is, it would have no images.
    Looks only as far as the first class folder that holds images, so a good layout costs one listing."""
    if not split_dir.is_dir():
        return
    with os.scandir(split_dir) as classes:
        wnids = sorted(c.name for c in classes if _WNID_RE.fullmatch(c.name) and c.is_dir())
    for wnid in wnids:
        with os.scandir(split_dir / wnid) as entries:
            entries = list(entries)
        if any(_is_image(e.name) for e in entries):
            return  # images where they belong
        inner = next((e.name for e in entries if e.is_dir() and _has_wnid_images_in(Path(e.path))), None)
        if inner is not None:
            split = split_dir.name
            raise ImageNetSetupError(
                f"{split_dir}/{wnid}/ holds its images one level too deep, in {split}/{wnid}/{inner}/ "
                f"(the layout is {split}/<wnid>/<image>.JPEG); move each class folder's images up one level, "
                f"e.g. `cd {split_dir} && for d in */; do mv \"$d\"*/* \"$d\" && rmdir \"$d\"*/; done`, then prepare again.")


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMG_EXTENSIONS) and not name.startswith(".")


def _has_wnid_images_in(folder: Path) -> bool:
    """True if ``folder`` itself holds an image."""
    with os.scandir(folder) as files:
        return any(_is_image(f.name) for f in files)


def _current_val_dir(root: Path) -> Path:
    """The folder holding validation data: ``val/``, or the flat folder set aside mid-swap."""
    val = root / "val"
    old = root / _VAL_OLD
    # Only between the two renames of _swap_in_val can val/ be missing while the old flat copy exists.
    if not val.exists() and old.is_dir():
        return old
    return val


def _val_state(val_dir: Path) -> str:
    """Classify a validation folder: "missing", "empty", "flat", "sorted" or "other"."""
    if not val_dir.is_dir():
        return "missing"
    has_flat = has_entries = False
    with os.scandir(val_dir) as it:
        for entry in it:
            if entry.name.startswith("."):
                continue
            has_entries = True
            if _VAL_NAME_RE.fullmatch(entry.name) and entry.is_file():
                has_flat = True
                break
    if has_flat:
        return "flat"
    if not has_entries:
        return "empty"
    return "sorted" if _has_wnid_images(val_dir) else "other"


def detect_source(root: Path) -> str | None:
    """Say what ImageNet data ``root`` holds, in the order :func:`prepare_imagenet` uses it.

    Returns:
        ``"archives"``: :data:`TRAIN_TAR` is in ``root`` and the validation set can be
        built: :data:`VAL_TAR` or a flat ``val/`` folder of ``ILSVRC2012_val_*.JPEG``
        plus :data:`DEVKIT`, or an already sorted ``val/<wnid>/``. (Checked first so
        that a re-run with the archives present completes a partly unpacked layout.)

        ``"layout"``: ``root/train/<wnid>/`` and ``root/val/<wnid>/`` hold images (no
        devkit needed; nothing to do).

        ``"flat_val"``: ``root/train/<wnid>/`` holds images, :data:`DEVKIT` is in
        ``root``, and the validation images are a flat ``val/`` folder or :data:`VAL_TAR`.

        ``None``: nothing usable (see :func:`manual_instructions`).
    """
    root = Path(root)
    if not root.is_dir():
        return None
    train_tar = (root / TRAIN_TAR).is_file()
    val_tar = (root / VAL_TAR).is_file()
    devkit = (root / DEVKIT).is_file()
    val_state = _val_state(_current_val_dir(root))
    val_buildable = devkit and (val_tar or val_state == "flat")
    if train_tar and (val_buildable or val_state == "sorted"):
        return "archives"
    train_unpacked = _has_wnid_images(root / "train")
    if train_unpacked and val_state == "sorted":
        return "layout"
    if train_unpacked and val_buildable:
        return "flat_val"
    return None


def manual_instructions(root: Path) -> str:
    """The step-by-step message shown when ``root`` holds no usable ImageNet."""
    root = Path(root)
    files = "\n".join(
        f"       {name:<30} ({_DESCRIPTIONS[name]}, {_SIZES[name]})" for name in (TRAIN_TAR, VAL_TAR, DEVKIT)
    )
    return (
        f"ImageNet-1k was not found in {root}, and it cannot be downloaded automatically. To set it up:\n"
        "  1. Register at https://image-net.org/ (sign up, agree to the terms of access) and log in.\n"
        "  2. From the ILSVRC 2012 download page "
        "(https://image-net.org/challenges/LSVRC/2012/2012-downloads.php) download these three files:\n"
        f"{files}\n"
        f"  3. Put the three files, unopened, in {root}\n"
        f"     (unpacking needs about 150 GB more free space there; the files can be deleted afterwards).\n"
        f"     Alternatively, if you already have ImageNet unpacked as train/<wnid>/*.JPEG and\n"
        f"     val/<wnid>/*.JPEG, put or symlink those two folders in {root} instead (or train/<wnid>/\n"
        f"     with the flat folder of ILSVRC2012_val_*.JPEG images as val/, plus {DEVKIT}).\n"
        "  4. Run `jepa-prepare data=imagenet`. If your data lives somewhere else, point to it with\n"
        "     `jepa-prepare data=imagenet paths.data_dir=/path/to/data` or by setting $JEPA_DATA_DIR.\n"
        + parquet_instructions(root)
    )


# --------------------------------------------------------------------------- devkit


def _devkit_member(tar: tarfile.TarFile, *tail: str) -> bytes:
    """Read the devkit file whose path ends in ``tail`` (the top folder name is not relied on)."""
    for member in tar:
        parts = PurePosixPath(member.name).parts
        if member.isreg() and parts[-len(tail) :] == tail:
            handle = tar.extractfile(member)
            assert handle is not None  # regular members always have a file object
            return handle.read()
    raise ImageNetSetupError(
        f"{tar.name} has no {'/'.join(tail)}, so it is not the ILSVRC2012 devkit; "
        f"download {DEVKIT} again from image-net.org."
    )


def parse_devkit(devkit_path: Path) -> tuple[dict[int, str], list[int]]:
    """Read class ids and validation labels from ``ILSVRC2012_devkit_t12.tar.gz``.

    ``data/meta.mat`` lists 1,860 synsets; the 1,000 with ``num_children == 0`` are the
    classes (non-leaf synsets are dropped). ``data/ILSVRC2012_validation_ground_truth.txt``
    holds one ILSVRC2012_ID per line, line ``i`` labelling ``ILSVRC2012_val_{i:08d}.JPEG``
    (the i-th file name in sorted order).

    Returns:
        ``({ILSVRC2012_ID: wnid} for the leaf synsets, [ILSVRC2012_ID of each val image])``.

    Raises:
        ImageNetSetupError: the file is unreadable or not the ILSVRC2012 devkit, or scipy
            (needed to read the MATLAB file) is not installed.
    """
    devkit_path = Path(devkit_path)
    try:
        import scipy.io
    except ImportError as exc:
        raise ImageNetSetupError("Reading the ImageNet devkit (its meta.mat) needs scipy, which is not installed; "
                                 "install it with `pip install 'jepa-datamodules[imagenet]'` (or `pip install scipy`).") from exc

    def bad(what: str) -> ImageNetSetupError:
        return ImageNetSetupError(f"{devkit_path} {what}; download {DEVKIT} again from image-net.org.")

    try:
        with tarfile.open(devkit_path, "r:*") as tar:
            meta = _devkit_member(tar, "data", "meta.mat")
        with tarfile.open(devkit_path, "r:*") as tar:
            truth = _devkit_member(tar, "data", "ILSVRC2012_validation_ground_truth.txt")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise bad(f"could not be read as a .tar.gz archive ({exc})") from exc

    try:
        mat = scipy.io.loadmat(io.BytesIO(meta), squeeze_me=True)
        synsets = np.atleast_1d(mat["synsets"]).ravel()
        ids = [int(x) for x in synsets["ILSVRC2012_ID"]]
        wnids = [str(x) for x in synsets["WNID"]]
        children = [int(x) for x in synsets["num_children"]]
    except Exception as exc:  # loadmat raises many types on malformed input; all mean "bad devkit"
        raise bad(f"has an unreadable data/meta.mat ({type(exc).__name__}: {exc})") from exc

    id_to_wnid: dict[int, str] = {}
    for ilsvrc_id, wnid, n_children in zip(ids, wnids, children):
        if n_children != 0:
            continue  # inner WordNet nodes (e.g. "dog") are not classes
        if not _WNID_RE.fullmatch(wnid) or ilsvrc_id in id_to_wnid:
            raise bad(f"has a malformed synset entry (ILSVRC2012_ID {ilsvrc_id}, WNID {wnid!r}) in data/meta.mat")
        id_to_wnid[ilsvrc_id] = wnid
    if len(set(id_to_wnid.values())) != len(id_to_wnid):
        raise bad("lists a WNID twice among the leaf synsets of data/meta.mat")

    try:
        truth_ids = [int(line) for line in truth.decode("ascii").split()]
    except (UnicodeDecodeError, ValueError) as exc:
        raise bad("has a validation ground-truth file that is not one integer per line") from exc
    unknown = sorted(set(truth_ids) - id_to_wnid.keys())
    if unknown or not truth_ids:
        raise bad(f"has validation labels that name no class (e.g. {unknown[:3]})" if unknown else "has no validation labels")
    return id_to_wnid, truth_ids


# --------------------------------------------------------------------------- tar safety


def _safe_name(member: tarfile.TarInfo, archive: str) -> str:
    """Return the member's plain file name, or refuse the archive if writing it could be unsafe.

    The shared vetting (``storage.extract.tar_member_problem``: absolute paths, '..', links
    out, devices) first; then ImageNet's own rule: official tars hold only regular files with
    plain names, so a link, a sub-folder or a backslash means a damaged or tampered archive.
    """
    name = member.name
    path = PurePosixPath(name)
    problem = tar_member_problem(member)
    if problem is None and "\\" in name:
        problem = "contains a backslash"
    elif problem is None and (member.issym() or member.islnk()):
        problem = "is a link"
    elif problem is None and not member.isreg():
        problem = "is not a regular file"
    elif problem is None and len(path.parts) != 1:
        problem = "is inside a sub-folder"
    if problem:
        raise ImageNetSetupError(
            f"Refusing to unpack {archive}: its member {name!r} {problem}, which official ImageNet archives never contain; "
            "download the file again from image-net.org."
        )
    return path.parts[0]


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
                        "download it again from image-net.org."
                    )
                found.append(_ClassTar(match.group(1), member.offset_data, member.size))
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ImageNetSetupError(
            f"{train_tar} is incomplete or damaged ({exc}); finish or restart the download from image-net.org."
        ) from exc
    if not found:
        raise ImageNetSetupError(f"{train_tar} is empty; download it again from image-net.org.")
    return found


def _partial_dir(train_dir: Path, wnid: str) -> Path:
    """Hidden temporary folder beside ``train/<wnid>`` where that class is unpacked."""
    return train_dir / f".{wnid}{_PARTIAL_SUFFIX}"


def _extract_class(train_tar: str, wnid: str, offset: int, size: int, train_dir: str) -> int:
    """Unpack one class's tar to ``train/.<wnid>.partial`` and rename it to ``train/<wnid>``.

    Runs in a worker process. Returns the number of images written.
    """
    final = Path(train_dir) / wnid
    tmp = _partial_dir(Path(train_dir), wnid)
    shutil.rmtree(tmp, ignore_errors=True)  # leftovers of an interrupted run
    tmp.mkdir()
    archive = f"{TRAIN_TAR} (class tar {wnid}.tar)"
    try:
        count = 0
        with open(train_tar, "rb", buffering=0) as outer:
            view = _ArchiveSlice(outer, offset, size)
            try:
                with tarfile.open(fileobj=view, mode="r:") as inner:
                    for member in inner:
                        name = _safe_name(member, archive)  # checked before anything is written
                        src = inner.extractfile(member)
                        assert src is not None  # _safe_name admits regular files only
                        with src, open(tmp / name, "wb") as dst:
                            shutil.copyfileobj(src, dst, _COPY_CHUNK)
                        count += 1
            except tarfile.TarError as exc:
                raise ImageNetSetupError(f"{archive} is damaged ({exc}); download {TRAIN_TAR} again from image-net.org.") from exc
        if count == 0:
            raise ImageNetSetupError(f"{archive} holds no images; download {TRAIN_TAR} again from image-net.org.")
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return count


def _prepare_train(root: Path, workers: int, progress: str) -> None:
    train_tar = root / TRAIN_TAR
    train_dir = root / "train"
    train_dir.mkdir(exist_ok=True)
    # No other prepare run is active (we hold the lock), so every partial folder is stale.
    with os.scandir(train_dir) as it:
        stale = [Path(e.path) for e in it if e.name.startswith(".") and e.name.endswith(_PARTIAL_SUFFIX)]
    for path in stale:
        shutil.rmtree(path)

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
            match = _VAL_NAME_RE.fullmatch(entry.name)
            if not (match and entry.is_file()):
                raise ImageNetSetupError(
                    f"{val_dir} holds {entry.name!r} besides the ILSVRC2012_val_*.JPEG images; "
                    "move it out of that folder and run `jepa-prepare data=imagenet` again."
                )
            number = int(match.group(1))
            if not 1 <= number <= expected:
                raise ImageNetSetupError(
                    f"{val_dir} holds {entry.name}, but the devkit labels only {expected} validation images; "
                    "remove that file or use the official ILSVRC2012 validation set."
                )
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


def _swap_in_val(root: Path, built: Path) -> None:
    """Put the fully built ``built`` folder at ``root/val``, replacing an empty or flat ``val/``."""
    val = root / "val"
    old = root / _VAL_OLD
    if val.exists() or val.is_symlink():
        os.rename(val, old)
    os.rename(built, val)
    _remove_old_val(old)


def _remove_old_val(old: Path) -> None:
    if old.is_symlink():
        old.unlink()  # the user's own folder behind the link is left alone
    elif old.exists():
        shutil.rmtree(old)


def _recover_val_swap(root: Path) -> None:
    """Finish or undo a _swap_in_val that was interrupted between its renames."""
    old = root / _VAL_OLD
    if not (old.exists() or old.is_symlink()):
        return
    if (root / "val").exists():
        _remove_old_val(old)
    else:
        os.rename(old, root / "val")


def _prepare_val(root: Path, progress: str) -> None:
    val_dir = root / "val"
    state = _val_state(val_dir)
    if state == "sorted":
        return
    if state == "other":
        raise ImageNetSetupError(
            f"{val_dir} exists but holds neither val/<wnid>/ class folders nor ILSVRC2012_val_*.JPEG images; "
            "move it aside and run `jepa-prepare data=imagenet` again."
        )
    id_to_wnid, truth = parse_devkit(root / DEVKIT)
    expected = len(truth)
    tmp = root / _VAL_PARTIAL
    shutil.rmtree(tmp, ignore_errors=True)  # leftovers of an interrupted run
    val_tar = root / VAL_TAR

    flat = _flat_val_files(val_dir, expected) if state == "flat" else None
    if flat is None and not val_tar.is_file():
        if state != "flat":
            raise ImageNetSetupError(manual_instructions(root))
        with os.scandir(val_dir) as it:
            have = sum(1 for e in it if _VAL_NAME_RE.fullmatch(e.name))
        raise ImageNetSetupError(
            f"{val_dir} holds {have} of the {expected} validation images; copy the missing ones there "
            f"or put {VAL_TAR} in {root}, then run `jepa-prepare data=imagenet` again."
        )

    tmp.mkdir()
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
        _swap_in_val(root, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _unpack_val_tar(val_tar: Path, expected: int, target: Callable[[int, str], Path], bar: Any) -> None:
    """Stream the val tar, writing each image where ``target`` says; refuses unexpected members."""
    seen: set[int] = set()
    try:
        with tarfile.open(val_tar, "r:*") as tar:
            for member in tar:
                name = _safe_name(member, VAL_TAR)
                match = _VAL_NAME_RE.fullmatch(name)
                if not match or not 1 <= int(match.group(1)) <= expected:
                    raise ImageNetSetupError(
                        f"{val_tar} contains {name!r}, which is not one of the {expected} validation images the devkit labels; "
                        "download it again from image-net.org."
                    )
                number = int(match.group(1))
                src = tar.extractfile(member)
                assert src is not None  # _safe_name admits regular files only
                with src, open(target(number, name), "wb") as dst:
                    shutil.copyfileobj(src, dst, _COPY_CHUNK)
                seen.add(number)
                bar.update()
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise ImageNetSetupError(f"{val_tar} is damaged ({exc}); download it again from image-net.org.") from exc
    if len(seen) != expected:
        raise ImageNetSetupError(
            f"{val_tar} holds {len(seen)} of the {expected} validation images the devkit labels; download it again from image-net.org."
        )


# --------------------------------------------------------------------------- entry point


def prepare_imagenet(root: Path, *, workers: int | None = None, progress: bool | None = None) -> None:
    """Build ``root/train/<wnid>/*.JPEG`` and ``root/val/<wnid>/*.JPEG`` from what :func:`detect_source` finds.

    Resumable: training classes already unpacked are skipped, half-unpacked ones (left by
    an interruption) are redone, and ``val/`` appears only once complete. With the layout
    already in place (and no archives) it returns at once without writing, so read-only
    shared copies of ImageNet work. Runs on the same ``root`` are serialised by a lock
    file, ``root/.imagenet-prepare.lock``. The archives are left in place.

    Args:
        root: the ImageNet folder.
        workers: default None = ``min(8, os.cpu_count())``; processes unpacking training
            classes in parallel (1 = in this process).
        progress: default None = bars on a terminal, plain lines otherwise; False = silent
            (see progress.py).

    Raises:
        ImageNetSetupError: nothing usable is in ``root`` (the message is
            :func:`manual_instructions`), or an archive is damaged or unsafe.
    """
    root = Path(root)
    if workers is None:
        workers = min(8, os.cpu_count() or 1)
    progress = progress_mode(progress)

    source = detect_source(root)
    if source is None:
        for split in ("train", "val"):
            check_nesting(root / split)
        raise ImageNetSetupError(manual_instructions(root))
    if source == "layout":
        return
    try:
        lock = FileLock(str(root / _LOCK_NAME))
        lock.acquire()
    except OSError as exc:
        raise ImageNetSetupError(f"Cannot write in {root} ({exc}); make it writable or unpack ImageNet somewhere writable.") from exc
    try:
        _recover_val_swap(root)
        # Another run may have finished while we waited for the lock.
        source = detect_source(root)
        if source is None:
            raise ImageNetSetupError(manual_instructions(root))
        if source == "archives":
            _prepare_train(root, workers, progress)
        if source != "layout":
            _prepare_val(root, progress)
    finally:
        lock.release()


# --------------------------------------------------------------------------- the datasets
#: Where ``ImageNetDataModule(source=...)`` reads the images from.
IMAGENET_SOURCES = ("auto", "folders", "parquet")


class ImageNetDataset(Dataset):
    """ImageNet-1k on disk, from the official files (unpacked by :func:`prepare_imagenet`) or
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
        if not self.parquet:  # the shards need no unpacking; verify() checks shards, rows and a sample
            prepare_imagenet(self.folder, progress=self.progress)
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
        # Counts come from the parent: whatever ImageNet-1k holds for these classes.
        counts = {split: len(self.open_split(split)) for split in self.spec.splits}
        report = verify_dataset(self.spec.replace(archives=()), self.folder, self.open_split, splits=counts, full=full,
                                num_classes=self.num_classes, seed=self.seed)
        for split, count in counts.items():
            report.add(f"images {split}", "> 0", count, count > 0)
        return report

    def tracked_files(self) -> list[str]:
        parent = self.parent.folder
        return [str(parent / rel) for rel in self.parent.tracked_files()
                if rel not in {a.filename for a in self.parent.spec.archives}]


def dataset_type(spec: DatasetSpec) -> type[Dataset]:
    return ImageNetSubset if spec.parent else ImageNetDataset


# --------------------------------------------------------------------------- class lists


def _parse_class_list(text: str, source: str) -> list[str]:
    wnids: list[str] = []
    first_line: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if not _WNID_RE.fullmatch(line):
            raise ConfigError(
                f"{source} line {number}: {line!r} is not a WordNet id like n01440764; put one wnid per line."
            )
        if line in first_line:
            raise ConfigError(f"{source} line {number}: {line} already appears on line {first_line[line]}; list each class once.")
        first_line[line] = number
        wnids.append(line)
    if not wnids:
        raise ConfigError(f"{source} lists no classes; put one wnid (like n01440764) per line.")
    return wnids


def load_class_list(path: Path | None = None) -> list[str]:
    """Read a list of ImageNet classes (wnids), in file order.

    Args:
        path: default None = the packaged ImageNet-100 list of CMC (Tian et al. 2019), whose
            sha256 is checked against :data:`IMAGENET100_SHA256`. Otherwise a text file with
            one wnid per line; blank lines and ``#`` comments are ignored.

    Raises:
        RuntimeError: the packaged list does not match its sha256 (a damaged install).
        ValueError: a line of the file is not a wnid or repeats one (the line number is named).
    """
    if path is None:
        data = importlib.resources.files("jepa_datamodules").joinpath(*_IMAGENET100_RESOURCE).read_bytes()
        actual = hashlib.sha256(data).hexdigest()
        if actual != IMAGENET100_SHA256:
            raise RuntimeError(
                f"The packaged ImageNet-100 class list has sha256 {actual}, expected {IMAGENET100_SHA256}; "
                "reinstall jepa_datamodules."
            )
        return _parse_class_list(data.decode("ascii"), "packaged imagenet100.txt")
    path = Path(path)
    return _parse_class_list(path.read_text(encoding="utf-8"), str(path))


# ================================================== writing a small copy (test fakes, bench stand-ins)


#: Real inner WordNet nodes of ILSVRC2012's meta.mat ("entity", "physical entity"); the writer
#: adds them as non-leaf synsets, which a correct devkit parser must ignore.
NON_LEAF_WNIDS = ("n00001740", "n00001930")
DEVKIT_META = "ILSVRC2012_devkit_t12/data/meta.mat"
DEVKIT_TRUTH = "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt"


def write_imagenet_layout(folder: Path, labels: Mapping[str, Sequence[str]],
                          jpeg: Callable[[], bytes]) -> dict[str, list[tuple[str, str]]]:
    """Write the prepared layout ``folder/<split>/<wnid>/<file>`` (what :func:`prepare_imagenet` builds).

    ``labels``: {split: wnid of each image} (see :func:`~.imagefolder.ilsvrc_names`); ``jpeg()``
    gives the next image's bytes. Existing files are overwritten. Returns the names written.
    """
    names = ilsvrc_names(labels)
    write_class_folders(folder, names, jpeg)
    return names


def _meta_mat(leaf_ids: Mapping[str, int]) -> bytes:
    """meta.mat bytes in the devkit's structure: leaves by ILSVRC2012_ID, then two inner nodes."""
    import scipy.io

    fields = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children", "wordnet_height", "num_train_images"]
    rows: list[tuple[Any, ...]] = []
    for wnid, ilsvrc_id in sorted(leaf_ids.items(), key=lambda item: item[1]):
        # MATLAB stores numbers as double; a leaf's children is an empty 1x0 matrix.
        rows.append((float(ilsvrc_id), wnid, f"words of {wnid}", f"gloss of {wnid}", 0.0, np.zeros((1, 0)), 0.0, 1300.0))
    # Inner nodes: the first is the root (children = the second node), the second parents all leaves.
    root_id, parent_id = len(leaf_ids) + 1, len(leaf_ids) + 2
    rows.append((float(root_id), NON_LEAF_WNIDS[0], "entity", "root", 1.0, np.array([[float(parent_id)]]), 2.0, 0.0))
    leaves = np.array([sorted(leaf_ids.values())], dtype=float)
    rows.append((float(parent_id), NON_LEAF_WNIDS[1], "physical entity", "inner", float(len(leaf_ids)), leaves, 1.0, 0.0))
    synsets = np.empty((len(rows), 1), dtype=[(f, object) for f in fields])
    for i, row in enumerate(rows):
        for field, value in zip(fields, row):
            synsets[i, 0][field] = value
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, {"synsets": synsets})
    return buffer.getvalue()


def write_imagenet_archives(folder: Path, labels: Mapping[str, Sequence[str]], jpeg: Callable[[], bytes],
                            rng: np.random.Generator) -> dict[str, Any]:
    """Write the three official downloads, in miniature, into ``folder``.

    * ``ILSVRC2012_img_train.tar``: one uncompressed ``<wnid>.tar`` per class (sorted), each
      holding ``<wnid>_<k>.JPEG`` at its top level;
    * ``ILSVRC2012_img_val.tar``: ``ILSVRC2012_val_<n:08d>.JPEG`` at its top level;
    * ``ILSVRC2012_devkit_t12.tar.gz``: ``data/meta.mat`` (a struct array ``synsets``: the
      leaves with ILSVRC2012_IDs 1..K drawn in a shuffled order by ``rng``, as in the real
      devkit id order is not wnid order, then :data:`NON_LEAF_WNIDS`) and
      ``data/ILSVRC2012_validation_ground_truth.txt`` (line i: the id of val image i).

    ``labels``: {``train``, ``val``: wnid of each image} (see :func:`~.imagefolder.ilsvrc_names`).
    Returns {"names": ilsvrc_names(labels), "bytes": {split: [JPEG bytes]} in the same
    order, "ilsvrc_ids": {wnid: ILSVRC2012_ID}}.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    classes = sorted(set(labels["train"]) | set(labels["val"]))
    if set(classes) & set(NON_LEAF_WNIDS):
        raise ConfigError(f"{', '.join(NON_LEAF_WNIDS)} are the devkit's non-leaf synsets; they cannot label images.")
    ilsvrc_ids = {wnid: int(i) + 1 for wnid, i in zip(classes, rng.permutation(len(classes)))}
    names = ilsvrc_names(labels)
    data = {split: [jpeg() for _ in items] for split, items in names.items()}
    per_class: dict[str, list[tuple[str, bytes]]] = {wnid: [] for wnid in classes}
    for (wnid, name), payload in zip(names["train"], data["train"]):
        per_class[wnid].append((name, payload))
    (folder / TRAIN_TAR).write_bytes(tar_bytes([(f"{wnid}.tar", tar_bytes(per_class[wnid])) for wnid in classes]))
    (folder / VAL_TAR).write_bytes(tar_bytes([(name, payload) for (_, name), payload in zip(names["val"], data["val"])]))
    truth = "".join(f"{ilsvrc_ids[wnid]}\n" for wnid, _ in names["val"]).encode("ascii")
    devkit = [("ILSVRC2012_devkit_t12/", b""), ("ILSVRC2012_devkit_t12/data/", b""),
              ("ILSVRC2012_devkit_t12/COPYING", b"A small copy of the devkit's layout.\n"),
              (DEVKIT_META, _meta_mat(ilsvrc_ids)), (DEVKIT_TRUTH, truth)]
    (folder / DEVKIT).write_bytes(gzip_bytes(tar_bytes(devkit)))
    return {"names": names, "bytes": data, "ilsvrc_ids": ilsvrc_ids}
