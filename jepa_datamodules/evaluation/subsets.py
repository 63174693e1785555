"""SimCLR's ImageNet-1k low-shot lists (1 % and 10 % of the labels) and their mapping onto
a prepared ImageNet.

The lists (12,811 and 128,116 train file names, ``n01440764_10026.JPEG``) are packaged
gzip-compressed in ``resources/`` with their source and licence beside them
(``imagenet_subsets_NOTICE.txt``: google-research/simclr ``imagenet_subsets/``,
Apache-2.0); the sha256 of each uncompressed list is checked on every load. A list maps
onto a train split by file name: the folder layout's ``train/<wnid>/<name>`` and the
Hugging Face parquet release's ``image.path`` column (which may carry the class as a
suffix, ``<name>_<wnid>.JPEG``). ImageNet-100 takes the names of its own classes only.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.resources
import re
from functools import lru_cache
from typing import Any, Sequence

import numpy as np

from ..choices import check_choice
from ..formats.base import SubsetSource
from ..errors import ConfigError, FormatError, action, setting

#: name -> (packaged file, file names in it, sha256 of the uncompressed list as upstream ships it).
SUBSETS: dict[str, tuple[str, int, str]] = {
    "1percent": ("imagenet_1percent.txt.gz", 12_811, "71e82a48ba78252683ae334c4d019ebd5c6e855b9599c1389fbe83eb9549cf17"),
    "10percent": ("imagenet_10percent.txt.gz", 128_116, "6d09de11e7bdaf5b1f3b1f249b6183695f97310cdd20f0c03e7235b6b9392091"),
}
#: Datasets whose train split the lists describe (ImageNet-100: by intersection with its classes).
SUBSET_DATASETS = ("imagenet", "imagenet100")

# The Hugging Face release names train images <wnid>_<number>_<wnid>.JPEG; the lists <wnid>_<number>.JPEG.
_CLASS_SUFFIX = re.compile(r"^(n\d{8}_\d+)_n\d{8}(\.JPEG)$", re.IGNORECASE)


@lru_cache(maxsize=None)
def _load(name: str) -> tuple[str, ...]:
    check_choice("subset", name, tuple(SUBSETS))
    resource, count, sha256 = SUBSETS[name]
    packed = importlib.resources.files("jepa_datamodules").joinpath("resources", resource).read_bytes()
    text = gzip.decompress(packed)
    digest = hashlib.sha256(text).hexdigest()
    if digest != sha256:
        raise FormatError(f"The packaged {name} list ({resource}) has sha256 {digest}, expected {sha256}; "
                          "the installation is damaged: reinstall jepa-datamodules.", path=resource)
    names = tuple(text.decode("ascii").split())
    if len(names) != count:
        raise FormatError(f"The packaged {name} list holds {len(names)} names, expected {count}; reinstall "
                          "jepa-datamodules.", path=resource)
    return names


def imagenet_subset(name: str) -> list[str]:
    """The file names of SimCLR's ImageNet-1k subset ``name`` (``"1percent"``: 12,811 names,
    ``"10percent"``: 128,116), in upstream order, sha256-checked."""
    return list(_load(name))


def item_name(name: str) -> str:
    """A train image's file name as the lists spell it (folder part and class suffix dropped)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    match = _CLASS_SUFFIX.match(base)
    return match.group(1) + match.group(2) if match else base


def item_names(source: Any) -> list[str]:
    """The file name of every item of ``source`` (a folder or parquet split, or a subset of one)."""
    if isinstance(source, SubsetSource):
        base = item_names(source.base)
        return [base[i] for i in source.indices]
    if hasattr(source, "paths"):  # FileSource: paths relative to the split folder
        return [item_name(p) for p in source.paths]
    shards = getattr(source, "shards", None)
    if shards is not None:  # ParquetSource: the image.path column, read alone
        import pyarrow as pa
        import pyarrow.parquet as pq

        names: list[str] = []
        for shard in shards:
            table = pq.read_table(shard, columns=["image.path"])  # the bytes are never read
            # pyarrow returns the nested field as its own column, or (older versions) a one-field struct.
            column = table.column(0).combine_chunks()
            paths = column.field("path") if pa.types.is_struct(column.type) else column
            names += [item_name(p) for p in paths.to_pylist()]
        return names
    raise ConfigError(f"{type(source).__name__} names no files, so a SimCLR subset cannot be mapped onto it; "
                     "allowed are ImageNet's folder layout and its Hugging Face parquet shards.")


def check_subset_dataset(subset: str, dataset: str) -> None:
    """Refuse a subset on a dataset the lists do not describe, in one sentence."""
    check_choice("subset", subset, tuple(SUBSETS))
    if dataset not in SUBSET_DATASETS:
        raise ConfigError(f"{setting('subset', subset)} is one of SimCLR's ImageNet-1k label subsets, and {dataset} "
                          f"has none: allowed are the datasets {' and '.join(SUBSET_DATASETS)}, or "
                          f"{setting('subset', None)} (use {setting('shots')}=N for a low-shot split of any dataset).",
                          setting="subset", allowed=list(SUBSET_DATASETS))


def subset_indices(subset: str, source: Any, dataset: str, classes: Sequence[str] | None = None) -> np.ndarray:
    """Sorted positions in the train split ``source`` of the list ``subset``'s files.

    ``classes`` (ImageNet-100's wnids) keeps the list's names of those classes only. A name
    of the list that is not in ``source`` is an error naming the first few: the subset would
    otherwise silently be smaller than the paper's.
    """
    check_subset_dataset(subset, dataset)
    wanted = imagenet_subset(subset)
    if classes is not None:
        keep = set(classes)
        wanted = [name for name in wanted if name.split("_", 1)[0] in keep]
    position = {name: i for i, name in enumerate(item_names(source))}
    missing = [name for name in wanted if name not in position]
    if missing:
        raise ConfigError(f"{len(missing):,} of the {len(wanted):,} files of {setting('subset', subset)} are not in the "
                          f"{dataset} train split (e.g. {', '.join(missing[:3])}); allowed is a complete ImageNet train "
                          f"split (run {action('verify', dataset)}), or {setting('subset', None)}.", setting="subset")
    return np.sort(np.array([position[name] for name in wanted], dtype=np.int64))
