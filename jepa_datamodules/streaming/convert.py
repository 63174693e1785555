"""Writing: any of our datasets as LitData optimized chunks (:func:`convert_to_litdata`).

``convert_to_litdata(dm, output)`` (the console's ``jepa-prepare ... format=litdata``) writes,
with LitData's own ``optimize`` and its progress bar, one optimized dataset per split the
DataModule reads (its pre-training split and its evaluation split)::

    <output>/<split>/         items {"index": int, "label": int, "image": ...}
    <output>/<split>-labels/  one item {"labels": int64 array}: every label, so the
                              loader knows them without reading a single image; written
                              last, so its presence marks a complete conversion

``image`` is the file's own bytes for file datasets (ImageNet JPEGs, never re-encoded)
and the raw ``HxWx3`` uint8 array for array datasets (CIFAR, STL-10, synthetic). With
``resize=<short side>`` (file datasets only) every image whose short side is longer is
stored resized to that short side (Pillow's Lanczos filter) and re-encoded as a JPEG of
``quality`` (default 90); smaller images keep their own bytes. FFCV's and LitData's
ImageNet recipes store 256-512 px versions like this: decoding costs about the pixel
count, so a loader decodes several times faster and reads a third of the bytes. The
conversion prints, for a sample of each split, bytes and decode time per image next to
the originals' (``resized_storage_report``). Items
keep the source order, so item ``i`` is dataset index ``i`` in either format. ``output``
is a folder or any URL LitData writes to (``s3://bucket/prefix``, ``gs://``, ...);
S3-compatible endpoints and credentials come from ``storage_options`` (passed to the
boto3 client, as LitData documents: ``{"endpoint_url": ..., "aws_access_key_id": ...}``)
or the usual ``AWS_*`` environment variables.

``<output>/facts/`` holds one item: the dataset's name, class count and class names and
its pre-training and evaluation splits (``dataset_facts``), so that a machine holding only
the chunks (no own-folder ``root``, no originals, an empty data folder) knows what it reads.
"""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from ..errors import ConfigError, setting
from ..formats.base import Source, load_encoded
from ..progress import LineWatcher
from ..progress import mode as progress_mode
from .remote import allow_plain_http, facts_url, labels_url, require_litdata, split_url

# One chunk file of this size holds ~640 ImageNet JPEGs or ~20,000 CIFAR images; LitData
# recommends chunks of tens of MB so that object-store requests stay few and large.
DEFAULT_CHUNK_BYTES = "64MB"
# JPEG quality of pre-resized images (resize=...): FFCV's ImageNet example writes 90.
DEFAULT_QUALITY = 90


class _ItemWriter:
    """``optimize``'s per-item function: index -> the stored item (see the module docstring)."""

    def __init__(self, source: Source, resize: int | None = None, quality: int = DEFAULT_QUALITY,
                 counter: Any = None):
        self.source = source
        self.resize = resize
        self.quality = quality
        self.counter = counter  # a shared multiprocessing.Value counting items written (fork only)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "counter": None}  # a shared counter only travels by fork

    def __call__(self, index: int) -> dict[str, Any]:
        if self.counter is not None:
            with self.counter.get_lock():
                self.counter.value += 1
        image = _payload(self.source, index)
        if self.resize is not None:
            image = resized_jpeg(image, self.resize, self.quality)
        return {"index": int(index), "label": int(self.source.labels[index]), "image": image}


def resized_jpeg(data: bytes, short_side: int, quality: int = DEFAULT_QUALITY) -> bytes:
    """``data`` (an encoded image) with its short side brought down to ``short_side``, as a
    JPEG of ``quality``; an image that is already that small keeps its own bytes."""
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
        short = min(width, height)
        if short <= short_side:
            return data
        size = (max(1, round(width * short_side / short)), max(1, round(height * short_side / short)))
        # DCT-scaled decoding down to at least twice the target: Lanczos then has the
        # pixels it needs, and the decode costs a fraction of a full one.
        image.draft("RGB", (2 * size[0], 2 * size[1]))
        resized = image.convert("RGB").resize(size, Image.LANCZOS)
    buffer = io.BytesIO()
    resized.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def resized_storage_report(source: Source, short_side: int, quality: int = DEFAULT_QUALITY,
                           samples: int = 64, seed: int = 0) -> dict[str, Any]:
    """Bytes and full-decode CPU ms per image, original vs resized, on ``samples`` images of ``source``.

    Decoding is timed with the workers' decoder (``transforms.decode_pixels``: simplejpeg
    when installed, else Pillow), one thread, each image decoded once after a first pass.
    ``total_gb`` extrapolates the mean to the whole split.
    """
    import time

    from ..pipeline.transforms import decode_pixels

    rng = np.random.default_rng(seed)
    picked = rng.choice(len(source), size=min(samples, len(source)), replace=False).tolist()
    originals = [_payload(source, i) for i in picked]
    resized = [resized_jpeg(data, short_side, quality) for data in originals]

    def summary(items: list[bytes]) -> dict[str, float]:
        for data in items[:1]:
            decode_pixels(Image.open(io.BytesIO(data)))  # first call pays one-off set-up
        start = time.thread_time()
        for data in items:
            decode_pixels(Image.open(io.BytesIO(data)))
        mean_bytes = sum(len(d) for d in items) / len(items)
        return {"kb_per_image": mean_bytes / 1024, "decode_ms_per_image": 1000 * (time.thread_time() - start) / len(items),
                "total_gb": mean_bytes * len(source) / 1e9}

    return {"short_side": short_side, "quality": quality, "images": len(source), "sampled": len(picked),
            "original": summary(originals), "resized": summary(resized)}


def _payload(source: Source, index: int) -> bytes | np.ndarray:
    encoded = load_encoded(source, index)  # image files (folders, own folders, parquet): their bytes
    if encoded is not None:
        return encoded
    image = source.load(index)
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    return np.ascontiguousarray(image, dtype=np.uint8)


class _LabelsWriter:
    def __init__(self, labels: np.ndarray):
        self.labels = np.asarray(labels, dtype=np.int64)

    def __call__(self, _: int) -> dict[str, Any]:
        return {"labels": self.labels}


class _FactsWriter:
    def __init__(self, facts: dict[str, Any]):
        self.text = json.dumps(facts, sort_keys=True)

    def __call__(self, _: int) -> dict[str, Any]:
        return {"json": self.text}


def dataset_facts(dm: Any) -> dict[str, Any]:
    """What a machine with only the chunks needs to know about ``dm``'s dataset."""
    spec = dm.spec
    classes = dm.classes
    return {"dataset": spec.name, "num_classes": int(dm.num_classes),
            "classes": [str(c) for c in classes] if classes is not None else None,
            "pretrain_split": spec.pretrain_split, "eval_split": spec.eval_split}


def convert_to_litdata(dm: Any, output: str | os.PathLike | None, *, chunk_bytes: str | int = DEFAULT_CHUNK_BYTES,
                       num_workers: int | None = None, splits: Sequence[str] | None = None,
                       storage_options: dict | None = None, force: bool | None = None,
                       progress: bool | None = None, resize: int | None = None,
                       quality: int | None = None) -> dict[str, str]:
    """Write ``dm``'s splits as LitData optimized datasets under ``output``; returns split -> URL.
    Progress goes to stderr (unless ``progress`` turns it off); the caller says how to read the chunks.

    ``dm`` must be prepared (``prepare_data``) and read its own files (``format="files"``).
    Defaults: ``chunk_bytes`` 64 MB; ``num_workers`` [None = min(4, CPUs)] processes;
    ``splits`` [None = the pre-training and evaluation splits]; ``storage_options``
    [None = ``dm.hparams.storage_options``]; ``force`` [None = ``dm.hparams.force``]
    overwrites a split converted before (otherwise that is an error); ``progress``
    [None = ``dm.hparams.progress``]: LitData's bar on a terminal, plain lines in a log (progress.py).
    ``resize`` [None = files as they are]: store file datasets' images at this short side
    (pixels), re-encoded as JPEGs of ``quality`` [None = 90]; see the module docstring.
    """
    litdata = require_litdata()
    if output is None or not str(output).strip():
        raise ConfigError(f"output={output!r} is invalid for a LitData conversion; allowed is a folder or a "
                          "URL such as s3://bucket/prefix.", setting="output", allowed="a folder or a URL")
    hp = dm.hparams
    if hp.get("format", "files") != "files":
        raise ConfigError(f"{setting('format', hp.format)}: convert_to_litdata reads a dataset from its own files; "
                          f"build the DataModule with {setting('format', 'files')} to convert it.", setting="format",
                          allowed=["files"])
    storage_options = dict(storage_options if storage_options is not None else (hp.get("storage_options") or {}))
    allow_plain_http(storage_options)
    force = hp.get("force", False) if force is None else force
    progress = hp.get("progress") if progress is None else progress
    shown = progress_mode(progress)
    verbose = shown == "bar"  # LitData's own bar; in a log, LineWatcher's plain lines instead
    workers = num_workers if num_workers is not None else max(1, min(4, os.cpu_count() or 1))
    if workers <= 0:
        raise ConfigError(f"num_workers={workers} is invalid; allowed is a positive integer.", setting="num_workers",
                          allowed="a positive integer")
    _check_resize(resize, quality)
    quality = DEFAULT_QUALITY if quality is None else quality
    spec = dm.spec
    wanted = list(splits) if splits is not None else list(dict.fromkeys([spec.pretrain_split, spec.eval_split]))
    if "://" not in str(output):
        Path(output).mkdir(parents=True, exist_ok=True)
    written: dict[str, str] = {}
    for split in wanted:
        source = dm.open_split(split)
        if resize is not None and len(source) and load_encoded(source, 0) is None:
            raise ConfigError(f"resize={resize} applies to datasets stored as image files (image folders, parquet "
                              f"shards); {spec.name} stores raw pixel arrays at their native {spec.resolution} px: "
                              "leave resize unset.", setting="resize", allowed=None)
        url = split_url(output, split)
        options = dict(chunk_bytes=chunk_bytes, storage_options=storage_options, mode="overwrite" if force else None,
                       start_method=_start_method(), verbose=verbose,
                       # Items stay in source order, so item i is dataset index i.
                       keep_data_ordered=True, reorder_files=False)
        if shown != "off":
            print(f"{spec.name} {split}: {len(source)} items -> {url}", file=sys.stderr)
        counter = multiprocessing.Value("q", 0) if options["start_method"] == "fork" else None
        items_done = (lambda: counter.value) if counter is not None else (lambda: None)  # noqa: B023
        try:
            with LineWatcher(f"convert {spec.name} {split}", len(source), items_done, progress=shown, unit="items"):
                litdata.optimize(fn=_ItemWriter(source, resize, quality, counter), inputs=list(range(len(source))),
                                 output_dir=url, num_workers=min(workers, len(source)), **options)
            litdata.optimize(fn=_LabelsWriter(source.labels), inputs=[0], output_dir=labels_url(url),
                             num_workers=1, **{**options, "verbose": False})
        except RuntimeError as error:
            if "already contains an optimized" in str(error):
                raise ConfigError(f"{url} already holds a converted dataset; allowed is a new output, or force=True "
                                  "to overwrite it.", setting="output", allowed="a new output") from error
            raise
        written[split] = url
        if resize is not None:
            print(_format_storage(spec.name, split, resized_storage_report(source, resize, quality)))
    # Always rewritten: the facts describe the dataset, not which of its splits this call wrote.
    litdata.optimize(fn=_FactsWriter(dataset_facts(dm)), inputs=[0], output_dir=facts_url(output), num_workers=1,
                     **{**options, "mode": "overwrite", "verbose": False})
    return written


def _check_resize(resize: int | None, quality: int | None) -> None:
    if resize is not None and (not isinstance(resize, int) or isinstance(resize, bool) or resize <= 0):
        raise ConfigError(f"resize={resize} is invalid; allowed is a positive integer (the stored short side in "
                          "pixels, e.g. 256) or None to store the files as they are.", setting="resize",
                          allowed="a positive integer or None")
    if quality is not None and (not isinstance(quality, int) or isinstance(quality, bool) or not 1 <= quality <= 100):
        raise ConfigError(f"quality={quality} is invalid; allowed is an integer from 1 to 100 (JPEG quality, e.g. 90).",
                          setting="quality", allowed="1 to 100")
    if quality is not None and resize is None:
        raise ConfigError(f"quality={quality} only applies with resize=<short side>; set resize too, or leave quality "
                          "unset (without resize the files are stored byte for byte).", setting="quality")


def _format_storage(name: str, split: str, report: dict[str, Any]) -> str:
    original, resized = report["original"], report["resized"]
    return (f"{name} {split}: stored at short side {report['short_side']} px, quality {report['quality']}: "
            f"{resized['kb_per_image']:.0f} KB and {resized['decode_ms_per_image']:.2f} ms to decode per image, against "
            f"{original['kb_per_image']:.0f} KB and {original['decode_ms_per_image']:.2f} ms for the original files "
            f"(~{resized['total_gb']:.2f} GB vs ~{original['total_gb']:.2f} GB for {report['images']:,} images; "
            f"{report['sampled']} sampled, 1 thread)")


def _start_method() -> str | None:
    # fork shares the already-open source with the writer processes instead of pickling it
    # (LitData's default, spawn, re-imports everything and costs seconds per call). Only on
    # Linux: macOS forks are unsafe once system frameworks have started threads.
    return "fork" if sys.platform.startswith("linux") else None
