"""The ILSVRC2012 devkit: the 1,000 classes of ``data/meta.mat`` and the validation ground truth."""

from __future__ import annotations

import io
import tarfile
import zlib
from pathlib import Path, PurePosixPath

import numpy as np

from ...errors import ImageNetSetupError
from .detect import DEVKIT, WNID_RE

__all__ = ["parse_devkit"]


def _devkit_member(tar: tarfile.TarFile, devkit_path: Path, *tail: str) -> bytes:
    """Read the devkit file whose path ends in ``tail`` (the top folder name is not relied on)."""
    for member in tar:
        parts = PurePosixPath(member.name).parts
        if member.isreg() and parts[-len(tail) :] == tail:
            handle = tar.extractfile(member)
            assert handle is not None  # regular members always have a file object
            return handle.read()
    raise ImageNetSetupError(
        f"{devkit_path} has no {'/'.join(tail)}, so it is not the ILSVRC2012 devkit; "
        f"download {DEVKIT} again from image-net.org.", path=devkit_path)


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
                                 "install it with `pip install 'jepa-datamodules[imagenet]'` (or `pip install scipy`).",
                                 path=devkit_path) from exc

    def bad(what: str) -> ImageNetSetupError:
        return ImageNetSetupError(f"{devkit_path} {what}; download {DEVKIT} again from image-net.org.", path=devkit_path)

    try:
        with tarfile.open(devkit_path, "r:*") as tar:
            meta = _devkit_member(tar, devkit_path, "data", "meta.mat")
        with tarfile.open(devkit_path, "r:*") as tar:
            truth = _devkit_member(tar, devkit_path, "data", "ILSVRC2012_validation_ground_truth.txt")
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
        if not WNID_RE.fullmatch(wnid) or ilsvrc_id in id_to_wnid:
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
