"""Fakes for data=imagefolder and for the Hugging Face ImageNet release, in their exact layouts.

* :func:`make_labelled_folder`: ``root/train/<class>/...`` with nested sub-folders, mixed
  formats (JPEG with upper- and lower-case suffixes, PNG, WebP, BMP), a CMYK JPEG,
  grayscale, palette and RGBA PNGs, one truncated JPEG, hidden files and a non-image.
* :func:`make_unlabeled_folder`: images at several depths, no class structure.
* :func:`write_hf_parquet`: ``data/{train,validation,test}-NNNNN-of-MMMMM.parquet``, written
  by ``fake_formats.write_hf_parquet`` in the release's schema (``image``: struct<bytes: binary, path: string>,
  ``label``: int64, -1 in test), several row groups per shard, labels shuffled across shards.

Every builder returns what a loader must give back: per relative path (or per split, in
row order) the label and the RGB pixels a correct decoder produces.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from jepa_datamodules.catalog import get_spec
from tests.helpers.fake_formats import smooth_pixels, write_file
from tests.helpers.fake_formats import write_hf_parquet as write_hf_parquet_shards


def encode(pixels: np.ndarray, fmt: str, mode: str = "RGB") -> tuple[bytes, np.ndarray]:
    """``(file bytes, the RGB pixels that decoding them must give)`` for one image."""
    image = Image.fromarray(pixels, "RGB")
    if mode == "L":
        image = image.convert("L")
    elif mode == "P":
        image = image.convert("P", palette=Image.ADAPTIVE, colors=16)
    elif mode == "RGBA":
        image = image.convert("RGBA")
        image.putalpha(128)
    elif mode == "CMYK":
        image = image.convert("CMYK")
    buffer = io.BytesIO()
    options = {"quality": 92} if fmt == "JPEG" else ({"lossless": True} if fmt == "WEBP" else {})
    image.save(buffer, format=fmt, **options)
    data = buffer.getvalue()
    with Image.open(io.BytesIO(data)) as decoded:
        expected = np.asarray(decoded.convert("RGB"))
    return data, expected


def make_labelled_folder(root: Path, seed: int = 0, val: bool = True) -> dict:
    """Two classes (``cat``, ``dog``) under ``root/train`` (and one image each under ``root/val``).

    Returns ``{"train": {relpath: (label, pixels)}, "val": {...}, "corrupt": [relpaths], "cmyk": relpath}``.
    """
    rng = np.random.default_rng(seed)
    plan = {  # relative path under train/ -> (format, mode)
        "cat/a.jpg": ("JPEG", "RGB"), "cat/b.PNG": ("PNG", "RGB"), "cat/sub/c.webp": ("WEBP", "RGB"),
        "cat/sub/deeper/d.BMP": ("BMP", "RGB"), "cat/e_grey.png": ("PNG", "L"),
        "dog/f.JPEG": ("JPEG", "RGB"), "dog/g_cmyk.jpg": ("JPEG", "CMYK"), "dog/h_palette.png": ("PNG", "P"),
        "dog/i_rgba.png": ("PNG", "RGBA"), "dog/j.jpeg": ("JPEG", "L"),
    }
    out: dict = {"train": {}, "val": {}, "corrupt": ["dog/truncated.jpg"], "cmyk": "dog/g_cmyk.jpg"}
    for rel, (fmt, mode) in plan.items():
        data, expected = encode(smooth_pixels(rng, (48, 40)), fmt, mode)
        write_file(root / "train" / rel, data)
        out["train"][rel] = (0 if rel.startswith("cat/") else 1, expected)
    whole, _ = encode(smooth_pixels(rng, (48, 40)), "JPEG")
    write_file(root / "train" / "dog" / "truncated.jpg", whole[: len(whole) * 4 // 5])  # a cut-off download
    write_file(root / "train" / "dog" / ".hidden.jpg", whole)  # hidden: ignored
    write_file(root / "train" / ".thumbnails" / "x.jpg", whole)  # hidden folder: ignored
    write_file(root / "train" / "cat" / "notes.txt", b"not an image")
    write_file(root / "train" / "cat" / ".DS_Store", b"\0\0\0\1Bud1")
    if val:
        for rel, label in (("cat/v1.jpg", 0), ("dog/v2.png", 1)):
            data, expected = encode(smooth_pixels(rng, (40, 48)), "JPEG" if rel.endswith("jpg") else "PNG")
            write_file(root / "val" / rel, data)
            out["val"][rel] = (label, expected)
    return out


def make_unlabeled_folder(root: Path, count: int = 12, seed: int = 1) -> dict[str, np.ndarray]:
    """``count`` images at depths 0-3 under ``root`` (no class structure); relpath -> pixels."""
    rng = np.random.default_rng(seed)
    folders = ["", "2023/01/", "2023/02/", "misc/a/b/"]
    formats = [("jpg", "JPEG"), ("png", "PNG"), ("webp", "WEBP"), ("bmp", "BMP")]
    out = {}
    for i in range(count):
        suffix, fmt = formats[i % len(formats)]
        rel = f"{folders[i % len(folders)]}img_{i:03d}.{suffix}"
        data, expected = encode(smooth_pixels(rng, (36 + i, 30)), fmt)
        write_file(root / rel, data)
        out[rel] = expected
    (root / "README.md").write_text("my photos")
    return out


# --------------------------------------------------------------------- Hugging Face ImageNet
def write_hf_parquet(folder: Path, rows: dict[str, int], shards: dict[str, int], labels: dict[str, np.ndarray],
                     row_group_size: int = 4, seed: int = 0) -> dict[str, list[tuple[int, bytes, np.ndarray]]]:
    """Write the release's shards under ``folder/data`` (formats/hfparquet.py's writer, small
    row groups so that shards hold several); returns per split, in row order, ``(label, jpeg
    bytes, pixels)``. ``labels[split]`` are the rows' labels (test: ignored, -1), given in any
    order: they are shuffled before being cut into shards."""
    rng = np.random.default_rng(seed)
    row_labels = {split: np.full(count, -1, dtype=np.int64) if split == "test" else rng.permutation(labels[split])
                  for split, count in rows.items()}
    images: list[tuple[bytes, np.ndarray]] = []

    def jpeg() -> bytes:
        images.append(encode(smooth_pixels(rng, (40 + len(images) % 7, 32)), "JPEG"))
        return images[-1][0]

    write_hf_parquet_shards(get_spec("imagenet"), folder, row_labels, shards, jpeg, row_group_size=row_group_size)
    written, start = {}, 0
    for split, values in row_labels.items():
        written[split] = [(int(label), *image) for label, image in zip(values, images[start:start + len(values)])]
        start += len(values)
    return written


#: The small release the parquet tests share: 6 classes, rows and shards per split.
HF_CLASSES = 6
HF_ROWS = {"train": 30, "val": 12, "test": 6}
HF_SHARDS = {"train": 3, "val": 2, "test": 1}


def make_hf_release(root: Path) -> tuple[Path, dict[str, list[tuple[int, bytes, np.ndarray]]], dict]:
    """The release of :data:`HF_ROWS` rows under ``root/data/imagenet``; returns (data_dir, what
    :func:`write_hf_parquet` wrote, the ``$JEPA_CATALOG`` entries for its counts)."""
    labels = {split: np.arange(HF_ROWS[split]) % HF_CLASSES for split in ("train", "val")}
    written = write_hf_parquet(root / "data" / "imagenet", HF_ROWS, HF_SHARDS, labels)
    entries = {"imagenet": {"num_classes": HF_CLASSES, "options": {"parquet": {
        "repo": "ILSVRC/imagenet-1k", "prefixes": {"train": "train", "val": "validation", "test": "test"},
        "shards": HF_SHARDS, "splits": HF_ROWS}}}}
    return root / "data", written, entries
