"""Whole chunks of a remote LitData dataset on local disk (:class:`ChunkCache`), bounded in
bytes (``stream_cache_bytes``, :func:`parse_bytes`) and shared by the processes of a machine."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DownloadError, setting
from .remote import allow_plain_http, check_reachable

# The most bytes of remote chunks kept on local disk (stream_cache_bytes).
DEFAULT_CACHE_BYTES = "4GB"

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
        raise ConfigError(f"{setting(argument, value)} is invalid; allowed is a positive number of bytes or a size "
                          "such as '4GB' or '512MiB'.", setting=argument, allowed="a positive size such as '4GB'")
    return int(amount)


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

            check_reachable(self.url, self.storage_options)
            allow_plain_http(self.storage_options)
            self._downloader = get_downloader(self.url, str(self.folder), [], self.storage_options or None)
        self.folder.mkdir(parents=True, exist_ok=True)
        had = local.is_file()
        try:
            self._downloader.download_file(f"{self.url}/{name}", str(local))
        except Exception as error:  # noqa: BLE001 - any transport failure is one sentence naming the URL
            raise DownloadError(f"Could not read {self.url}/{name} ({type(error).__name__}: {error}); check that the "
                                f"endpoint (the endpoint_url of {setting('storage_options')}) is reachable and the "
                                "credentials are valid.") from error
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
                raise DownloadError(f"{self.url}/{entry['filename']} did not arrive in {self.folder} within "
                                    f"{self.WAIT_SECONDS:.0f} s (another process was downloading it); check that the "
                                    "object store is reachable, then run again.", path=local)
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
