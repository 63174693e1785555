"""What ImageNet data the user has put in ``root``, and the steps to follow when there is none.

ImageNet cannot be downloaded without an image-net.org account, so preparation starts from
whatever is in ``root``: the three official files, an unpacked ``train/<wnid>/`` +
``val/<wnid>/`` layout, or an unpacked ``train/<wnid>/`` plus the flat validation folder (or
tar) and the devkit. Nothing here writes.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ...catalog import SPECS
from ...errors import ImageNetSetupError, action, setting
from ...storage.files import set_aside
from ..hfparquet import parquet_instructions
from ..images import is_image_name

__all__ = ["TRAIN_TAR", "VAL_TAR", "DEVKIT", "check_nesting", "detect_source", "manual_instructions"]

# The three official files are the catalog's ImageNet archives (train, val, devkit, in that
# order); sizes as image-net.org's ILSVRC2012 download page words them.
TRAIN_TAR, VAL_TAR, DEVKIT = (archive.filename for archive in SPECS["imagenet"].archives)
_SIZES = {TRAIN_TAR: "138 GB", VAL_TAR: "6.3 GB", DEVKIT: "2.5 MB"}
_DESCRIPTIONS = {TRAIN_TAR: "training images", VAL_TAR: "validation images", DEVKIT: "development kit, Task 1 & 2"}

WNID_RE = re.compile(r"n\d{8}")
VAL_NAME_RE = re.compile(r"ILSVRC2012_val_(\d{8})\.JPEG")


def _has_wnid_images(split_dir: Path) -> bool:
    """True if some ``split_dir/<wnid>/`` folder holds at least one image (stops at the first)."""
    if not split_dir.is_dir():
        return False
    with os.scandir(split_dir) as classes:
        for cls in classes:
            if WNID_RE.fullmatch(cls.name) and cls.is_dir() and _has_wnid_images_in(Path(cls.path)):
                return True
    return False


def check_nesting(split_dir: Path) -> None:
    """Refuse a split unpacked one level too deep, ``<split>/<wnid>/<wnid>/*.JPEG`` (torchvision's
    test fake has it, and so do many hand unpackings): read as it is, it would have no images.
    Looks only as far as the first class folder that holds images, so a good layout costs one listing."""
    if not split_dir.is_dir():
        return
    with os.scandir(split_dir) as classes:
        wnids = sorted(c.name for c in classes if WNID_RE.fullmatch(c.name) and c.is_dir())
    for wnid in wnids:
        with os.scandir(split_dir / wnid) as entries:
            entries = list(entries)
        if any(is_image_name(e.name) for e in entries):
            return  # images where they belong
        inner = next((e.name for e in entries if e.is_dir() and _has_wnid_images_in(Path(e.path))), None)
        if inner is not None:
            split = split_dir.name
            raise ImageNetSetupError(
                f"{split_dir}/{wnid}/ holds its images one level too deep, in {split}/{wnid}/{inner}/ "
                f"(the layout is {split}/<wnid>/<image>.JPEG); move each class folder's images up one level, "
                f"e.g. `cd {split_dir} && for d in */; do mv \"$d\"*/* \"$d\" && rmdir \"$d\"*/; done`, then prepare again.",
                path=split_dir / wnid / inner)


def _has_wnid_images_in(folder: Path) -> bool:
    """True if ``folder`` itself holds an image."""
    with os.scandir(folder) as files:
        return any(is_image_name(f.name) for f in files)


def _current_val_dir(root: Path) -> Path:
    """The folder holding validation data: ``val/``, or the flat folder set aside mid-swap."""
    val = root / "val"
    # Only between the two renames of storage's swap_in can val/ be missing while its old copy exists.
    old = set_aside(val) if not val.exists() else []
    return old[0] if old and old[0].is_dir() else val


def val_state(val_dir: Path) -> str:
    """Classify a validation folder: "missing", "empty", "flat", "sorted" or "other"."""
    if not val_dir.is_dir():
        return "missing"
    has_flat = has_entries = False
    with os.scandir(val_dir) as it:
        for entry in it:
            if entry.name.startswith("."):
                continue
            has_entries = True
            if VAL_NAME_RE.fullmatch(entry.name) and entry.is_file():
                has_flat = True
                break
    if has_flat:
        return "flat"
    if not has_entries:
        return "empty"
    return "sorted" if _has_wnid_images(val_dir) else "other"


def detect_source(root: Path) -> str | None:
    """Say what ImageNet data ``root`` holds, in the order :func:`~.unpack.prepare_imagenet` uses it.

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
    state = val_state(_current_val_dir(root))
    val_buildable = devkit and (val_tar or state == "flat")
    if train_tar and (val_buildable or state == "sorted"):
        return "archives"
    train_unpacked = _has_wnid_images(root / "train")
    if train_unpacked and state == "sorted":
        return "layout"
    if train_unpacked and val_buildable:
        return "flat_val"
    return None


def manual_instructions(root: Path) -> str:
    """The step-by-step message shown when ``root`` holds no usable ImageNet (the prepare step
    and the data folder setting are marked: Python and the console each say them their way)."""
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
        f"  4. Run {action('prepare', 'imagenet')}. If your data lives somewhere else, point\n"
        f"     {setting('data_dir')} at the folder that holds imagenet/ (or set $JEPA_DATA_DIR).\n"
        + parquet_instructions(root)
    )
