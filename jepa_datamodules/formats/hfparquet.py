"""ImageNet-1k as the Hugging Face release ships it: parquet shards, read where they are.

The release (``huggingface.co/datasets/ILSVRC/imagenet-1k``, gated: it needs an account,
accepting the ImageNet terms and an access token) holds
``data/{train,validation,test}-NNNNN-of-MMMMM.parquet``; each row is ``image``, a struct of
``bytes`` (the original JPEG file) and ``path`` (its file name), and ``label``, an int64
(-1 in the test split, whose labels were never published).

Labels: the release numbers the classes by the position of their WordNet id in its
``classes.py`` (``IMAGENET2012_CLASSES``, an ordered dict from ``n01440764`` "tench" to
``n15075141`` "toilet tissue"), which lists the 1,000 wnids in ascending order; label 1
is "goldfish" in its ``ClassLabel`` names. That is the sorted-wnid order of torchvision's
``ImageFolder`` and of our ``train/<wnid>/`` layout, so a model gets the same label ids
from either source. The ascending list ships as ``resources/imagenet1k_wnids.txt``
(sha256-checked), which also maps ImageNet-100's wnids to parquet label ids.

Reading in place: a shard's rows are stored in row groups; an item is read by reading the
``image`` column of its row group only (``ParquetFile.read_row_group``), and each process
keeps at most ``row_group_cache`` row groups decoded, so no worker holds a shard in memory.
The row groups are the source's blocks (``block_ids``): the training order goes row group
by row group (``shuffle="auto"``, see ``pipeline/sampling.py``) and the cache holds the
sampler's window of them (``reserve_blocks``), so each row group is decompressed once per
window and loader worker instead of once per image as a fully random order would (the
release's row groups hold a few hundred rows, ~10 MB). Memory per loader worker stays
bounded by the window: about ``shuffle_window + 1`` row groups (see ``jepa-bench``'s PSS figure).
"""

from __future__ import annotations

import hashlib
import importlib.resources
import re
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..catalog import DatasetSpec
from ..choices import check_choice
from ..errors import ConfigError, FormatError, MissingFilesError, action, setting
from ..storage.verify import VerifyReport
from .base import SubsetSource
from .dataset import (VERIFY_SAMPLE, check_classes, check_count, check_decode, check_label_range, read_checked,
                      sample_picks)
from .ownfolder import EncodedImageSource

__all__ = ["REPO", "IMAGENET1K_WNIDS_SHA256", "imagenet1k_wnids", "parquet_shards", "has_parquet",
           "ParquetSource", "parquet_instructions", "shard_problems", "check_shards", "verify_shards"]

REPO = "ILSVRC/imagenet-1k"
#: sha256 of resources/imagenet1k_wnids.txt.
IMAGENET1K_WNIDS_SHA256 = "42b8fbb2c91ced631d93c6490f998d58df46c1c1d9c5fdb8ffbec542f67b63f3"
SHARD_FOLDER = "data"
_READ_BUFFER = 1 << 20
_SHARD_RE = re.compile(r"(?P<prefix>[a-z]+)-(?P<index>\d{5})-of-(?P<total>\d{5})(?:-[0-9a-f]+)?\.parquet")


def _require_pyarrow() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError as error:  # pragma: no cover - pyarrow is a dependency
        raise ImportError("Reading the Hugging Face ImageNet shards needs pyarrow: pip install 'pyarrow>=14'.") from error
    return pq


def class_names(spec: DatasetSpec, folder: Path, **options: Any) -> list[str]:
    """The release's classes: the 1,000 wnids in its label order (ascending, as ``classes.py`` lists them)."""
    return imagenet1k_wnids()


def imagenet1k_wnids() -> list[str]:
    """The 1,000 ILSVRC2012 wnids in ascending order: label ``i`` of either source is entry ``i``."""
    data = importlib.resources.files("jepa_datamodules").joinpath("resources", "imagenet1k_wnids.txt").read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != IMAGENET1K_WNIDS_SHA256:
        raise RuntimeError(f"The packaged ImageNet-1k class list has sha256 {digest}, expected "
                           f"{IMAGENET1K_WNIDS_SHA256}; reinstall jepa_datamodules.")
    return [line for line in data.decode("ascii").splitlines() if line and not line.startswith("#")]


# ----------------------------------------------------------------------------- the files
def parquet_shards(folder: Path, prefix: str) -> list[Path]:
    """The shards of one split (``train``, ``validation`` or ``test``) under ``folder/data``, in order."""
    shard_dir = Path(folder) / SHARD_FOLDER
    if not shard_dir.is_dir():
        return []
    found = []
    for path in shard_dir.iterdir():
        match = _SHARD_RE.fullmatch(path.name)
        if match and match["prefix"] == prefix:
            found.append((int(match["index"]), path))
    return [path for _, path in sorted(found)]


def has_parquet(folder: Path) -> bool:
    """True when ``folder/data`` holds training shards of the release."""
    return bool(parquet_shards(folder, "train"))


def shard_problems(shards: Sequence[Path], expected: int | None) -> str | None:
    """None when ``shards`` are all ``expected`` shards of a split (as their names count them), else what is wrong."""
    if not shards:
        return "no shards"
    totals = {int(_SHARD_RE.fullmatch(p.name)["total"]) for p in shards}
    if len(totals) != 1:
        return f"shards of different sets (-of-{', -of-'.join(str(t) for t in sorted(totals))})"
    total = totals.pop()
    present = {int(_SHARD_RE.fullmatch(p.name)["index"]) for p in shards}
    missing = sorted(set(range(total)) - present)
    if missing:
        shown = ", ".join(f"{i:05d}" for i in missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        return f"{len(present)} of {total}: missing {shown}"
    if expected is not None and total != expected:
        return f"{total} shards (the release has {expected})"
    return None


def parquet_instructions(root: Path) -> str:
    """The steps that put the Hugging Face release where ``ImageNetDataModule`` reads it."""
    return (
        f"From Hugging Face instead (no unpacking; the shards are read in place):\n"
        f"  1. Log in at https://huggingface.co, open https://huggingface.co/datasets/{REPO} and accept its\n"
        f"     terms of access; create an access token and run `huggingface-cli login` (or set HF_TOKEN).\n"
        f"  2. Download the parquet shards into {root}:\n"
        f"       huggingface-cli download {REPO} --repo-type dataset --include 'data/*.parquet' --local-dir {root}\n"
        f"     (--include 'data/validation-*.parquet' fetches one split only).\n"
        f"  3. Check that {root}/{SHARD_FOLDER}/ holds train-*-of-00294.parquet, validation-*-of-00014.parquet\n"
        f"     and test-*-of-00028.parquet, then run {action('prepare', 'imagenet')}: it verifies the shard counts,\n"
        f"     the rows per split and that a sample decodes."
    )


# ------------------------------------------------------------------ reading and checking
def open_split(spec: DatasetSpec, folder: Path, split: str) -> "ParquetSource":
    """One split of the release under ``folder`` (``spec.options["parquet"]["prefixes"]`` names its shards)."""
    prefixes = spec.options["parquet"]["prefixes"]
    check_choice(f"split of {spec.name}", split, prefixes)
    shards = parquet_shards(folder, prefixes[split])
    if not shards:
        raise MissingFilesError(f"{folder}/{SHARD_FOLDER} holds no {prefixes[split]}-*.parquet shards; download them "
                                f"from https://huggingface.co/datasets/{REPO} (`huggingface-cli download {REPO} "
                                f"--repo-type dataset --include 'data/*.parquet' --local-dir {folder}`).",
                                path=Path(folder) / SHARD_FOLDER)
    return ParquetSource(shards)


def shard_files(spec: DatasetSpec, folder: Path) -> list[str]:
    """Every shard of every split, relative to ``folder`` (what a stamp tracks)."""
    return [f"{SHARD_FOLDER}/{p.name}" for prefix in spec.options["parquet"]["prefixes"].values()
            for p in parquet_shards(folder, prefix)]


def check_shards(report: VerifyReport, spec: DatasetSpec, split: str) -> bool:
    """Row ``shards <prefix>``: every shard of ``split`` under ``report.folder/data``, as their
    names count them and as many as the release has; a failure blames the split's shards."""
    facts = spec.options["parquet"]
    prefix, expected = facts["prefixes"][split], facts["shards"].get(split)
    shards = parquet_shards(report.folder, prefix)
    problem = shard_problems(shards, expected)
    if report.add(f"shards {prefix}", f"{expected} files", problem or f"{len(shards)} files", problem is None):
        return True
    report.blame(f"{SHARD_FOLDER}/{prefix}-*.parquet")
    return False


def verify_shards(spec: DatasetSpec, folder: Path, open_split: Callable[[str], Any], *, full: bool = False,
                  seed: int = 0) -> VerifyReport:
    """Shards per split (:func:`check_shards`), then the engine's split checks: rows per split,
    labels in range (the test split's all -1: unpublished), classes, and a seeded sample of
    images (all with ``full``) whose JPEG header and end marker must be whole."""
    report = VerifyReport(spec.name, folder)
    rng = np.random.default_rng(seed)
    for split in spec.options["parquet"]["prefixes"]:
        if not check_shards(report, spec, split):
            continue
        source = read_checked(report, split, open_split)
        if source is None:
            continue
        check_count(report, f"rows {split}", len(source), spec.splits[split])
        if split == "test":
            labelled = int((source.labels >= 0).sum())
            report.add("labels test", "all -1 (unpublished)", f"{labelled} labelled", labelled == 0)
        else:
            check_label_range(report, split, source, spec.num_classes, unlabeled_ok=False)
            check_classes(report, split, source, spec.num_classes)
        check_decode(report, split, source, sample_picks(source, rng, VERIFY_SAMPLE, full), pixels=False)
    return report


class RelabeledSubset(SubsetSource):
    """``indices`` of another source with new ``labels`` (a class subset of the shards)."""

    def __init__(self, base: Any, indices: np.ndarray, labels: np.ndarray):
        super().__init__(base, indices)
        self.labels = np.asarray(labels, dtype=np.int64)

    def name(self, index: int) -> str:
        return self.base.name(int(self.indices[index]))


def class_subset(base: "ParquetSource", wnids: Sequence[str]) -> RelabeledSubset:
    """The rows of ``base`` whose label is one of ``wnids``' ids, relabelled 0..C-1 in sorted-wnid
    order (the release's label ids are sorted-wnid positions too, see the module docstring)."""
    position = {wnid: i for i, wnid in enumerate(imagenet1k_wnids())}
    unknown = [w for w in wnids if w not in position]
    if unknown:
        raise ConfigError(f"Class {', '.join(unknown[:5])} is not one of the 1,000 ImageNet-1k classes; fix the "
                          f"{setting('class_list')} file.", setting="class_list", allowed="ImageNet-1k wnids")
    ids = np.array(sorted(position[w] for w in wnids), dtype=np.int64)
    keep = np.flatnonzero(np.isin(base.labels, ids))
    return RelabeledSubset(base, keep, np.searchsorted(ids, base.labels[keep]))


# ---------------------------------------------------------------------------- the source
class ParquetSource(EncodedImageSource):
    """The rows of one split's shards, read one row group at a time.

    ``labels`` come from the ``label`` column (read once, alone); ``read_bytes(i)`` returns
    row ``i``'s ``image.bytes``. Files are opened lazily in each process and never pickled.
    ``row_group_cache``: decoded row groups kept per process [2].
    """

    def __init__(self, shards: Sequence[Path], row_group_cache: int = 2):
        pq = _require_pyarrow()
        self.shards = [Path(p) for p in shards]
        self.row_group_cache = max(1, int(row_group_cache))
        labels, group_rows, group_shard, group_index = [], [], [], []
        for shard_number, path in enumerate(self.shards):
            try:
                handle = pq.ParquetFile(path)
                names = handle.schema_arrow.names
                if "image" not in names or "label" not in names:
                    raise FormatError(f"columns {names}, expected image and label")
                labels.append(handle.read(columns=["label"]).column("label").to_numpy().astype(np.int64))
                for group in range(handle.metadata.num_row_groups):
                    group_rows.append(handle.metadata.row_group(group).num_rows)
                    group_shard.append(shard_number)
                    group_index.append(group)
            except Exception as error:  # noqa: BLE001 - any unreadable shard is reported by name
                raise FormatError(f"{path} is not a readable shard of the {REPO} release ({error}); download it "
                                  f"again (`huggingface-cli download {REPO} --repo-type dataset --include "
                                  f"'{SHARD_FOLDER}/{path.name}'`).", path=path) from error
        self.labels = np.concatenate(labels) if labels else np.zeros(0, dtype=np.int64)
        self.group_start = np.concatenate([[0], np.cumsum(group_rows)]).astype(np.int64)
        self.group_shard = np.asarray(group_shard, dtype=np.int64)
        self.group_index = np.asarray(group_index, dtype=np.int64)
        if int(self.group_start[-1]) != len(self.labels):
            raise FormatError(f"The row groups of {self.shards[0].parent} hold {int(self.group_start[-1])} rows but "
                              f"their label columns {len(self.labels)}; download the shards again.",
                              path=self.shards[0].parent)
        self._files: dict[int, Any] = {}
        self._groups: OrderedDict[int, Any] = OrderedDict()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_files": {}, "_groups": OrderedDict()}

    def block_ids(self) -> np.ndarray:
        """The row group of every row: rows of one group are decompressed together."""
        return np.repeat(np.arange(len(self.group_shard), dtype=np.int64), np.diff(self.group_start))

    def reserve_blocks(self, count: int) -> None:
        self.row_group_cache = max(self.row_group_cache, int(count))

    def _group(self, group: int) -> Any:
        """The ``image`` column of one row group, through the per-process cache."""
        cached = self._groups.get(group)
        if cached is not None:
            self._groups.move_to_end(group)
            return cached
        shard = int(self.group_shard[group])
        handle = self._files.get(shard)
        if handle is None:
            # Streamed in 1 MB reads, not pre-buffered whole: a row group's column chunk is ~10 MB.
            handle = self._files[shard] = _require_pyarrow().ParquetFile(self.shards[shard], pre_buffer=False,
                                                                         buffer_size=_READ_BUFFER)
        column = handle.read_row_group(int(self.group_index[group]), columns=["image"]).column("image")
        self._groups[group] = column
        while len(self._groups) > self.row_group_cache:
            self._groups.popitem(last=False)
        return column

    def _locate(self, index: int) -> tuple[int, int]:
        group = int(np.searchsorted(self.group_start, index, side="right")) - 1
        return group, int(index - self.group_start[group])

    def read_bytes(self, index: int) -> bytes:
        group, row = self._locate(int(index))
        value = self._group(group)[row].as_py()
        data = value.get("bytes") if isinstance(value, dict) else None
        if not data:
            raise OSError(f"row {row} of row group {int(self.group_index[group])} has no image bytes")
        return data

    def name(self, index: int) -> str:
        group, _ = self._locate(int(index))
        shard = int(self.group_shard[group])
        first = int(self.group_start[np.flatnonzero(self.group_shard == shard)[0]])
        return f"{self.shards[shard].name} row {int(index) - first}"
