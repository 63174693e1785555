"""Download, verify and unpack dataset archives without ever leaving half-written files behind.

The pieces, used by the preparation pipeline:

* :func:`candidate_urls` puts configured mirrors and ``$JEPA_DATA_MIRROR`` ahead of upstream URLs.
* :func:`fetch` streams a file into ``<dest>.part``, retries dropped connections, stalls and 5xx
  answers with exponential backoff, resumes with HTTP Range requests, falls through to the next URL,
  checks the md5 and only then renames the ``.part`` to ``dest``.
* :func:`file_md5` and :func:`check_free_space` (from ``files.py``) are the checks ``fetch`` uses,
  for callers too. A full disk, a read-only or unwritable folder raise ``storage.StorageError``.

Unpacking is ``extract.py``'s and the per-dataset lock ``locks.py``'s.

Only the standard library does the networking (``urllib.request``), so the usual proxy variables
(``HTTPS_PROXY``, ``HTTP_PROXY``, ``NO_PROXY``) apply; CA bundles named by ``SSL_CERT_FILE`` or
``REQUESTS_CA_BUNDLE`` are trusted; certificate checks are never switched off.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from ..errors import ConfigError, DownloadError, setting
from ..notices import Notice
from ..progress import mode as progress_mode
from ..progress import progress_bar

from .files import (
    StorageError,
    check_free_space,
    is_storage_error,
    storage_error,
)

__all__ = [
    "MIRROR_ENV",
    "DownloadError",
    "StorageError",
    "candidate_urls",
    "check_free_space",
    "fetch",
    "file_md5",
]

logger = logging.getLogger(__name__)

MIRROR_ENV = "JEPA_DATA_MIRROR"
"""Environment variable with comma-separated mirror base URLs (or local folders) to try before upstream."""

# Checked in this order; the first one that is set wins, as in pip / requests.
_CA_BUNDLE_ENV = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")
_USER_AGENT = "jepa-datamodules/0.1 (Python urllib)"
_FIX_HINT = f"set {setting('mirrors')} or ${MIRROR_ENV} to a mirror that has it"
_TLS_HINT = (
    "certificate checks stay on; if a proxy re-signs HTTPS traffic, point SSL_CERT_FILE or "
    "REQUESTS_CA_BUNDLE at its CA bundle"
)

# Indirection so tests can observe the backoff schedule without sleeping through it.
_sleep = time.sleep




# ---------------------------------------------------------------------------------------- URLs
def candidate_urls(filename: str, upstream: Sequence[str], mirrors: Sequence[str] = ()) -> list[str]:
    """List the URLs to try for ``filename``, best first.

    Order: each of ``mirrors``, then each entry of ``$JEPA_DATA_MIRROR`` (comma-separated), then the
    ``upstream`` URLs as given. A mirror is a base URL to which ``/<filename>`` is appended (exactly
    one slash in between); a mirror without a scheme is taken as a local folder and turned into a
    ``file://`` URL, so a dataset copy on a shared disk works as a mirror. Duplicates are dropped,
    keeping the first occurrence.

    Args:
        filename: file name (or relative path) of the archive on the mirrors.
        upstream: full URLs of the original source(s).
        mirrors: base URLs the user configured (the DataModule's ``mirrors``); default none.

    Returns:
        The URLs in the order :func:`fetch` should try them.
    """
    env_mirrors = [m.strip() for m in os.environ.get(MIRROR_ENV, "").split(",") if m.strip()]
    urls = [_mirror_url(base, filename) for base in [*_as_list(mirrors), *env_mirrors] if base.strip()]
    urls.extend(_as_list(upstream))
    return list(dict.fromkeys(urls))  # dict keeps insertion order: first occurrence wins


def _as_list(value: str | Sequence[str]) -> list[str]:
    # A lone string would otherwise be iterated character by character.
    return [value] if isinstance(value, str) else list(value)


def _mirror_url(base: str, filename: str) -> str:
    base = base.strip()
    if "://" not in base:
        base = Path(base).expanduser().resolve().as_uri()
    return base.rstrip("/") + "/" + urllib.parse.quote(filename.lstrip("/"))


# ---------------------------------------------------------------------------------------- fetch
class _Retryable(Exception):
    """The same URL may well work on another attempt (dropped connection, timeout, 5xx)."""


class _GiveUpOnUrl(Exception):
    """This URL will not work (404, bad certificate, unknown host); move on to the next one."""


class _Mismatch(Exception):
    """The download finished but its size or md5 is wrong."""


def fetch(
    urls: Sequence[str],
    dest: Path,
    *,
    md5: str | None = None,
    size: int | None = None,
    retries: int = 4,
    backoff: float = 1.0,
    timeout: float = 30.0,
    progress: bool | None = None,
    chunk_size: int = 1 << 20,
) -> Path:
    """Download the first of ``urls`` that works to ``dest``, verified, and return ``dest``.

    Bytes go to ``<dest>.part`` and only a complete, verified file is renamed to ``dest``. A dropped
    connection, a timeout or a 5xx / 408 / 429 answer is retried on the same URL up to ``retries``
    more times, sleeping ``backoff * 2**n`` seconds before retry ``n`` (0-based); each retry resumes
    with a ``Range`` request from the bytes already in the ``.part`` (and starts over if the server
    answers 200 instead of 206). Other 4xx answers, certificate failures and unknown hosts move on to
    the next URL at once. A finished download whose md5 (or size) is wrong is deleted and downloaded
    once more from scratch from the same URL; if it is wrong again the next URL is tried. When all
    URLs fail, the ``.part`` is kept so that the next call resumes it.

    If ``dest`` already exists and matches ``md5`` / ``size`` (whichever are given), it is returned
    without touching the network; otherwise it is downloaded again and replaced. Callers that may
    run concurrently should hold ``locks.dataset_lock`` for the dataset folder.

    Args:
        urls: URLs to try in order (see :func:`candidate_urls`); ``http(s)://`` and ``file://``.
        dest: final path of the file; its folder is created.
        md5: expected md5 hex digest; default None (not checked).
        size: expected size in bytes; default None (not checked). Also used to check free space.
        retries: retries per URL after the first attempt; default 4.
        backoff: base of the exponential backoff, in seconds; default 1.0.
        timeout: socket timeout in seconds for connecting and for each read; default 30.0.
        progress: bytes, rate, ETA on stderr; default None = a bar on a terminal, plain lines otherwise
            (see progress.py); False = silent.
        chunk_size: bytes per read from the network; default 1 MiB.

    Returns:
        ``dest``.

    Raises:
        DownloadError: nothing worked; the message names every URL tried with its attempt count,
            the last error, ``dest``, and how to provide the file by hand or through a mirror.
        StorageError: not enough free space for ``size``, the disk filled up while writing (the
            ``.part`` is then deleted), or the folder is read-only or not writable.
    """
    url_list = list(dict.fromkeys(_as_list(urls)))
    dest = Path(dest)
    if retries < 0 or backoff < 0 or timeout <= 0 or chunk_size <= 0:
        raise ConfigError(
            f"fetch() got retries={retries}, backoff={backoff}, timeout={timeout}, "
            f"chunk_size={chunk_size}; retries and backoff must be >= 0, timeout and chunk_size > 0."
        )
    expected_md5 = md5.strip().lower() if md5 else None
    show = _want_progress(progress)

    if dest.is_file():
        if _matches(dest, expected_md5, size, show, chunk_size):
            return dest
        _notice(f"{dest} exists but does not match its checksum; downloading it again.", stacklevel=3)
    if not url_list:
        raise DownloadError(
            f"No download URL is known for {dest.name}. Place the file at {dest} by hand, "
            f"or {_fix_hint()}.", setting="mirrors", path=dest
        )

    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise storage_error(exc, dest.parent, f"the download of {dest.name}", needed=size) from exc
    part = _PartFile(dest.with_name(dest.name + ".part"), hashing=expected_md5 is not None)
    if size is not None:
        check_free_space(dest.parent, size - part.size_on_disk(), f"download {dest.name}")
    opener = _build_opener()

    try:
        return _fetch_urls(url_list, dest, part, opener, expected_md5, size, retries, backoff, timeout,
                           chunk_size, show)
    except OSError as exc:
        if not is_storage_error(exc):
            raise
        # Disk full, read-only, no permission: a partial file only holds the space the user needs.
        part.discard()
        raise storage_error(exc, dest.parent, f"the download of {dest.name}", needed=size) from None


def _fetch_urls(url_list: list[str], dest: Path, part: _PartFile, opener: urllib.request.OpenerDirector,
                expected_md5: str | None, size: int | None, retries: int, backoff: float, timeout: float,
                chunk_size: int, show: bool) -> Path:
    """fetch's loop over URLs and attempts; filesystem errors propagate as ``OSError``."""
    tried: list[tuple[str, int, str]] = []
    last_error = "no attempt was made"
    for url in url_list:
        attempts = 0
        retry_index = 0  # position in the backoff schedule; restarts after a fresh re-download
        redownloaded = False
        while True:
            attempts += 1
            try:
                _download_once(
                    opener, url, part, label=dest.name, expected_size=size,
                    timeout=timeout, chunk_size=chunk_size, show=show,
                )
                _verify(part, url, dest.name, expected_md5, size)
            except _Retryable as exc:
                last_error = _with_url(str(exc), url)
                if retry_index >= retries:
                    break
                delay = backoff * 2**retry_index
                retry_index += 1
                _notice(f"Downloading {dest.name} failed: {last_error}; retry {retry_index}/{retries} in {delay:.1f} s.")
                _sleep(delay)
            except _GiveUpOnUrl as exc:
                last_error = _with_url(str(exc), url)
                break
            except _Mismatch as exc:
                part.discard()
                last_error = str(exc)
                if redownloaded:
                    last_error += " (also after a fresh re-download)"
                    break
                redownloaded, retry_index = True, 0
                _notice(f"{exc}; downloading it once more from scratch.")
            else:
                os.replace(part.path, dest)
                return dest
        tried.append((url, attempts, last_error))
        if len(url_list) > 1:
            _notice(f"Giving up on {url} for {dest.name}: {last_error}.")

    if len(tried) == 1:
        url, n, _ = tried[0]
        summary = f"tried {url} ({n} attempt{'s' if n != 1 else ''}); last error: {last_error}"
    else:  # each URL's own error: a mirror's real cause is not the upstream one tried after it
        summary = "tried " + "; ".join(f"{u} ({n} attempt{'s' if n != 1 else ''}: {_without_url(e, u)})"
                                       for u, n, e in tried)
    raise DownloadError(f"Could not download {dest.name} to {dest}: {summary}. Place the file at {dest} by hand, "
                        f"or {_fix_hint()}.", setting="mirrors", path=dest)


def _without_url(text: str, url: str) -> str:
    return text.replace(f" (from {url})", "")


def _fix_hint() -> str:
    """The mirror advice, as the end of a sentence: to set one, or to mend the one that is set."""
    configured = os.environ.get(MIRROR_ENV, "").strip()
    if configured:
        return (f"put an intact copy on the mirror ${MIRROR_ENV} names ({configured}), or point ${MIRROR_ENV} "
                f"or {setting('mirrors')} at one that has it")
    return _FIX_HINT


def _notice(sentence: str, stacklevel: int = 4) -> None:
    """Tell the user what the download is doing about a failure (the run goes on); ``stacklevel``
    [4: from ``_fetch_urls``] points the warning at ``fetch``'s caller."""
    warnings.warn(Notice(sentence), stacklevel=stacklevel)


def _with_url(text: str, url: str) -> str:
    return text if url in text else f"{text} (from {url})"


def _matches(path: Path, md5: str | None, size: int | None, show: bool, chunk_size: int) -> bool:
    if size is not None and path.stat().st_size != size:
        return False
    return md5 is None or file_md5(path, progress=show, chunk_size=chunk_size) == md5


def _verify(part: _PartFile, url: str, name: str, md5: str | None, size: int | None) -> None:
    actual_size = part.size_on_disk()
    if size is not None and actual_size != size:
        raise _Mismatch(
            f"{name} downloaded from {url} has {actual_size} bytes, expected {size}"
        )
    if md5 is not None:
        actual = part.hexdigest()
        if actual != md5:
            raise _Mismatch(
                f"{name} downloaded from {url} has md5 {actual}, expected md5 {md5}"
            )


class _PartFile:
    """The ``.part`` file plus a running md5 of exactly the bytes it holds.

    Hashing while downloading saves a second pass over multi-GB archives; the digest is recomputed
    from disk only when the file on disk is not what this object wrote (a ``.part`` from an earlier
    run being resumed).
    """

    def __init__(self, path: Path, hashing: bool) -> None:
        self.path = path
        self._hashing = hashing
        self._md5: Any = None
        self._hashed = 0

    def size_on_disk(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def sync(self, show: bool, chunk_size: int) -> int:
        """Make the running digest cover the file on disk; return the file's size."""
        size = self.size_on_disk()
        if self._hashing and (self._md5 is None or self._hashed != size):
            self._md5 = _hash_file(self.path, show, chunk_size) if size else _new_md5()
            self._hashed = size
        return size

    def discard(self) -> None:
        try:
            self.path.unlink(missing_ok=True)
        except OSError:  # a read-only folder holds no .part of ours anyway
            pass
        self._md5 = _new_md5() if self._hashing else None
        self._hashed = 0

    def write(self, fh: IO[bytes], block: bytes) -> None:
        fh.write(block)  # an OSError here (disk full, ...) is fetch's to report
        if self._md5 is not None:
            self._md5.update(block)
            self._hashed += len(block)

    def hexdigest(self) -> str:
        return self._md5.hexdigest()


def _download_once(
    opener: urllib.request.OpenerDirector,
    url: str,
    part: _PartFile,
    *,
    label: str,
    expected_size: int | None,
    timeout: float,
    chunk_size: int,
    show: bool,
) -> None:
    """One HTTP request: append to (or restart) the ``.part``; raise a classified error on failure."""
    offset = part.sync(show, chunk_size)
    if expected_size is not None and offset >= expected_size:
        if offset == expected_size:
            return  # complete .part from an interrupted earlier run; _verify decides
        part.discard()
        offset = 0

    headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = opener.open(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()  # frees the connection; the error page itself is of no use
        if exc.code == 416 and offset:
            total = _content_range(exc.headers.get("Content-Range"))[2]
            if total == offset:
                return  # the .part already holds the whole file
            part.discard()
            raise _Retryable("the server refused to resume the partial file; starting over") from None
        raise _http_error(exc, url) from None
    except urllib.error.URLError as exc:
        raise _network_error(exc.reason, url) from None
    except (http.client.HTTPException, OSError) as exc:
        raise _network_error(exc, url) from None
    except ValueError as exc:
        raise _GiveUpOnUrl(f"{url!r} is not a valid URL ({exc})") from None

    with response:
        # file:// responses carry no status; they always hold the whole file.
        status = getattr(response, "status", None) or 200
        length_header = response.headers.get("Content-Length")
        length = int(length_header) if length_header and length_header.isdigit() else None
        if status == 206:
            start, _, total = _content_range(response.headers.get("Content-Range"))
            if start != offset:
                part.discard()
                raise _Retryable(f"the server resumed at byte {start} instead of {offset}; starting over")
        else:
            if offset:
                logger.info("%s does not support resuming; restarting %s from byte 0.", url, label)
                part.discard()
                offset = 0
            total = length
        if total is None and length is not None:
            total = offset + length
        if expected_size is not None and total is not None and total != expected_size:
            raise _GiveUpOnUrl(f"the server offers {total} bytes but {label} should have {expected_size}")

        read = getattr(response, "read1", None) or response.read  # read1: no waiting for a full chunk
        received = 0
        with open(part.path, "ab") as fh, _bar(total, offset, label, show) as bar:
            while True:
                try:
                    block = read(chunk_size)
                except (OSError, http.client.HTTPException) as exc:
                    raise _Retryable(
                        f"connection lost after {offset + received} bytes ({_describe(exc)})"
                    ) from None
                if not block:
                    break
                part.write(fh, block)
                received += len(block)
                bar.update(len(block))
            if length is not None and received < length:
                raise _Retryable(
                    f"connection closed after {offset + received} of {total} bytes"
                )
            fh.flush()
            os.fsync(fh.fileno())  # durable before the rename that makes it visible


def _content_range(header: str | None) -> tuple[int | None, int | None, int | None]:
    """``bytes a-b/N`` → (a, b, N); ``bytes */N`` → (None, None, N); missing parts are None."""
    if not header or not header.startswith("bytes "):
        return None, None, None
    span, _, total = header[len("bytes "):].partition("/")
    first, _, last = span.partition("-")
    def as_int(text: str) -> int | None:
        return int(text) if text.strip().isdigit() else None
    return as_int(first), as_int(last), as_int(total)


def _http_error(exc: urllib.error.HTTPError, url: str) -> Exception:
    text = f"HTTP {exc.code} {exc.reason}"
    if exc.code == 407:
        return _GiveUpOnUrl(
            f"{text}: the proxy rejected the request; check the credentials in HTTPS_PROXY / HTTP_PROXY"
        )
    if exc.code >= 500 or exc.code in (408, 429):
        return _Retryable(text)
    return _GiveUpOnUrl(text)


def _network_error(reason: object, url: str) -> Exception:
    via = _proxy_for(url)
    via_text = f" through the proxy {via} (from the environment)" if via else ""
    if isinstance(reason, ssl.SSLCertVerificationError):
        detail = reason.verify_message or reason.reason or str(reason)
        return _GiveUpOnUrl(f"TLS certificate verification failed for {url}{via_text} ({detail}); {_TLS_HINT}")
    if isinstance(reason, ssl.SSLError):
        return _Retryable(f"TLS error talking to {url}{via_text} ({reason.reason or reason}); {_TLS_HINT}")
    if isinstance(reason, socket.gaierror):
        return _GiveUpOnUrl(f"could not resolve the host of {url}{via_text} ({reason.strerror or reason})")
    text = str(reason)
    if text.startswith("Tunnel connection failed"):
        return _GiveUpOnUrl(f"the proxy {via or ''} refused to connect to {url} ({text}); check HTTPS_PROXY / NO_PROXY")
    if isinstance(reason, str) and "unknown url type" in text:
        return _GiveUpOnUrl(f"{url!r} is not a supported URL ({text}); use http://, https:// or file://")
    if isinstance(reason, FileNotFoundError):
        return _GiveUpOnUrl(f"no such file ({text})")
    return _Retryable(f"{_describe(reason)}{via_text}")


def _describe(exc: object) -> str:
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(exc, http.client.IncompleteRead):
        return "connection closed mid-body"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _proxy_for(url: str) -> str | None:
    parts = urllib.parse.urlsplit(url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and parts.hostname and urllib.request.proxy_bypass(parts.hostname):
        return None
    return proxy


def _build_opener() -> urllib.request.OpenerDirector:
    """urllib opener with env proxies (build_opener's default) and a verifying TLS context."""
    cafile = capath = None
    for var in _CA_BUNDLE_ENV:
        value = os.environ.get(var)
        if not value:
            continue
        if not os.path.exists(value):
            raise DownloadError(
                f"${var} is set to {value}, which does not exist; point it at a PEM CA bundle or unset it."
            )
        cafile, capath = (None, value) if os.path.isdir(value) else (value, None)
        break
    try:
        context = ssl.create_default_context(cafile=cafile, capath=capath)
    except (ssl.SSLError, OSError) as exc:
        raise DownloadError(
            f"Could not load CA certificates from {cafile or capath} ({exc}); "
            f"point SSL_CERT_FILE / REQUESTS_CA_BUNDLE at a PEM CA bundle or unset them."
        ) from exc
    return urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))


# ---------------------------------------------------------------------------------------- checks
def file_md5(path: Path, progress: bool | None = None, chunk_size: int = 1 << 20) -> str:
    """Return the md5 hex digest of ``path``.

    Args:
        path: file to hash.
        progress: default None = a bar on a terminal, plain lines otherwise (progress.py); False = silent.
        chunk_size: bytes read at a time; default 1 MiB.
    """
    return _hash_file(Path(path), _want_progress(progress), chunk_size).hexdigest()


def _new_md5() -> Any:
    # md5 identifies files here; it is not used for security (and FIPS builds insist on saying so).
    return hashlib.md5(usedforsecurity=False)


def _hash_file(path: Path, show: bool, chunk_size: int) -> Any:
    digest = _new_md5()
    with open(path, "rb") as fh, progress_bar(path.stat().st_size, f"md5 {path.name}", progress=show,
                                               byte_units=True, leave=False) as bar:
        while block := fh.read(chunk_size):
            digest.update(block)
            bar.update(len(block))
    return digest


# ---------------------------------------------------------------------------------------- progress
# The rule (bar on a terminal, plain lines in logs, nothing for progress=False) is progress.py's.
def _want_progress(progress: bool | str | None) -> str:
    return progress_mode(progress)


def _bar(total: int | None, initial: int, label: str, show: str) -> Any:
    return progress_bar(total, label, progress=show, initial=initial, byte_units=True)
