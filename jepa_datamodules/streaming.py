"""LitData: any of our datasets as optimized chunks, and a source that reads them back.

``convert_to_litdata(dm, output)`` (``jepa-prepare data=X format=litdata output=...``)
writes, with LitData's own ``optimize`` and its progress bar, one optimized dataset per
split the DataModule reads (its pre-training split and its evaluation split)::

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

``LitDataSource`` reads one such split through a ``StreamingDataset`` used as a random-
access reader (``dataset[i]``), so the DataModule keeps its own sampler, transforms,
collator, DDP sharding and mid-epoch resume unchanged whatever the format: a LitData run
gives exactly the batches (samples, masks, pixels) of the same run on the files. Why not
LitData's shuffling iterator and ``StreamingDataLoader``: their order depends on the
number of loader workers (0 and 2 workers give different orders), so it cannot match the
files format or stay fixed when the worker count changes; and resuming through a
Lightning checkpoint (litdata 0.2.76, checked with 0 and 2 workers) finishes the
interrupted epoch correctly but then shuffles the next epoch differently from the
uninterrupted run. Costs of random access: local folders are memory-mapped (about 25 %
fewer images/s than the array files on a 2-core machine); remote items are fetched by
LitData's on-demand byte-range reads, two small GETs per item and nothing cached, so every
epoch reads the data again. ``load_many`` overlaps a batch's requests in ``io_threads``
threads (with 20 ms injected per-request latency on a loopback S3: 18 -> 94 images/s in
one process, capped by the fake server's CPU).
"""

from __future__ import annotations

import io
import multiprocessing
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from .choices import check_choice
from .progress import LineWatcher
from .progress import mode as progress_mode
from .formats.base import Source, load_encoded

# One chunk file of this size holds ~640 ImageNet JPEGs or ~20,000 CIFAR images; LitData
# recommends chunks of tens of MB so that object-store requests stay few and large.
DEFAULT_CHUNK_BYTES = "64MB"
# Byte-range reads in flight per loader worker when the data is remote.
DEFAULT_IO_THREADS = 16
# JPEG quality of pre-resized images (resize=...): FFCV's ImageNet example writes 90.
DEFAULT_QUALITY = 90
_LABELS_SUFFIX = "-labels"


def split_url(root: str | os.PathLike, split: str) -> str:
    """Where ``split`` lives under a converted dataset (``+`` is avoided in object keys)."""
    return _join(root, split.replace("+", "_"))


def _join(root: str | os.PathLike, name: str) -> str:
    root = os.fspath(root)
    if "://" in root:
        return root.rstrip("/") + "/" + name
    return str(Path(root) / name)


def _is_remote(url: str) -> bool:
    return "://" in url and not url.startswith("file://")


def _allow_plain_http(storage_options: dict) -> None:
    """Let LitData's obstore client talk to an ``http://`` S3 endpoint (MinIO, moto, a
    cluster-local gateway).

    LitData moves chunks with obstore, whose HTTP client refuses plain http unless its
    ``allow_http`` client option is set, and LitData builds that client from a fixed
    module-level dict (``litdata.streaming.downloader._OBSTORE_CLIENT_OPTIONS``, litdata
    0.2.76) that never sets it, so such endpoints fail with "HTTP error: builder error".
    boto3, which LitData uses for the index files, has no such restriction. Only applied
    when the configured endpoint is plain http; a no-op if LitData changes that dict.
    """
    endpoint = (storage_options.get("endpoint_url") or os.environ.get("AWS_ENDPOINT_URL_S3")
                or os.environ.get("AWS_ENDPOINT_URL") or "")
    if not str(endpoint).startswith("http://"):
        return
    from litdata.streaming import downloader

    options = getattr(downloader, "_OBSTORE_CLIENT_OPTIONS", None)
    if isinstance(options, dict) and not options.get("allow_http"):
        downloader._OBSTORE_CLIENT_OPTIONS = {**options, "allow_http": True}


def _require_litdata() -> Any:
    try:
        import litdata
    except ImportError as error:  # pragma: no cover - litdata is an optional extra
        raise ImportError("format=litdata needs the litdata package: pip install 'jepa-datamodules[litdata]'.") from error
    return litdata


# ------------------------------------------------------------------------- writing
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

    from .pipeline.transforms import decode_pixels

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


def convert_to_litdata(dm: Any, output: str | os.PathLike | None, *, chunk_bytes: str | int = DEFAULT_CHUNK_BYTES,
                       num_workers: int | None = None, splits: Sequence[str] | None = None,
                       storage_options: dict | None = None, force: bool | None = None,
                       progress: bool | None = None, resize: int | None = None,
                       quality: int | None = None) -> dict[str, str]:
    """Write ``dm``'s splits as LitData optimized datasets under ``output``; returns split -> URL.

    ``dm`` must be prepared (``prepare_data``) and read its own files (``format="files"``).
    Defaults: ``chunk_bytes`` 64 MB; ``num_workers`` [None = min(4, CPUs)] processes;
    ``splits`` [None = the pre-training and evaluation splits]; ``storage_options``
    [None = ``dm.hparams.storage_options``]; ``force`` [None = ``dm.hparams.force``]
    overwrites a split converted before (otherwise that is an error); ``progress``
    [None = ``dm.hparams.progress``]: LitData's bar on a terminal, plain lines in a log (progress.py).
    ``resize`` [None = files as they are]: store file datasets' images at this short side
    (pixels), re-encoded as JPEGs of ``quality`` [None = 90]; see the module docstring.
    """
    litdata = _require_litdata()
    if output is None or not str(output).strip():
        raise ValueError("output=None is invalid for format=litdata; allowed is a folder or a URL such as "
                         "s3://bucket/prefix (jepa-prepare ... format=litdata output=<where>).")
    hp = dm.hparams
    if hp.get("format", "files") != "files":
        raise ValueError(f"format={hp.format!r}: convert_to_litdata reads a dataset from its own files; "
                         "build the DataModule with format='files' to convert it.")
    storage_options = dict(storage_options if storage_options is not None else (hp.get("storage_options") or {}))
    _allow_plain_http(storage_options)
    force = hp.get("force", False) if force is None else force
    progress = hp.get("progress") if progress is None else progress
    shown = progress_mode(progress)
    verbose = shown == "bar"  # LitData's own bar; in a log, LineWatcher's plain lines instead
    workers = num_workers if num_workers is not None else max(1, min(4, os.cpu_count() or 1))
    if workers <= 0:
        raise ValueError(f"num_workers={workers} is invalid; allowed is a positive integer.")
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
            raise ValueError(f"resize={resize} applies to datasets stored as image files (image folders, parquet shards); "
                             f"{spec.name} stores raw pixel arrays at their native {spec.resolution} px: leave resize unset.")
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
            litdata.optimize(fn=_LabelsWriter(source.labels), inputs=[0], output_dir=url + _LABELS_SUFFIX,
                             num_workers=1, **{**options, "verbose": False})
        except RuntimeError as error:
            if "already contains an optimized" in str(error):
                raise ValueError(f"{url} already holds a converted dataset; allowed is a new output, or force=true "
                                 "to overwrite it.") from error
            raise
        written[split] = url
        if resize is not None:
            print(_format_storage(spec.name, split, resized_storage_report(source, resize, quality)))
    if shown != "off":
        print(f"{spec.name}: LitData chunks at {output} (read them with data.format=litdata data.input={output})",
              file=sys.stderr)
    return written


def _check_resize(resize: int | None, quality: int | None) -> None:
    if resize is not None and (not isinstance(resize, int) or isinstance(resize, bool) or resize <= 0):
        raise ValueError(f"resize={resize} is invalid; allowed is a positive integer (the stored short side in "
                         "pixels, e.g. 256) or null to store the files as they are.")
    if quality is not None and (not isinstance(quality, int) or isinstance(quality, bool) or not 1 <= quality <= 100):
        raise ValueError(f"quality={quality} is invalid; allowed is an integer from 1 to 100 (JPEG quality, e.g. 90).")
    if quality is not None and resize is None:
        raise ValueError(f"quality={quality} only applies with resize=<short side>; set resize too, or leave quality "
                         "unset (without resize the files are stored byte for byte).")


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


# ------------------------------------------------------------------------- reading
class LitDataSource:
    """One converted split, read item by item through ``litdata.StreamingDataset``.

    ``url``: the split's folder or URL (``split_url(input, split)``). ``storage_options``:
    passed to LitData (S3: boto3 client arguments such as ``endpoint_url``).
    ``cache_dir``: LitData's local cache for remote data [None = LitData's default].
    ``io_threads``: parallel item reads per process when remote [16]. The dataset is
    opened lazily in each process, so loader workers open their own.
    """

    def __init__(self, url: str, storage_options: dict | None = None, cache_dir: str | None = None,
                 io_threads: int = DEFAULT_IO_THREADS):
        _require_litdata()
        self.url = url
        self.storage_options = dict(storage_options or {})
        self.cache_dir = cache_dir
        self.io_threads = int(io_threads)
        self.remote = _is_remote(url)
        self._dataset: Any = None
        self.labels = np.asarray(self._open(url + _LABELS_SUFFIX, what="labels")[0]["labels"], dtype=np.int64)
        count = len(self._open(url, what="items"))
        if count != len(self.labels):
            raise ValueError(f"{url} holds {count} items but {len(self.labels)} labels; the conversion is damaged: "
                             "convert again with jepa-prepare ... format=litdata force=true.")
        # Not kept: loader workers forked from this process must not share its connections.

    def _open(self, url: str, what: str) -> Any:
        import litdata

        _allow_plain_http(self.storage_options)  # again in each loader worker (spawn re-imports)

        try:
            # batch_decode=0: decode just the item asked for. LitData's "auto" decodes a
            # window of up to 256 neighbours per read, which pays off for its sequential
            # iterator but made random access ~90x slower here (2.1 ms vs 0.023 ms per 32x32 item).
            return litdata.StreamingDataset(url, cache_dir=self.cache_dir, storage_options=self.storage_options or None,
                                            batch_decode=0)
        except (FileNotFoundError, ValueError) as error:
            raise FileNotFoundError(
                f"{url} is not a LitData dataset ({what} missing: {error}); create it with "
                f"jepa-prepare data=<name> format=litdata output=<where>.") from error

    @property
    def dataset(self) -> Any:
        if self._dataset is None:
            self._dataset = self._open(self.url, what="items")
        return self._dataset

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_dataset": None}

    def __len__(self) -> int:
        return len(self.labels)

    def load(self, index: int) -> np.ndarray | Image.Image:
        return _decode(self.dataset[int(index)]["image"])

    def load_encoded(self, index: int) -> bytes | None:
        """The stored file's bytes (file datasets), or None for stored arrays."""
        image = self.dataset[int(index)]["image"]
        return bytes(image) if isinstance(image, (bytes, bytearray, memoryview)) else None

    def load_many(self, indices: Sequence[int]) -> list[np.ndarray | Image.Image]:
        """Items in order; remote reads overlap in ``io_threads`` threads."""
        if not self.remote or self.io_threads <= 1 or len(indices) <= 1:
            return [self.load(i) for i in indices]
        dataset = self.dataset
        first = dataset[int(indices[0])]["image"]  # sets up LitData's reader before threads share it
        with ThreadPoolExecutor(max_workers=min(self.io_threads, len(indices) - 1)) as pool:
            rest = list(pool.map(lambda i: dataset[int(i)]["image"], indices[1:]))
        return [_decode(item) for item in [first, *rest]]


def _decode(image: Any) -> np.ndarray | Image.Image:
    if isinstance(image, (bytes, bytearray, memoryview)):
        # Unopened pixels, as from a file: the train view can ask the JPEG decoder for a
        # reduced size before decoding (see pipeline/transforms.py).
        return Image.open(io.BytesIO(bytes(image)))
    return np.asarray(image)


# ------------------------------------------------------------- the DataModule's input
#: The DataModule's ``format`` argument: its own files, or LitData chunks.
FORMATS = ("files", "litdata")


class LitDataInput:
    """``format="litdata"``: a DataModule's splits read from the chunks that
    ``jepa-prepare data=<name> format=litdata output=<input>`` wrote. There is nothing to
    prepare (the chunks are read where they are) and no option that selects part of a split
    (the chunks hold whole splits)."""

    def __init__(self, input: str, storage_options: dict | None = None, cache_dir: str | None = None):
        self.input = input
        self.storage_options = storage_options
        self.cache_dir = cache_dir

    def refuse_subsets(self, options: dict[str, Any], names: Sequence[str]) -> None:
        """Raise for a set option among ``names`` (STL-10's ``fold``): the chunks hold whole splits."""
        for name in names:
            if options.get(name) is not None:
                raise ValueError(f"{name}={options[name]} is not available with format=litdata (the chunks hold whole "
                                 f"splits); allowed is {name}=None, or format=files.")

    def open_split(self, split: str) -> LitDataSource:
        return LitDataSource(split_url(self.input, split), storage_options=self.storage_options, cache_dir=self.cache_dir)


def open_input(format: str, input: str | None, storage_options: dict | None = None,
               cache_dir: str | None = None) -> LitDataInput | None:
    """The DataModule's LitData input for ``format="litdata"``; None for its own files. The four
    arguments are checked here, each bad combination refused with one sentence."""
    check_choice("format", format, FORMATS)
    if format == "litdata" and not input:
        raise ValueError(f"input={input!r} is invalid with format=litdata; allowed is the folder or URL "
                         "(s3://bucket/prefix) that jepa-prepare ... format=litdata output=<where> wrote.")
    if format == "files" and input is not None:
        raise ValueError(f"input={input!r} is only read with format=litdata; set format=litdata "
                         "or leave input unset to read the dataset's own files.")
    return LitDataInput(input, storage_options, cache_dir) if format == "litdata" else None
