"""Your own folder of images: the file index, labels from class folders (or none), and a
source that skips files it cannot decode.

Layouts (``root`` is the folder the user points the ``root`` setting at):

* ``root/train/<class>/...`` (+ optional ``root/val/<class>/...``): labels from the sorted
  class folder names, as torchvision's ``ImageFolder`` assigns them; images may sit in
  sub-folders of a class folder;
* any other folder, flat or nested: every image under ``root`` is a training image.

``labels="folders"`` takes the first folder level under the split as the class,
``"none"`` gives every image label -1, ``"auto"`` (the default) means ``"folders"`` when
every image of ``root/train`` sits inside a class folder (at any depth), or, for a root
without ``train/``, directly in a first-level folder (``<folder>/<image>``); else ``"none"``.

Images are files whose suffix is one of :data:`images.IMAGE_SUFFIXES` (any case); hidden files
and folders (names starting with ".") and other files are ignored. Every image becomes
RGB: grayscale, CMYK, palette and RGBA (alpha dropped) files are converted when decoded.

Undecodable files: an image that cannot be opened, or a JPEG that ends before its end-
of-image marker (a cut-off download), is never handed to the view. In its place the
source returns the next image of the same label (cyclically, in index order): a batch keeps
its size, the sampler its seeded order, and the substitution is the same in every worker
and every run. Each skipped file is reported once per process (a warning) and counted in
``source.skipped``; verifying the dataset (``verify()``, ``jepa-verify``) lists them all beforehand.

The decoding step is :func:`images.decode_image` on the file's bytes (:meth:`EncodedImageSource.read_bytes`),
so a consumer that wants the encoded bytes (LitData conversion, decoding on the device)
reads them without decoding anything here.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
import functools
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from ..catalog import DatasetSpec
from ..choices import check_choice
from ..errors import ConfigError, OwnFolderError, UndecodableImage, setting
from ..notices import Notice
from ..storage.files import unwritable, user_cache_path
from ..storage.verify import VerifyReport
from .base import Source
from .dataset import Dataset, check_count, check_decode, read_checked, sample_picks
from .imagefolder import _load_cache, _save_cache
from .images import IMAGE_SUFFIXES, decode_image, is_image_name, item_problem

__all__ = ["IMAGE_SUFFIXES", "LABEL_MODES", "UndecodableImage", "decode_image", "EncodedImageSource",
           "OwnFolderSource", "list_images", "folder_labels", "listing_key", "state_folder", "STATE_NAME"]

LABEL_MODES = ("auto", "folders", "none")
#: How the errors below tell the user to fix the folder they named.
_POINT_ROOT = f"point {setting('root')} at the folder that holds your images"


class EncodedImageSource(Source):
    """A source whose items are encoded image files (own folders, parquet shards).

    Subclasses set ``labels`` and implement :meth:`read_bytes` and :meth:`name`.
    """

    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def read_bytes(self, index: int) -> bytes:
        raise NotImplementedError

    def name(self, index: int) -> str:
        return f"item {index}"

    def problem(self, index: int, full: bool = False) -> str | None:
        """None when item ``index`` decodes (see :func:`images.item_problem`), else why not.
        ``full``: also decode a JPEG's pixels (otherwise its header and end marker are checked)."""
        return item_problem(self, index, full=full)

    def load(self, index: int) -> Image.Image | np.ndarray:
        return self._usable(int(index))[1]

    def load_encoded(self, index: int) -> bytes:
        """The bytes :meth:`load` decodes for ``index`` (its substitute's when it is undecodable):
        what LitData conversion stores and the device path (``views_on="device"``) decodes, where
        non-JPEG files (PNG, WebP, BMP) and CMYK JPEGs go to Pillow, counted as fallbacks."""
        return self.read_bytes(self._usable(int(index))[0])

    def _usable(self, index: int) -> tuple[int, Image.Image | np.ndarray]:
        """``(index actually used, decoded image)``: ``index`` itself, or the next decodable
        item with the same label after it (cyclically, in index order)."""
        try:
            return index, decode_image(self.read_bytes(index))
        except (UndecodableImage, OSError) as error:
            self._report(index, str(error))
        same = np.flatnonzero(self.labels == self.labels[index])
        start = int(np.searchsorted(same, index, side="right"))
        for other in np.concatenate([same[start:], same[:start]]).tolist():
            if other == index or other in self.skipped:
                continue
            try:
                return other, decode_image(self.read_bytes(other))
            except (UndecodableImage, OSError) as error:
                self._report(other, str(error))
        label = int(self.labels[index])
        raise UndecodableImage(f"No image with label {label} decodes (the last tried was {self.name(index)}); "
                               "verify the dataset to list the damaged files, and replace them.")

    @property
    def skipped(self) -> dict[int, str]:
        """Items found undecodable in this process so far: index -> reason."""
        if "_skipped" not in self.__dict__:
            self._skipped: dict[int, str] = {}
        return self._skipped

    def _report(self, index: int, reason: str) -> None:
        if index not in self.skipped:
            self.skipped[index] = reason
            warnings.warn(Notice(f"Skipping {self.name(index)}: {reason}; the next image of its class is used in "
                                 "its place."), stacklevel=3)


class OwnFolderSource(EncodedImageSource):
    """Image files under ``root`` (paths relative to it, POSIX style) with their labels."""

    def __init__(self, root: Path, paths: Sequence[str], labels: np.ndarray):
        self.root = Path(root)
        self.paths = list(paths)
        self.labels = np.asarray(labels, dtype=np.int64)
        if len(self.paths) != len(self.labels):
            raise ConfigError(f"{len(self.paths)} paths but {len(self.labels)} labels.")

    def read_bytes(self, index: int) -> bytes:
        return (self.root / self.paths[index]).read_bytes()

    def name(self, index: int) -> str:
        return str(self.root / self.paths[index])


# ---------------------------------------------------------------------------- the index
def _scan_tree(top: Path) -> list[str]:
    """Every image under ``top``, as sorted POSIX paths relative to it; hidden entries skipped.

    Symlinked folders are followed (a shared dataset is often linked in), each real folder
    once, so a link back up the tree cannot loop.
    """
    found: list[str] = []
    seen: set[tuple[int, int]] = set()
    for folder, dirs, files in os.walk(top, followlinks=True):
        st = os.stat(folder)
        if (st.st_dev, st.st_ino) in seen:
            dirs[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        relative = Path(folder).relative_to(top).as_posix()
        prefix = "" if relative == "." else relative + "/"
        found.extend(prefix + name for name in files if is_image_name(name))
    return sorted(found)


def list_images(top: Path, cache: Path | None = None, cache_key: str = "") -> list[str]:
    """The images under ``top`` (see :func:`_scan_tree`), through the image-folder index cache.

    The listing is kept in ``cache`` (the same ``.npz`` format and atomic write as the
    ImageNet index in ``imagefolder.py``, one pseudo-class holding every path) and reused
    while ``cache_key`` is unchanged.
    """
    top = Path(top)
    if not top.is_dir():
        raise OwnFolderError(f"Image folder {top} does not exist; {_POINT_ROOT}.", setting="root", path=top)
    index = _load_cache(Path(cache), top, cache_key) if cache is not None else None
    if index is None:
        paths = _scan_tree(top)
        index = (["."], [len(paths)], paths)
        if cache is not None:
            _save_cache(Path(cache), top, cache_key, index)
    return list(index[2])


def listing_key(top: Path) -> str:
    """Changes when a file is added to or removed from ``top``, a folder in it, or one level
    deeper (names at the top, folder mtimes below); deeper changes need ``force=True``.
    Hidden entries do not count."""
    entries: list[tuple[str, int]] = []
    with os.scandir(top) as level1:
        for first in level1:
            if first.name.startswith("."):
                continue
            if not first.is_dir():
                entries.append((first.name, 0))
                continue
            entries.append((first.name, first.stat().st_mtime_ns))
            with os.scandir(first.path) as level2:
                entries += [(f"{first.name}/{e.name}", e.stat().st_mtime_ns)
                            for e in level2 if not e.name.startswith(".") and e.is_dir()]
    return hashlib.sha1(repr(sorted(entries)).encode()).hexdigest()


def folder_labels(paths: Sequence[str], mode: str, where: Path, classes: Sequence[str] | None = None,
                  nested: bool = False) -> tuple[np.ndarray, list[str]]:
    """Labels for ``paths`` (relative to the split folder ``where``) and the class names.

    ``mode`` is one of :data:`LABEL_MODES`; ``"auto"`` means ``"folders"`` when every image
    sits directly in a first-level folder (``<class>/<image>``), or, with ``nested`` (the
    split is an explicit ``train/`` folder, torchvision's ``ImageFolder`` layout), when every
    image sits somewhere inside one. ``classes``: the training split's classes, for a val
    split (its images must be in one of them); default None = this split's own.
    Returns ``(labels, classes)``; ``classes`` is empty and every label -1 when unlabeled.
    """
    check_choice("labels", mode, LABEL_MODES)
    if mode == "auto":
        in_class = (lambda p: "/" in p) if nested else (lambda p: p.count("/") == 1)
        mode = "folders" if paths and all(in_class(p) for p in paths) else "none"
    if mode == "none":
        return np.full(len(paths), -1, dtype=np.int64), []
    loose = [p for p in paths if "/" not in p]
    if loose:
        raise ConfigError(f"{setting('labels', 'folders')} needs every image inside a class folder, but "
                          f"{where / loose[0]} (and {len(loose) - 1} more) sits directly in {where}; move them into "
                          f"class folders or use {setting('labels', 'none')}.", setting="labels",
                          path=where / loose[0], allowed=LABEL_MODES)
    tops = [p.split("/", 1)[0] for p in paths]
    names = sorted(set(tops)) if classes is None else list(classes)
    position = {name: i for i, name in enumerate(names)}
    unknown = sorted(set(tops) - position.keys())
    if unknown:
        raise ConfigError(f"{where} has class folder(s) {', '.join(unknown[:5])} that the training split does not have; "
                          f"allowed are the training classes ({len(names)}).", path=where, allowed=names)
    return np.array([position[t] for t in tops], dtype=np.int64), names


# ------------------------------------------------------------------ the dataset
#: The share of train carved out as val when a folder has no ``val/`` folder.
DEFAULT_VAL_FRACTION = 0.01
#: Files per split that ``prepare_data`` decodes (a seeded sample); ``verify()`` reads every file.
PREPARE_SAMPLE = 64


def split_folders(root: Path) -> dict[str, Path]:
    """``{split: folder}``: ``root/train`` (+ ``root/val`` when both exist), or ``root`` itself."""
    train = Path(root) / "train"
    if not train.is_dir():
        return {"train": Path(root)}
    return {"train": train, "val": Path(root) / "val"} if (Path(root) / "val").is_dir() else {"train": train}


def read_split(root: Path, state: Path, split: str, labels: str = "auto",
               classes: Sequence[str] | None = None) -> tuple[Path, list[str], list[str], np.ndarray]:
    """``(split folder, paths, class names, labels)`` of one split of ``root``, the listing kept
    in ``state/.index-<split>.npz``; ``classes``: the training split's (for val)."""
    dirs = split_folders(root)
    check_choice("split of imagefolder", split, dirs)
    top = dirs[split]
    if not top.is_dir():
        raise OwnFolderError(f"Image folder {top} does not exist; {_POINT_ROOT}.", setting="root", path=top)
    paths = list_images(top, cache=Path(state) / f".index-{split}.npz", cache_key=listing_key(top))
    if not paths:
        raise OwnFolderError(f"{top} holds no images (looked for {' '.join(IMAGE_SUFFIXES)} files, hidden ones "
                             f"excluded); {_POINT_ROOT}.", setting="root", path=top)
    mode = labels if split == "train" else ("folders" if classes else "none")
    found, names = folder_labels(paths, mode, top, classes if split != "train" else None, nested=top != Path(root))
    return top, paths, names, found


def open_split(spec: DatasetSpec, folder: Path, split: str, *, root: Path, labels: str = "auto",
               classes: Sequence[str] | None = None) -> OwnFolderSource:
    """One split of the image folder ``root`` (``folder``: where its index is kept)."""
    top, paths, _, found = read_split(root, folder, split, labels, classes)
    return OwnFolderSource(top, paths, found)


class OwnFolderDataset(Dataset):
    """Your own folder of images (options ``root`` [None = ``<data_dir>/imagefolder``] and
    ``labels``, one of :data:`LABEL_MODES`). Nothing is fetched: preparing lists and checks
    the files; the index and stamp go to :func:`state_folder`, never into ``root``."""

    label_files = False  # labels come from folder names (or are all -1)

    def __init__(self, spec: DatasetSpec, data_dir: Any, *, root: str | Path | None = None, labels: str = "auto",
                 **rest: Any):
        check_choice("labels", labels, LABEL_MODES)
        self.root = Path(root if root is not None else Path(data_dir) / "imagefolder").expanduser()
        if self.root.exists() and not self.root.is_dir():
            raise ConfigError(f"Image folder {self.root} is a file, not a folder; {_POINT_ROOT}.", setting="root",
                              path=self.root, allowed="a folder")
        self.has_val_folder = "val" in split_folders(self.root)
        # Without a val/ folder the only split is train; val (and test) are carved out of it.
        super().__init__(spec.replace(eval_split="val" if self.has_val_folder else "train"), data_dir, **rest)
        self.labels_mode = labels

    @property
    def folder(self) -> Path:
        return state_folder(self.root, self.data_dir)

    @property
    def shown_folder(self) -> Path:
        return self.root

    @functools.cached_property
    def classes(self) -> list[str]:
        """Class names in label order (empty when unlabeled), from the training split."""
        return read_split(self.root, self.folder, "train", self.labels_mode)[2]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def adopt_facts(self, facts: dict[str, Any]) -> None:
        """Chunks of an own folder: its classes and whether it had a ``val/`` folder come from them."""
        super().adopt_facts(facts)
        self.__dict__["classes"] = list(facts.get("classes") or [])  # the cached property, without the folder
        self.has_val_folder = facts["eval_split"] != facts["pretrain_split"]

    def open_split(self, split: str, whole: bool = False) -> OwnFolderSource:
        classes = self.classes if split != "train" else None
        return open_split(self.spec, self.folder, split, root=self.root, labels=self.labels_mode, classes=classes)

    def resolve_val_fraction(self, val_fraction: float | None) -> float:
        if val_fraction is None:
            return 0.0 if self.has_val_folder else DEFAULT_VAL_FRACTION
        if not self.has_val_folder and val_fraction == 0:
            raise ConfigError(f"{setting('val_fraction', 0)} leaves no validation images: {self.root} has no train/ + "
                              "val/ folders; allowed is 0 < val_fraction < 1 (a seeded share of the images), or add a "
                              "val/ folder.", setting="val_fraction", path=self.root, allowed="0 < val_fraction < 1")
        return val_fraction

    def check_present(self) -> None:
        if not self.root.is_dir():
            raise OwnFolderError(f"Image folder {self.root} does not exist; {_POINT_ROOT} (nothing is downloaded "
                                 "for an own image folder).", setting="root", path=self.root)

    def build(self, force: bool = False) -> dict[str, str]:
        self.folder.mkdir(parents=True, exist_ok=True)  # the index cache and the stamp; the images stay as they are
        return {}

    def verify(self, full: bool = False, known_md5: dict[str, str] | None = None,
               md5: Callable[[Path], str] | None = None, quick: bool = False) -> VerifyReport:
        """Images and classes per split, and every file checked: undecodable ones are listed
        (they are skipped in training). ``full`` also decodes every JPEG completely; ``quick``
        (inside ``prepare_data``) checks a seeded sample of :data:`PREPARE_SAMPLE` files per split."""
        report = VerifyReport(self.spec.name, self.root)
        for split in split_folders(self.root):
            source = read_checked(report, split, self.open_split)
            if source is None:
                continue
            check_count(report, f"images {split}", len(source))
            report.add(f"labels {split}", self.labels_mode, f"{len(self.classes)} class folders" if self.classes else "none (-1)", True)
            rng = np.random.default_rng(self.seed)
            picks = sample_picks(source, rng, PREPARE_SAMPLE) if quick else range(len(source))
            # Each undecodable file by name: training skips it (the next image of its class
            # stands in), so these rows do not fail the verification.
            check_decode(report, split, source, picks, pixels=full,
                         skipped=lambda i, split=split, source=source: f"{split}/{source.paths[i]}")
        return report

    def tracked_files(self) -> list[str]:
        """The split folders and their sub-folders two levels down (absolute paths): what ``listing_key`` watches."""
        tracked = []
        for top in split_folders(self.root).values():
            tracked.append(str(top))
            for first in sorted(p for p in top.iterdir() if p.is_dir() and not p.name.startswith(".")):
                tracked.append(str(first))
                tracked += sorted(str(p) for p in first.iterdir() if p.is_dir() and not p.name.startswith("."))
        return tracked

    def resolved_options(self) -> dict[str, Any]:
        return {"root": str(self.root)}

    def settings(self) -> dict[str, Any]:
        labels = {"labels": self.labels_mode} if self.labels_mode != "auto" else {}
        return {"root": str(self.root), **labels}

    def val_description(self, val_fraction: float) -> str:
        if self.has_val_folder and not val_fraction:
            return f"the val/ folder of {self.root}"
        where = "the val/ folder is the test split" if self.has_val_folder else "no val/ folder used"
        return f"{val_fraction:.0%} of train, seeded (seed {self.seed}), {where}"

    def describe(self, val_fraction: float) -> dict[str, Any]:
        return {"root": str(self.root), "labels": "folders" if self.classes else "none",
                "val": self.val_description(val_fraction)}


def dataset_type(spec: DatasetSpec) -> type[Dataset]:
    return OwnFolderDataset


#: The folder under ``data_dir`` that holds one state folder per image folder used.
STATE_NAME = "imagefolder-state"


def state_folder(root: Path, data_dir: Path) -> Path:
    """Where the index cache, lock and verification stamp of the image folder ``root`` go:
    ``<data_dir>/imagefolder-state/<name>-<hash of root>``, never inside ``root`` (your folder
    stays byte for byte as it was), or, when ``data_dir`` cannot be written,
    ``$XDG_CACHE_HOME/jepa_datamodules/imagefolder/<name>-<hash of root>`` (``~/.cache`` when unset)."""
    root = Path(root).expanduser()
    name = f"{root.name or 'root'}-{{digest}}"
    if unwritable(Path(data_dir).expanduser()) is None:
        digest_path = user_cache_path("imagefolder", root, name)  # the same name, under data_dir instead
        return Path(data_dir).expanduser() / STATE_NAME / digest_path.name
    return user_cache_path("imagefolder", root, name)
