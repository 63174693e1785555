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

``<output>/facts/`` holds one item: the dataset's name, class count and class names and
its pre-training and evaluation splits (``dataset_facts``), so that a machine holding only
the chunks (no ``data.root``, no originals, an empty data folder) knows what it reads.

``LitDataSource`` reads one split through a ``StreamingDataset`` used as a random-access
reader, so the DataModule keeps its own sampler, transforms, collator, DDP sharding and
mid-epoch resume whatever the format. Its chunks are its blocks (``formats/base.py``): with
``shuffle="auto"`` the training order goes chunk by chunk, mixing the items of a window of
chunks into batches (``pipeline/sampling.py``), and with ``shuffle="full"`` a LitData run
gives exactly the batches (samples, masks, pixels) of the same run on the files. Why not
LitData's own shuffling iterator and ``StreamingDataLoader``: their order depends on the
number of loader workers (0 and 2 workers give different orders), and resuming through a
Lightning checkpoint (litdata 0.2.76, checked with 0 and 2 workers) finishes the
interrupted epoch correctly but then shuffles the next epoch differently from the
uninterrupted run. Local chunks are memory-mapped where they are. Remote chunks
(``s3://``, ``gs://``, ...) are downloaded whole, one request each, into a local
:class:`ChunkCache` shared by the processes of a machine and bounded in bytes
(``stream_cache_bytes``); each batch names the chunks the next batches need
(``BatchKey.upcoming``), which the loader worker downloads in background threads while it
builds the current batch, so no request is made per item.
"""

from __future__ import annotations

import contextlib
import io
import multiprocessing
import os
import sys
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from .choices import check_choice
from .progress import LineWatcher
from .progress import mode as progress_mode
from .formats.base import Source, load_encoded
from .storage.download import DownloadError
from .errors import ConfigError, FormatError

# One chunk file of this size holds ~640 ImageNet JPEGs or ~20,000 CIFAR images; LitData
# recommends chunks of tens of MB so that object-store requests stay few and large.
DEFAULT_CHUNK_BYTES = "64MB"
# Whole-chunk downloads in flight per loader worker when the data is remote.
DEFAULT_IO_THREADS = 4
# The most bytes of remote chunks kept on local disk (stream_cache_bytes).
DEFAULT_CACHE_BYTES = "4GB"
# JPEG quality of pre-resized images (resize=...): FFCV's ImageNet example writes 90.
DEFAULT_QUALITY = 90
_LABELS_SUFFIX = "-labels"
#: The conversion's facts (dataset, splits, class count and names), so that chunks are read
#: on a machine that holds nothing else (no originals, no data folder).
_FACTS = "facts"


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
allow_plain_http = _allow_plain_http


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


class _FactsWriter:
    def __init__(self, facts: dict[str, Any]):
        import json

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


def read_facts(input: str, storage_options: dict | None = None, cache_dir: str | None = None) -> dict[str, Any] | None:
    """The facts ``convert_to_litdata`` recorded under ``input``; None for a conversion made before they were."""
    import json

    try:
        item = read_single_item(_join(input, _FACTS), dict(storage_options or {}), cache_dir, "facts")
    except FileNotFoundError:
        return None
    return json.loads(item["json"])


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
        raise ConfigError("output=None is invalid for format=litdata; allowed is a folder or a URL such as "
                         "s3://bucket/prefix (jepa-prepare ... format=litdata output=<where>).")
    hp = dm.hparams
    if hp.get("format", "files") != "files":
        raise ConfigError(f"format={hp.format!r}: convert_to_litdata reads a dataset from its own files; "
                         "build the DataModule with format='files' to convert it.")
    storage_options = dict(storage_options if storage_options is not None else (hp.get("storage_options") or {}))
    _allow_plain_http(storage_options)
    force = hp.get("force", False) if force is None else force
    progress = hp.get("progress") if progress is None else progress
    shown = progress_mode(progress)
    verbose = shown == "bar"  # LitData's own bar; in a log, LineWatcher's plain lines instead
    workers = num_workers if num_workers is not None else max(1, min(4, os.cpu_count() or 1))
    if workers <= 0:
        raise ConfigError(f"num_workers={workers} is invalid; allowed is a positive integer.")
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
            raise ConfigError(f"resize={resize} applies to datasets stored as image files (image folders, parquet shards); "
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
                raise ConfigError(f"{url} already holds a converted dataset; allowed is a new output, or force=true "
                                 "to overwrite it.") from error
            raise
        written[split] = url
        if resize is not None:
            print(_format_storage(spec.name, split, resized_storage_report(source, resize, quality)))
    # Always rewritten: the facts describe the dataset, not which of its splits this call wrote.
    litdata.optimize(fn=_FactsWriter(dataset_facts(dm)), inputs=[0], output_dir=_join(output, _FACTS), num_workers=1,
                     **{**options, "mode": "overwrite", "verbose": False})
    if shown != "off":
        print(f"{spec.name}: LitData chunks at {output} (read them with data.format=litdata data.input={output})",
              file=sys.stderr)
    return written


def _check_resize(resize: int | None, quality: int | None) -> None:
    if resize is not None and (not isinstance(resize, int) or isinstance(resize, bool) or resize <= 0):
        raise ConfigError(f"resize={resize} is invalid; allowed is a positive integer (the stored short side in "
                         "pixels, e.g. 256) or null to store the files as they are.")
    if quality is not None and (not isinstance(quality, int) or isinstance(quality, bool) or not 1 <= quality <= 100):
        raise ConfigError(f"quality={quality} is invalid; allowed is an integer from 1 to 100 (JPEG quality, e.g. 90).")
    if quality is not None and resize is None:
        raise ConfigError(f"quality={quality} only applies with resize=<short side>; set resize too, or leave quality "
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
_SIZE_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
               "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_bytes(value: int | str, argument: str = "stream_cache_bytes") -> int:
    """``value`` in bytes: an int, or a size such as ``"4GB"``, ``"512MiB"``; refused in one sentence otherwise."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0:
        return int(value)
    text = str(value).strip().upper().replace(" ", "")
    number = text.rstrip("KMGTIB")
    unit = text[len(number):]
    try:
        amount = float(number) * _SIZE_UNITS[unit]
    except (KeyError, ValueError):
        amount = 0
    if isinstance(value, bool) or amount <= 0:
        raise ConfigError(f"{argument}={value!r} is invalid; allowed is a positive number of bytes or a size such as "
                         "'4GB' or '512MiB'.")
    return int(amount)


def _check_reachable(url: str, storage_options: dict, timeout: float = 5.0) -> None:
    """Refuse an S3-compatible endpoint that does not answer, in one sentence naming ``url``.

    LitData's S3 client retries a failed request up to 1,000 times (botocore's adaptive mode),
    so an endpoint that is down would otherwise look like a hang. Only a configured endpoint
    URL (``storage_options.endpoint_url``, ``$AWS_ENDPOINT_URL[_S3]``) is probed: one TCP connect.
    """
    import socket
    from urllib.parse import urlparse

    endpoint = (storage_options.get("endpoint_url") or os.environ.get("AWS_ENDPOINT_URL_S3")
                or os.environ.get("AWS_ENDPOINT_URL"))
    if not endpoint:
        return
    parsed = urlparse(str(endpoint))
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname or "", port), timeout=timeout).close()
    except OSError as error:
        raise DownloadError(f"Could not read {url}: the endpoint {endpoint} does not answer ({error}); check "
                            "storage_options.endpoint_url and that the object store is running and reachable "
                            "from this machine.") from error


def default_cache_root() -> Path:
    """Where whole chunks of remote inputs go unless ``cache_dir`` says otherwise."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "jepa_datamodules" / "litdata"


class ChunkCache:
    """Whole chunks of one remote LitData dataset, mirrored into a local folder.

    The folder (``<cache_dir>/<name>-<hash of url>``) is a LitData dataset of its own: the
    remote ``index.json`` plus the chunk files fetched so far, each downloaded whole with one
    request by LitData's own downloader (S3, GCS, Azure, ...; temp file, then rename) and
    read from the local file. The processes of one machine share it: a chunk another
    process is downloading is waited for, not fetched twice. At most ``max_bytes`` of chunks
    stay: once more are there, the least recently used ones go first, except the
    ``keep_recent`` most recently used (the sampler's window, see ``reserve_blocks``) and
    those used in the last ``GRACE_SECONDS`` (another loader worker may be about to read
    them). ``gets`` counts this process's downloads.
    """

    GRACE_SECONDS = 2.0
    WAIT_SECONDS = 600.0

    def __init__(self, url: str, cache_dir: str | os.PathLike | None, storage_options: dict, max_bytes: int):
        import hashlib

        self.url = url.rstrip("/")
        digest = hashlib.sha1(self.url.encode()).hexdigest()[:12]
        name = "".join(c if c.isalnum() or c in "-_" else "-" for c in self.url.split("://", 1)[-1])[-48:]
        self.folder = Path(cache_dir or default_cache_root()) / f"{name.strip('-')}-{digest}"
        self.storage_options = dict(storage_options)
        self.max_bytes = int(max_bytes)
        self.gets = 0
        self._count_lock = threading.Lock()
        self.keep_recent = 1
        self._downloader: Any = None
        self._index: dict | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_downloader": None, "gets": 0, "_count_lock": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _count_lock=threading.Lock())

    def _get(self, name: str, local: Path) -> None:
        """Download ``name`` to ``local`` with one request (a no-op while another process holds its lock)."""
        if self._downloader is None:
            from litdata.streaming.downloader import get_downloader

            _check_reachable(self.url, self.storage_options)
            _allow_plain_http(self.storage_options)
            self._downloader = get_downloader(self.url, str(self.folder), [], self.storage_options or None)
        self.folder.mkdir(parents=True, exist_ok=True)
        had = local.is_file()
        try:
            self._downloader.download_file(f"{self.url}/{name}", str(local))
        except Exception as error:  # noqa: BLE001 - any transport failure is one sentence naming the URL
            raise DownloadError(f"Could not read {self.url}/{name} ({type(error).__name__}: {error}); check that the "
                                "endpoint (storage_options.endpoint_url) is reachable and the credentials are "
                                "valid.") from error
        if local.is_file() and not had:
            with self._count_lock:  # prefetch threads download side by side
                self.gets += 1

    def index(self, refresh: bool = False) -> dict:
        """The remote ``index.json``. The main process fetches it again when it opens the split
        (``refresh``); chunks cached from an earlier conversion at the same URL are then dropped."""
        if self._index is None or refresh:
            import json

            local = self.folder / "index.json"
            if refresh or not local.is_file():
                fresh = self.folder / f".index.json.{os.getpid()}"
                with contextlib.suppress(FileNotFoundError):
                    fresh.unlink()
                self._get("index.json", fresh)
                old = local.read_bytes() if local.is_file() else None
                if old is not None and old != fresh.read_bytes():
                    for path in self.folder.glob("*.bin"):
                        path.unlink()
                os.replace(fresh, local)
            self._index = json.loads(local.read_text())
        return self._index

    def chunk_sizes(self) -> list[int]:
        return [int(chunk["chunk_size"]) for chunk in self.index()["chunks"]]

    def ensure(self, chunk: int) -> Path:
        """The local path of chunk ``chunk``, downloaded first when it is not there yet."""
        entry = self.index()["chunks"][chunk]
        local = self.folder / entry["filename"]
        if local.is_file() and local.stat().st_size == entry.get("chunk_bytes", local.stat().st_size):
            os.utime(local)  # recently used: the last to be evicted
            return local
        with contextlib.suppress(FileNotFoundError):
            if local.is_file():
                local.unlink()  # an interrupted or foreign file of another size
        deadline = time.monotonic() + self.WAIT_SECONDS
        self._get(entry["filename"], local)
        while not local.is_file():  # another process holds the download lock: wait for its file
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.url}/{entry['filename']} did not arrive in {self.folder} within "
                                   f"{self.WAIT_SECONDS:.0f} s.")
            time.sleep(0.05)
            self._get(entry["filename"], local)  # fetched here if the other download gave up
        self.evict(keep={entry["filename"]})
        return local

    def cached_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.folder.glob("*.bin") if p.is_file())

    def evict(self, keep: set[str] = frozenset()) -> None:
        """Remove least recently used chunks until at most ``max_bytes`` remain (see the class docstring)."""
        files = []
        for path in self.folder.glob("*.bin"):
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            files.append((stat.st_mtime, stat.st_size, path))
        total = sum(size for _, size, _ in files)
        now = time.time()
        ordered = sorted(files)
        recent = {path.name for _, _, path in ordered[-self.keep_recent:]}
        for mtime, size, path in ordered:
            if total <= self.max_bytes:
                break
            if path.name in keep or path.name in recent or now - mtime < self.GRACE_SECONDS:
                continue
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            total -= size


def read_single_item(url: str, storage_options: dict, cache_dir: str | os.PathLike | None, what: str) -> dict:
    """Item 0 of the small LitData dataset at ``url`` (a split's labels, the conversion's facts),
    fetched whole into a :class:`ChunkCache` when remote; FileNotFoundError when it is not there."""
    import litdata

    folder = url
    if _is_remote(url):
        cache = ChunkCache(url, cache_dir, storage_options, parse_bytes(DEFAULT_CACHE_BYTES))
        try:
            cache.index(refresh=True)
            cache.ensure(0)
        except DownloadError as error:
            if any(word in str(error) for word in ("NoSuchKey", "Not Found", "404")):
                raise FormatError(f"{url} is not a LitData dataset ({what} missing); create it with "
                                        "jepa-prepare data=<name> format=litdata output=<where>.") from error
            raise
        folder = str(cache.folder)
    try:
        return litdata.StreamingDataset(folder, batch_decode=0)[0]
    except (FileNotFoundError, ValueError) as error:
        raise FormatError(f"{url} is not a LitData dataset ({what} missing: {error}); create it with "
                                "jepa-prepare data=<name> format=litdata output=<where>.") from error


class LitDataSource(Source):
    """One converted split, read through ``litdata.StreamingDataset``.

    ``url``: the split's folder or URL (``split_url(input, split)``). ``storage_options``:
    passed to LitData (S3: boto3 client arguments such as ``endpoint_url``).
    ``cache_dir``: where whole chunks of a remote split are kept [None = the user cache,
    see :func:`default_cache_root`]; ``cache_bytes``: the most they take there [4 GB].
    ``io_threads``: chunk downloads in flight per process when remote [4].

    The chunks are the source's blocks (``block_ids``), so the training order goes chunk
    by chunk (``shuffle="auto"``). A remote split is read chunk by chunk: each chunk is
    downloaded whole, once, into :class:`ChunkCache` (``prefetch`` starts the downloads the
    next batches need while the current one is built) and its items are read from the local
    file, so no request is made per item. The dataset is opened lazily in each process, so
    loader workers open their own.
    """

    def __init__(self, url: str, storage_options: dict | None = None, cache_dir: str | None = None,
                 io_threads: int = DEFAULT_IO_THREADS, cache_bytes: int | str = DEFAULT_CACHE_BYTES):
        _require_litdata()
        self.url = url
        self.storage_options = dict(storage_options or {})
        self.io_threads = int(io_threads)
        self.remote = _is_remote(url)
        max_bytes = parse_bytes(cache_bytes)
        self.cache = ChunkCache(url, cache_dir, self.storage_options, max_bytes) if self.remote else None
        self._dataset: Any = None
        self._readers: OrderedDict[int, Any] = OrderedDict()
        self._max_readers = 2
        self._pool: ThreadPoolExecutor | None = None
        self._pending: dict[int, Any] = {}
        labels_item = read_single_item(url + _LABELS_SUFFIX, self.storage_options, cache_dir, "labels")
        self.labels = np.asarray(labels_item["labels"], dtype=np.int64)
        self.sizes = self._chunk_sizes(refresh=True)
        if sum(self.sizes) != len(self.labels):
            raise ConfigError(f"{url} holds {sum(self.sizes)} items but {len(self.labels)} labels; the conversion is "
                             "damaged: convert again with jepa-prepare ... format=litdata force=true.")
        self.chunk_starts = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)
        # Not kept: loader workers forked from this process must not share its connections.

    # ------------------------------------------------------------------ opening
    def _chunk_sizes(self, refresh: bool = False) -> list[int]:
        if self.cache is not None:
            self.cache.index(refresh=refresh)
            return self.cache.chunk_sizes()
        import json

        index = Path(self.url.removeprefix("file://")) / "index.json"
        if not index.is_file():
            raise FormatError(f"{self.url} is not a LitData dataset (items missing: no {index.name}); create it "
                                    "with jepa-prepare data=<name> format=litdata output=<where>.")
        return [int(chunk["chunk_size"]) for chunk in json.loads(index.read_text())["chunks"]]

    def _open(self, url: str, what: str) -> Any:
        import litdata

        try:
            # batch_decode=0: decode just the item asked for. LitData's "auto" decodes a
            # window of up to 256 neighbours per read, which pays off for its sequential
            # iterator but made random access ~90x slower here (2.1 ms vs 0.023 ms per 32x32 item).
            return litdata.StreamingDataset(url, batch_decode=0)
        except (FileNotFoundError, ValueError) as error:
            raise FormatError(
                f"{url} is not a LitData dataset ({what} missing: {error}); create it with "
                f"jepa-prepare data=<name> format=litdata output=<where>.") from error

    @property
    def dataset(self) -> Any:
        if self._dataset is None:
            # Remote: the local mirror of whole chunks; local: the chunks where they are.
            self._dataset = self._open(str(self.cache.folder) if self.cache else self.url, what="items")
        return self._dataset

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_dataset": None, "_readers": OrderedDict(), "_pool": None, "_pending": {}}

    def __len__(self) -> int:
        return len(self.labels)

    # ------------------------------------------------------------------ blocks
    def block_ids(self) -> np.ndarray:
        """The chunk of every item (items are stored in order, chunk after chunk)."""
        return np.repeat(np.arange(len(self.sizes), dtype=np.int64), self.sizes)

    def reserve_blocks(self, count: int) -> None:
        """Keep a reader open on each of the ``count`` most recently used chunks, and those chunks on
        disk whatever ``stream_cache_bytes`` says."""
        self._max_readers = max(self._max_readers, int(count))
        if self.cache is None:
            return
        self.cache.keep_recent = max(self.cache.keep_recent, int(count))
        largest = max((int(c.get("chunk_bytes", 0)) for c in self.cache.index()["chunks"]), default=0)
        if largest * (count + 1) > self.cache.max_bytes:
            import warnings

            from .notices import Notice

            warnings.warn(Notice(
                f"stream_cache_bytes={self.cache.max_bytes:,} holds fewer than {count + 1} chunks of {self.url} "
                f"(up to {largest:,} bytes each): the window of shuffle_window chunks and the next ones being fetched "
                "do not fit, so chunks will be downloaded more than once per epoch; raise stream_cache_bytes or "
                "lower shuffle_window."), stacklevel=2)

    def cached_bytes(self) -> int:
        """Bytes of this split's chunks on local disk now (0 for local chunks, read where they are)."""
        return 0 if self.cache is None else self.cache.cached_bytes()

    def chunk_of(self, index: int) -> int:
        return int(np.searchsorted(self.chunk_starts, int(index), side="right")) - 1

    def prefetch(self, blocks: Sequence[int]) -> None:
        """Start downloading ``blocks`` (chunk numbers) in the background; no-op for local chunks."""
        if self.cache is None:
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=max(1, self.io_threads), thread_name_prefix="jepa-chunks")
        for chunk in blocks:
            future = self._pending.get(chunk)
            if future is None or (future.done() and not (self.cache.folder /
                                                         self.cache.index()["chunks"][chunk]["filename"]).is_file()):
                self._pending[chunk] = self._pool.submit(self.cache.ensure, int(chunk))

    def _ready(self, chunks: Sequence[int]) -> None:
        """Every chunk of ``chunks`` on local disk (downloads overlap in the prefetch pool)."""
        if self.cache is None:
            return
        self.prefetch(chunks)
        for chunk in chunks:
            self._pending.pop(chunk).result()  # re-raises a failed download here
            self.cache.ensure(chunk)  # evicted meanwhile by another process: fetched again

    # ------------------------------------------------------------------ items
    def _reader(self, chunk: int) -> Any:
        """A ``StreamingDataset`` that reads chunk ``chunk`` only.

        LitData's reader maps a chunk anew (and re-reads its footer) whenever two consecutive
        reads lie in different chunks: 2-10 ms per switch, which a batch mixed from a window
        of chunks would pay at almost every item. One reader per chunk of the window (kept
        least recently used first, as many as ``reserve_blocks`` asks) never switches:
        0.01-0.04 ms per item read, against 2.4-2.9 ms interleaved through one reader."""
        reader = self._readers.get(chunk)
        if reader is None:
            reader = self._readers[chunk] = self._open(str(self.cache.folder) if self.cache else self.url, what="items")
            while len(self._readers) > self._max_readers:
                self._readers.popitem(last=False)
        else:
            self._readers.move_to_end(chunk)
        return reader

    def _item(self, index: int) -> Any:
        chunk = self.chunk_of(index)
        try:
            return self._reader(chunk)[int(index)]["image"]
        except Exception:  # noqa: BLE001 - its chunk evicted by another process meanwhile: fetch it again, once
            if self.cache is None:
                raise
            self.cache.ensure(chunk)
            self._readers.pop(chunk, None)
            return self._reader(chunk)[int(index)]["image"]

    def load(self, index: int) -> np.ndarray | Image.Image:
        self._ready([self.chunk_of(index)])
        return _decode(self._item(index))

    def load_encoded(self, index: int) -> bytes | None:
        """The stored file's bytes (file datasets), or None for stored arrays."""
        self._ready([self.chunk_of(index)])
        image = self._item(index)
        return bytes(image) if isinstance(image, (bytes, bytearray, memoryview)) else None

    def load_many(self, indices: Sequence[int]) -> list[np.ndarray | Image.Image]:
        """Items in order; a remote split first brings the chunks they lie in (in parallel).

        Each chunk is read through a reader of its own (see ``_reader``)."""
        self._ready(list(dict.fromkeys(self.chunk_of(i) for i in indices)))
        return [_decode(self._item(i)) for i in indices]

    def gets(self) -> int:
        """Chunk downloads this process made (0 for local chunks)."""
        return 0 if self.cache is None else self.cache.gets


def _decode(image: Any) -> np.ndarray | Image.Image:
    if isinstance(image, (bytes, bytearray, memoryview)):
        # Unopened pixels, as from a file: the train view can ask the JPEG decoder for a
        # reduced size before decoding (see pipeline/transforms.py).
        return Image.open(io.BytesIO(bytes(image)))
    return np.asarray(image)


# ------------------------------------------------------------- the DataModule's input
#: Where a DataModule's items come from besides its own files (``format="files"``, read by
#: the format modules, ``formats/``): ``format`` name -> ``"module:class"`` of the input,
#: imported on first use. The class takes ``(input, storage_options, cache_dir, cache_bytes)``
#: and has ``open_split(split) -> Source``, ``refuse_subsets(options, names)`` and ``facts``
#: (see :class:`LitDataInput`): a new backend (WebDataset shards, say) is one module and one line here.
INPUTS = {
    "litdata": "jepa_datamodules.streaming:LitDataInput",
}
#: The DataModule's ``format`` argument: its own files, or one of :data:`INPUTS`.
FORMATS = ("files", *INPUTS)


class LitDataInput:
    """``format="litdata"``: a DataModule's splits read from the chunks that
    ``jepa-prepare data=<name> format=litdata output=<input>`` wrote. There is nothing to
    prepare (the chunks are read where they are) and no option that selects part of a split
    (the chunks hold whole splits)."""

    def __init__(self, input: str, storage_options: dict | None = None, cache_dir: str | None = None,
                 cache_bytes: int | str = DEFAULT_CACHE_BYTES):
        self.input = input
        self.storage_options = storage_options
        self.cache_dir = cache_dir
        self.cache_bytes = parse_bytes(cache_bytes)
        self._facts: dict[str, Any] | None | bool = False  # False: not read yet

    @property
    def facts(self) -> dict[str, Any] | None:
        """The dataset's facts as the conversion recorded them (:func:`read_facts`), read once."""
        if self._facts is False:
            self._facts = read_facts(self.input, self.storage_options, self.cache_dir)
        return self._facts  # type: ignore[return-value]

    def refuse_subsets(self, options: dict[str, Any], names: Sequence[str]) -> None:
        """Raise for a set option among ``names`` (STL-10's ``fold``): the chunks hold whole splits."""
        for name in names:
            if options.get(name) is not None:
                raise ConfigError(f"{name}={options[name]} is not available with format=litdata (the chunks hold whole "
                                 f"splits); allowed is {name}=None, or format=files.")

    def open_split(self, split: str) -> LitDataSource:
        return LitDataSource(split_url(self.input, split), storage_options=self.storage_options, cache_dir=self.cache_dir,
                             cache_bytes=self.cache_bytes)


def open_input(format: str, input: str | None, storage_options: dict | None = None,
               cache_dir: str | None = None, cache_bytes: int | str = DEFAULT_CACHE_BYTES) -> LitDataInput | None:
    """The DataModule's input for ``format`` (one of :data:`INPUTS`); None for its own files.
    The arguments are checked here, each bad combination refused with one sentence."""
    check_choice("format", format, FORMATS)
    if format != "files" and not input:
        raise ConfigError(f"input={input!r} is invalid with format={format}; allowed is the folder or URL "
                         "(s3://bucket/prefix) that jepa-prepare ... format=litdata output=<where> wrote.")
    if format == "files" and input is not None:
        raise ConfigError(f"input={input!r} is only read with format=litdata; set format=litdata "
                         "or leave input unset to read the dataset's own files.")
    parse_bytes(cache_bytes)
    if format == "files":
        return None
    import importlib

    module, name = INPUTS[format].split(":")
    return getattr(importlib.import_module(module), name)(input, storage_options, cache_dir, cache_bytes)
