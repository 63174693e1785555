"""Small copies of upstream on-disk formats, written for ``jepa-bench``'s stand-ins.

Each writer produces the exact files a dataset's reader expects (the reader and its
verification run on them unchanged); the caller chooses the counts and the pixels:

* :func:`write_cifar`: CIFAR-10 / CIFAR-100's pickled batches;
* :func:`write_stl10`: STL-10's binaries and fold list;
* :func:`write_imagenet_layout`: ImageNet's prepared ``<split>/<wnid>/`` JPEG folders, with
  ILSVRC2012's file names (:func:`ilsvrc_names`, :func:`write_class_folders`);
* :func:`write_hf_parquet`: the Hugging Face ImageNet release's parquet shards;

and the pixels they are filled with: :func:`balanced_labels` (every class in every split),
:func:`texture_bank` / :func:`photo_like` (ImageNet-like photos whose file sizes and decode
times are close to real ones). The test suite's fakes reuse these writers
(``tests/helpers/fake_formats.py``), so each format is written in one place.
"""

from __future__ import annotations

import pickle
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..catalog import DatasetSpec
from ..errors import ConfigError
from ..formats.hfparquet import SHARD_FOLDER
from ..formats.stl10 import STL10_SIDE

#: Rows per row group as the Hugging Face ``datasets`` library writes image datasets
#: (its PARQUET_ROW_GROUP_SIZE_FOR_IMAGE_DATASETS = 100).
ROW_GROUP_ROWS = 100
_WNID = re.compile(r"n\d{8}")


# ==================================================================== the pixels
def balanced_labels(count: int, classes: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` int64 labels with every class as often as the count allows, in a shuffled order
    (so a small copy holds every class the verifier counts)."""
    return rng.permutation(np.arange(count) % classes).astype(np.int64)


def texture_bank(rng: np.random.Generator, count: int = 4, side: int = 640) -> list[np.ndarray]:
    """Fields with a 1/f amplitude spectrum (that of natural images), unit variance.

    Crops of these give :func:`photo_like` images detail at every scale, and with it file
    sizes and decode times close to ImageNet's (flat colours would decode far faster).
    """
    fy = np.fft.fftfreq(side)[:, None]
    fx = np.fft.rfftfreq(side)[None, :]
    radius = np.hypot(fy, fx)
    radius[0, 0] = 1.0
    bank = []
    for _ in range(count):
        spectrum = (rng.normal(size=radius.shape) + 1j * rng.normal(size=radius.shape)) / radius
        spectrum[0, 0] = 0.0
        field = np.fft.irfft2(spectrum, s=(side, side))
        bank.append((field / field.std()).astype(np.float32))
    return bank


def photo_like(rng: np.random.Generator, bank: list[np.ndarray], width: int, height: int) -> Image.Image:
    """A smooth colour field, a few flat shapes, then 1/f texture from ``bank`` (amplitude 45 of 255)."""
    from PIL import ImageDraw

    corners = rng.integers(0, 256, (3, 4, 3), dtype=np.uint8)
    canvas = Image.fromarray(corners).resize((width, height), Image.BICUBIC)
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(3, 8))):
        x0, y0 = rng.uniform(-50, width), rng.uniform(-50, height)
        box = (x0, y0, x0 + rng.uniform(width / 15, width / 1.5), y0 + rng.uniform(height / 15, height / 1.5))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    texture = bank[int(rng.integers(len(bank)))]
    if texture.shape[0] < height or texture.shape[1] < width:
        raise ConfigError(f"a {width}x{height} photo-like image needs a texture bank of at least that side.")
    top = int(rng.integers(0, texture.shape[0] - height + 1))
    left = int(rng.integers(0, texture.shape[1] - width + 1))
    pixels = np.asarray(canvas, dtype=np.float32) + 45.0 * texture[top:top + height, left:left + width, None]
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


# ============================================================= CIFAR and STL-10
def write_cifar(spec: DatasetSpec, folder: Path, images: dict[str, np.ndarray], labels: dict[str, np.ndarray]) -> Path:
    """Write ``spec``'s batches under ``folder / spec.data_root`` as upstream ships them.

    Args:
        spec: CIFAR-10 or CIFAR-100's spec (its file names and label keys).
        folder: the dataset folder (created if needed).
        images: ``train`` and ``test``: ``(N, 32, 32, 3)`` uint8; the train split is cut into
            the spec's train files in order, in equal parts (CIFAR-10: five batches).
        labels: ``train`` and ``test``: the fine labels, ``(N,)``. CIFAR-100's coarse label of
            fine label ``f`` is ``f // 5`` (20 superclasses of 5 classes).

    Each file is a protocol-2 pickle (what Python 2's cPickle wrote upstream) of a dict with
    ``batch_label``, ``data`` ((N, 3072) uint8: red plane, green, blue), the label lists and
    ``filenames``; the meta file holds placeholder class names. Returns the root written.
    """
    options = spec.options
    root = Path(folder) / spec.data_root
    root.mkdir(parents=True, exist_ok=True)

    def relabel(fine: np.ndarray, granularity: str) -> list[int]:
        return [int(v) for v in (fine if granularity == "fine" else np.asarray(fine) // 5)]

    for split in ("train", "test"):
        files = options[f"{split}_files"]
        parts = zip(np.array_split(images[split], len(files)), np.array_split(labels[split], len(files)))
        for number, (name, (pixels, fine)) in enumerate(zip(files, parts), 1):
            content: dict[str, Any] = {
                "batch_label": f"{split}ing batch {number} of {len(files)}",
                "data": np.ascontiguousarray(pixels.transpose(0, 3, 1, 2)).reshape(len(pixels), 3072),
                "filenames": [f"{split}_{number}_{i}.png" for i in range(len(pixels))],
            }
            content.update({key: relabel(fine, granularity) for granularity, key in options["label_keys"].items()})
            (root / name).write_bytes(pickle.dumps(content, protocol=2))
    fine_classes = spec.num_classes
    meta = {key: [f"{granularity}-class-{i}" for i in range(fine_classes if granularity == "fine" else fine_classes // 5)]
            for granularity, key in options["class_names_key"].items()}
    (root / options["meta_file"]).write_bytes(pickle.dumps(meta, protocol=2))
    return root


def write_stl10(spec: DatasetSpec, folder: Path, images: dict[str, Iterable[np.ndarray]],
                labels: dict[str, np.ndarray], folds: Sequence[np.ndarray], class_names: Sequence[str] | None = None) -> Path:
    """Write STL-10's binaries under ``folder / spec.data_root`` as upstream ships them.

    Args:
        spec: STL-10's spec.
        folder: the dataset folder (created if needed).
        images: ``train``, ``test`` and ``unlabeled``: each an ``(N, 96, 96, 3)`` uint8 array, or
            an iterable of such chunks (so a large split never sits in memory whole).
        labels: ``train`` and ``test``: 0-based labels (written 1-based, as uint8).
        folds: the 10 predefined folds, each an array of train indices.
        class_names: default ``class-<i>``.

    Each ``*_X.bin`` holds per image three 96x96 planes stored column by column. Returns the
    root written.
    """
    root = Path(folder) / spec.data_root
    root.mkdir(parents=True, exist_ok=True)
    for split, chunks in images.items():
        with open(root / f"{split}_X.bin", "wb") as handle:
            for pixels in chunks:
                pixels = np.asarray(pixels, dtype=np.uint8).reshape(-1, STL10_SIDE, STL10_SIDE, 3)
                # (N, H, W, C) -> (N, C, W, H) in C order: planes, column by column.
                handle.write(np.ascontiguousarray(pixels.transpose(0, 3, 2, 1)).tobytes())
    for split, values in labels.items():
        (root / f"{split}_y.bin").write_bytes((np.asarray(values) + 1).astype(np.uint8).tobytes())
    (root / "fold_indices.txt").write_text("".join(" ".join(map(str, fold)) + " \n" for fold in folds))
    names = class_names if class_names is not None else [f"class-{i}" for i in range(spec.num_classes)]
    (root / "class_names.txt").write_text("".join(f"{name}\n" for name in names))
    return root


# =================================================================== ImageNet
def ilsvrc_names(labels: Mapping[str, Sequence[str]]) -> dict[str, list[tuple[str, str]]]:
    """ILSVRC2012's file names (ImageNet's, and Imagenette's, which reuses them) for images
    labelled ``labels`` = {split: wnid of each image}.

    Train: ``<wnid>_<k>.JPEG`` (k counting from 1 within each class); any other split:
    ``ILSVRC2012_val_<n:08d>.JPEG`` with n the image's 1-based position in ``labels[split]``
    (shuffle that list first: upstream numbers are not grouped by class). Returns
    {split: [(wnid, file name)]} in the order given.
    """
    names: dict[str, list[tuple[str, str]]] = {}
    for split, wnids in labels.items():
        bad = [w for w in wnids if not _WNID.fullmatch(w)]
        if bad:
            raise ConfigError(f"labels[{split!r}] holds '{bad[0]}', which is not a wnid; allowed are wnids like n01440764.")
        seen: Counter[str] = Counter()
        names[split] = []
        for number, wnid in enumerate(wnids, 1):
            seen[wnid] += 1
            names[split].append((wnid, f"{wnid}_{seen[wnid]}.JPEG" if split == "train" else f"ILSVRC2012_val_{number:08d}.JPEG"))
    return names


def write_class_folders(root: Path, names: Mapping[str, Sequence[tuple[str, str]]], image: Callable[[], bytes]) -> None:
    """Write ``root/<split>/<class>/<file>`` for each (class, file) of ``names[split]``, in order;
    ``image()`` gives the next file's bytes. Existing files are overwritten."""
    for split, items in names.items():
        for label, name in items:
            path = Path(root) / split / label / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(image())


def write_imagenet_layout(folder: Path, labels: Mapping[str, Sequence[str]],
                          jpeg: Callable[[], bytes]) -> dict[str, list[tuple[str, str]]]:
    """Write ImageNet's prepared layout ``folder/<split>/<wnid>/<file>`` (what ``jepa-prepare
    data=imagenet`` builds from the official archives).

    ``labels``: {split: wnid of each image} (see :func:`ilsvrc_names`); ``jpeg()`` gives the
    next image's bytes. Existing files are overwritten. Returns the names written.
    """
    names = ilsvrc_names(labels)
    write_class_folders(folder, names, jpeg)
    return names


def write_hf_parquet(spec: DatasetSpec, folder: Path, labels: Mapping[str, np.ndarray], shards: Mapping[str, int],
                     jpeg: Callable[[], bytes], row_group_size: int = ROW_GROUP_ROWS) -> None:
    """Write the Hugging Face release's shards under ``folder/data`` in its schema.

    Args:
        spec: ImageNet's spec (``options["parquet"]["prefixes"]``: split -> file prefix).
        folder: the dataset folder.
        labels: {split: label of each row, in row order}; the test split's are -1 upstream.
        shards: {split: number of shards}; rows are cut into them in order, in near-equal parts.
        jpeg: gives the next row's JPEG bytes, in row order.
        row_group_size: rows per row group, default 100 (as the release's writer).

    Files ``<prefix>-NNNNN-of-MMMMM.parquet``; rows ``image``: struct<bytes: binary, path:
    string> (path ``<prefix>_<row:08d>.JPEG``), ``label``: int64. Each shard is built in
    memory, then written: no split sits in memory whole.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])), ("label", pa.int64())])
    (Path(folder) / SHARD_FOLDER).mkdir(parents=True, exist_ok=True)
    for split, values in labels.items():
        prefix = spec.options["parquet"]["prefixes"][split]
        bounds = np.linspace(0, len(values), shards[split] + 1).astype(int)
        for shard in range(shards[split]):
            rows = range(bounds[shard], bounds[shard + 1])
            table = pa.table({"image": [{"bytes": jpeg(), "path": f"{prefix}_{row:08d}.JPEG"} for row in rows],
                              "label": [int(values[row]) for row in rows]}, schema=schema)
            name = f"{prefix}-{shard:05d}-of-{shards[split]:05d}.parquet"
            pq.write_table(table, Path(folder) / SHARD_FOLDER / name, row_group_size=row_group_size)
