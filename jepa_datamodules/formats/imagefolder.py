"""Index a ``split/<class>/<image>`` folder once, and check that images decode.

ImageNet's train split holds 1.28 M files; listing them takes minutes on network
file systems, so :func:`index_image_folder` can keep the listing in a small ``.npz``
cache next to the data and reuse it while the caller's ``cache_key`` is unchanged.
"""

from __future__ import annotations

import hashlib
import os
import random
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..catalog import DatasetSpec
from ..errors import ConfigError, MissingFilesError, setting
from ..notices import Notice
from ..storage.files import atomic_write, unwritable, user_cache_path
from .base import FileSource
from .images import IMAGE_SUFFIXES, decode_problem, is_image_name

__all__ = ["IMG_EXTENSIONS", "index_image_folder", "check_images", "open_split", "index_cache"]

#: The one list of image suffixes (``images.IMAGE_SUFFIXES``), under its old name.
IMG_EXTENSIONS: tuple[str, ...] = IMAGE_SUFFIXES

# Bumped whenever the cache's fields change, so an old cache is rebuilt, not misread.
_CACHE_VERSION = 1
# File names cannot contain NUL on any supported OS, so it safely joins them into one blob.
_SEP = "\0"

_Index = tuple[list[str], list[int], list[str]]  # (classes, files per class, file names in class order)


def index_image_folder(
    split_dir: Path,
    classes: Sequence[str] | None = None,
    cache: Path | None = None,
    cache_key: str = "",
) -> tuple[list[str], np.ndarray, list[str]]:
    """List the images of an ImageFolder-style split.

    Class folders are the non-hidden sub-folders of ``split_dir``; images are the
    non-hidden files directly inside them whose suffix is in :data:`images.IMAGE_SUFFIXES`
    (sub-folders of a class folder are not searched). Hidden entries (names starting
    with ".") are skipped, which also skips the ``.<wnid>.partial-<random>`` staging folders that an
    interrupted ``prepare_imagenet`` may leave behind.

    Args:
        split_dir: the split folder, e.g. ``<root>/train``.
        classes: default None = every class folder. When given, only these classes are
            returned and label ``i`` is the position of the class in ``sorted(classes)``.
        cache: default None = no cache. Otherwise a file path (conventionally ``.npz``)
            where the full listing is saved atomically and from which it is reloaded,
            without listing the folder, while ``cache_key`` and ``split_dir`` match.
        cache_key: default "". Any string that changes when the folder's content may
            have changed (e.g. derived from a verification stamp); a different key
            rebuilds the cache.

    Returns:
        ``(paths, labels, class_names)``: POSIX-style paths relative to ``split_dir``
        (``"<class>/<file>"``) sorted by class then file name; an int64 array of
        labels, one per path; and the class names in label order (sorted, as in
        torchvision's ImageFolder).

    Raises:
        FileNotFoundError: ``split_dir`` is not a folder.
        ValueError: no class folders, duplicate names in ``classes``, or a requested
            class that has no folder.
    """
    if isinstance(classes, str):
        raise TypeError(f"classes must be a list of class names, not the single string {classes!r}; wrap it in a list.")
    split_dir = Path(split_dir)
    index = _load_cache(Path(cache), split_dir, cache_key) if cache is not None else None
    if index is None:
        index = _scan(split_dir)
        if cache is not None:
            _save_cache(Path(cache), split_dir, cache_key, index)
    all_classes, counts, names = index

    if classes is None:
        chosen = all_classes
    else:
        chosen = sorted(classes)
        duplicates = sorted(c for c, n in Counter(chosen).items() if n > 1)
        if duplicates:
            raise ConfigError(f"The class list names {', '.join(duplicates)} more than once; list each class once.",
                              allowed="each class once")
        known = set(all_classes)
        missing = [c for c in chosen if c not in known]
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise ConfigError(
                f"Class {shown} has no folder in {split_dir} ({len(all_classes)} classes there); "
                "fix the class list or complete the dataset (prepare it again).", path=split_dir, allowed=all_classes
            )

    starts = np.concatenate([[0], np.cumsum(counts)]).tolist()
    position = {c: i for i, c in enumerate(all_classes)}
    paths: list[str] = []
    chosen_counts: list[int] = []
    for cls in chosen:
        i = position[cls]
        paths.extend(f"{cls}/{name}" for name in names[starts[i] : starts[i + 1]])
        chosen_counts.append(counts[i])
    labels = np.repeat(np.arange(len(chosen), dtype=np.int64), chosen_counts)
    return paths, labels, list(chosen)


def _scan(split_dir: Path) -> _Index:
    """List class folders and their images with os.scandir (one syscall stream per folder)."""
    if not split_dir.is_dir():
        raise MissingFilesError(f"Image folder {split_dir} does not exist; prepare the dataset first or fix "
                                f"{setting('data_dir')}.", setting="data_dir", path=split_dir)
    with os.scandir(split_dir) as it:
        classes = sorted(e.name for e in it if not e.name.startswith(".") and e.is_dir())
    if not classes:
        raise ConfigError(f"{split_dir} has no class folders; expected files laid out as {split_dir}/<class>/<image>.",
                          path=split_dir, allowed="<class>/<image> folders")
    counts: list[int] = []
    names: list[str] = []
    for cls in classes:
        with os.scandir(split_dir / cls) as it:
            files = sorted(e.name for e in it if is_image_name(e.name) and e.is_file())
        counts.append(len(files))
        names.extend(files)
    return classes, counts, names


def _load_cache(cache: Path, split_dir: Path, cache_key: str) -> _Index | None:
    """Return the cached index, or None when it is absent, stale or unreadable (then it is rebuilt)."""
    if not cache.is_file():
        return None
    try:
        with np.load(cache, allow_pickle=False) as z:
            if int(z["version"]) != _CACHE_VERSION or str(z["key"][()]) != cache_key:
                return None
            if str(z["root"][()]) != str(split_dir.resolve()):
                return None
            classes = [str(c) for c in z["classes"].tolist()]
            counts = [int(n) for n in z["counts"].tolist()]
            blob = z["names"].tobytes().decode("utf-8", "surrogateescape")
    except Exception as exc:  # any damage to the cache just means "list the folder again"
        warnings.warn(Notice(f"The image-folder index {cache} is unreadable ({exc}); the folder is listed again."),
                      stacklevel=3)
        return None
    names = blob.split(_SEP) if blob else []
    if len(names) != sum(counts) or len(counts) != len(classes):
        warnings.warn(Notice(f"The image-folder index {cache} does not add up; the folder is listed again."),
                      stacklevel=3)
        return None
    return classes, counts, names


def _save_cache(cache: Path, split_dir: Path, cache_key: str, index: _Index) -> None:
    """Write the index beside ``cache`` and os.replace it in, so readers never see half a file."""
    classes, counts, names = index

    def write(handle) -> None:
        np.savez_compressed(
            handle,
            version=np.int64(_CACHE_VERSION),
            key=np.array(cache_key),
            root=np.array(str(split_dir.resolve())),
            classes=np.array(classes),
            counts=np.array(counts, dtype=np.int64),
            names=np.frombuffer(_SEP.join(names).encode("utf-8", "surrogateescape"), dtype=np.uint8),
        )

    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        # Mode from the umask (like open), so a shared data directory's cache is readable by all.
        atomic_write(cache, write)
    except OSError as exc:
        # The index is still correct without a cache; only the next start gets slower.
        warnings.warn(Notice(f"Could not write the image-folder cache {cache} ({exc}); the folder will be listed "
                             "again next time."), stacklevel=3)


def check_images(
    paths: Sequence[Path], sample: int | None = None, seed: int = 0
) -> list[tuple[Path, str]]:
    """Fully decode images and report the ones that fail.

    Args:
        paths: image files to check.
        sample: default None = check every file; otherwise check this many files drawn
            at random without replacement (all of them if ``sample >= len(paths)``).
        seed: default 0; seeds the sample so repeated checks look at the same files.

    Returns:
        ``[(path, reason)]`` for each checked file that could not be decoded (missing,
        not an image, truncated or corrupt), in the order of ``paths``; empty if all decode.
    """
    paths = list(paths)
    if sample is not None:
        if sample < 0:
            raise ConfigError(f"sample must be None or a non-negative count, got {sample}.", allowed="None or >= 0")
        if sample < len(paths):
            picked = sorted(random.Random(seed).sample(range(len(paths)), sample))
            paths = [paths[i] for i in picked]
    return [(Path(p), reason) for p in paths if (reason := decode_problem(Path(p))) is not None]


def class_names(spec: DatasetSpec, folder: Path, *, root: Path | None = None, classes: Sequence[str] | None = None,
                cache_dir: Path | None = None) -> list[str]:
    """The class folder names of ``train/`` (ImageNet's and Imagenette's wnids) in label order:
    sorted, or ``classes`` sorted where only those are read."""
    if classes is not None:
        return sorted(classes)
    train = Path(root if root is not None else folder / spec.data_root) / "train"
    with os.scandir(train) as entries:
        return sorted(e.name for e in entries if not e.name.startswith(".") and e.is_dir())


def open_split(spec: DatasetSpec, folder: Path, split: str, *, root: Path | None = None,
               classes: Sequence[str] | None = None, cache_dir: Path | None = None) -> FileSource:
    """``<root>/<split>/<class>/<image>`` (root: ``folder / spec.data_root``) as a file source.

    Format options: ``root`` (another dataset's folder: ImageNet-100 reads ImageNet's),
    ``classes`` (only these class folders, labelled in this order) and ``cache_dir`` (where the
    index goes; default ``folder``). The index is listed again whenever a class folder gained
    or lost a file since it was written (:func:`class_folder_key`).
    """
    split_dir = Path(root if root is not None else folder / spec.data_root) / split
    if not split_dir.is_dir():
        raise MissingFilesError(f"{split_dir} does not exist; {spec.name} expects <wnid>/ class folders there.",
                                path=split_dir)
    cache = index_cache(Path(cache_dir if cache_dir is not None else folder), split_dir, split)
    paths, labels, _ = index_image_folder(split_dir, classes=classes, cache=cache, cache_key=class_folder_key(split_dir))
    return FileSource(split_dir, paths, labels)


def class_folder_key(split_dir: Path) -> str:
    """Changes whenever a class folder of ``split_dir`` gains or loses a file (its mtime
    changes): the index's cache key. One stat per class folder, no listing of their files."""
    entries = sorted((e.name, e.stat().st_mtime_ns) for e in os.scandir(split_dir) if e.is_dir())
    return hashlib.sha1(repr(entries).encode()).hexdigest()


def index_cache(cache_dir: Path, split_dir: Path, split: str) -> Path:
    """Where the file-list index of ``split_dir`` is kept.

    Beside the data, ``<cache_dir>/.index-<split>.npz``, when one is there (it is read even
    from read-only storage) or the folder can be written. Otherwise (a read-only mount, a
    folder of another user) in the user's cache folder, ``$XDG_CACHE_HOME/jepa_datamodules/index``
    (default ``~/.cache/...``), named after the split folder; and if that cannot be written
    either, the listing is only kept in memory (``index_image_folder`` warns once per run).
    """
    beside = Path(cache_dir) / f".index-{split}.npz"
    if beside.is_file() or unwritable(Path(cache_dir)) is None:
        return beside
    return user_cache_path("index", split_dir, f"{{digest}}-{split}.npz")
