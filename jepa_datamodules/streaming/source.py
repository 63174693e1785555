"""Reading a converted split: :class:`LitDataSource`, a ``Source`` over LitData chunks.

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

import io
import os
import warnings
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from ..errors import DownloadError, FormatError, MissingFilesError, action, setting
from ..formats.base import Source
from ..notices import Notice
from .cache import DEFAULT_CACHE_BYTES, ChunkCache, parse_bytes
from .remote import facts_url, is_remote, labels_url, require_litdata

# Whole-chunk downloads in flight per loader worker when the data is remote.
DEFAULT_IO_THREADS = 4


def not_converted(url: str, missing: str, detail: Any = None) -> MissingFilesError:
    """The error for ``url`` holding no LitData conversion (``missing``: what is not there; ``detail``: LitData's words)."""
    why = f"{missing} missing" + (f": {detail}" if detail else "")
    return MissingFilesError(f"{url} is not a LitData dataset ({why}); allowed is the output of a "
                             f"conversion, {action('convert', '<name>')}.", setting="input",
                             path=None if is_remote(url) else url)


def read_single_item(url: str, storage_options: dict, cache_dir: str | os.PathLike | None, what: str) -> dict:
    """Item 0 of the small LitData dataset at ``url`` (a split's labels, the conversion's facts),
    fetched whole into a :class:`ChunkCache` when remote; :class:`MissingFilesError` (also a
    ``FileNotFoundError``) when it is not there."""
    import litdata

    folder = url
    if is_remote(url):
        cache = ChunkCache(url, cache_dir, storage_options, parse_bytes(DEFAULT_CACHE_BYTES))
        try:
            cache.index(refresh=True)
            cache.ensure(0)
        except DownloadError as error:
            if any(word in str(error) for word in ("NoSuchKey", "Not Found", "404")):
                raise not_converted(url, what) from error
            raise
        folder = str(cache.folder)
    try:
        return litdata.StreamingDataset(folder, batch_decode=0)[0]
    except (FileNotFoundError, ValueError) as error:
        raise not_converted(url, what, error) from error


def read_facts(input: str, storage_options: dict | None = None, cache_dir: str | None = None) -> dict[str, Any] | None:
    """The facts ``convert_to_litdata`` recorded under ``input``; None for a conversion made before they were."""
    import json

    try:
        item = read_single_item(facts_url(input), dict(storage_options or {}), cache_dir, "facts")
    except FileNotFoundError:
        return None
    return json.loads(item["json"])


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
        require_litdata()
        self.url = url
        self.storage_options = dict(storage_options or {})
        self.io_threads = int(io_threads)
        self.remote = is_remote(url)
        max_bytes = parse_bytes(cache_bytes)
        self.cache = ChunkCache(url, cache_dir, self.storage_options, max_bytes) if self.remote else None
        self._dataset: Any = None
        self._readers: OrderedDict[int, Any] = OrderedDict()
        self._max_readers = 2
        self._pool: ThreadPoolExecutor | None = None
        self._pending: dict[int, Any] = {}
        labels_item = read_single_item(labels_url(url), self.storage_options, cache_dir, "labels")
        self.labels = np.asarray(labels_item["labels"], dtype=np.int64)
        self.sizes = self._chunk_sizes(refresh=True)
        if sum(self.sizes) != len(self.labels):
            raise FormatError(f"{url} holds {sum(self.sizes)} items but {len(self.labels)} labels; the conversion is "
                              f"damaged: convert again, {action('convert', '<name>', force=True)}.")
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
            raise not_converted(self.url, "items", f"no {index.name}")
        return [int(chunk["chunk_size"]) for chunk in json.loads(index.read_text())["chunks"]]

    def _open(self, url: str, what: str) -> Any:
        import litdata

        try:
            # batch_decode=0: decode just the item asked for. LitData's "auto" decodes a
            # window of up to 256 neighbours per read, which pays off for its sequential
            # iterator but made random access ~90x slower here (2.1 ms vs 0.023 ms per 32x32 item).
            return litdata.StreamingDataset(url, batch_decode=0)
        except (FileNotFoundError, ValueError) as error:
            raise not_converted(url, what, error) from error

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
            warnings.warn(Notice(
                f"{setting('stream_cache_bytes', self.cache.max_bytes)} holds fewer than {count + 1} chunks of {self.url} "
                f"(up to {largest:,} bytes each): the window of shuffle_window chunks and the next ones being fetched "
                "do not fit, so chunks will be downloaded more than once per epoch; raise "
                f"{setting('stream_cache_bytes')} or lower {setting('shuffle_window')}."), stacklevel=2)

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
        return decode(self._item(index))

    def load_encoded(self, index: int) -> bytes | None:
        """The stored file's bytes (file datasets), or None for stored arrays."""
        self._ready([self.chunk_of(index)])
        image = self._item(index)
        return bytes(image) if isinstance(image, (bytes, bytearray, memoryview)) else None

    def load_many(self, indices: Sequence[int]) -> list[np.ndarray | Image.Image]:
        """Items in order; a remote split first brings the chunks they lie in (in parallel).

        Each chunk is read through a reader of its own (see ``_reader``)."""
        self._ready(list(dict.fromkeys(self.chunk_of(i) for i in indices)))
        return [decode(self._item(i)) for i in indices]

    def gets(self) -> int:
        """Chunk downloads this process made (0 for local chunks)."""
        return 0 if self.cache is None else self.cache.gets


def decode(image: Any) -> np.ndarray | Image.Image:
    if isinstance(image, (bytes, bytearray, memoryview)):
        # Unopened pixels, as from a file: the train view can ask the JPEG decoder for a
        # reduced size before decoding (see pipeline/transforms.py).
        return Image.open(io.BytesIO(bytes(image)))
    return np.asarray(image)
