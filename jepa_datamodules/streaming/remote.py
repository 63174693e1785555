"""Where a converted dataset's parts live, and how LitData reaches a remote one.

A conversion (``convert.py``) writes, under its output folder or URL, one LitData dataset per
split (:func:`split_url`), each split's labels beside it (:func:`labels_url`) and the
dataset's facts (:func:`facts_url`). Remote outputs (``s3://``, ``gs://``, ...) are reached
through LitData's own clients; :func:`check_reachable` and :func:`allow_plain_http` are what
this package adds in front of them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import DownloadError, setting

_LABELS_SUFFIX = "-labels"
#: The conversion's facts (dataset, splits, class count and names), so that chunks are read
#: on a machine that holds nothing else (no originals, no data folder).
_FACTS = "facts"


def split_url(root: str | os.PathLike, split: str) -> str:
    """Where ``split`` lives under a converted dataset (``+`` is avoided in object keys)."""
    return join_url(root, split.replace("+", "_"))


def join_url(root: str | os.PathLike, name: str) -> str:
    """``root/name`` for a folder or a URL."""
    root = os.fspath(root)
    if "://" in root:
        return root.rstrip("/") + "/" + name
    return str(Path(root) / name)


def labels_url(split_url: str) -> str:
    """Where the labels of the split at ``split_url`` live (one item: every label)."""
    return split_url + _LABELS_SUFFIX


def facts_url(root: str | os.PathLike) -> str:
    """Where the conversion's facts live under a converted dataset (``read_facts``)."""
    return join_url(root, _FACTS)


def is_remote(url: str) -> bool:
    return "://" in url and not url.startswith("file://")


def configured_endpoint(storage_options: dict) -> str:
    """The S3 endpoint URL LitData's clients will use: ``storage_options["endpoint_url"]``, else
    ``$AWS_ENDPOINT_URL_S3``, else ``$AWS_ENDPOINT_URL``; "" for the provider's default."""
    return str(storage_options.get("endpoint_url") or os.environ.get("AWS_ENDPOINT_URL_S3")
               or os.environ.get("AWS_ENDPOINT_URL") or "")


def allow_plain_http(storage_options: dict) -> None:
    """Let LitData's obstore client talk to an ``http://`` S3 endpoint (MinIO, moto, a
    cluster-local gateway).

    LitData moves chunks with obstore, whose HTTP client refuses plain http unless its
    ``allow_http`` client option is set, and LitData builds that client from a fixed
    module-level dict (``litdata.streaming.downloader._OBSTORE_CLIENT_OPTIONS``, litdata
    0.2.76) that never sets it, so such endpoints fail with "HTTP error: builder error".
    boto3, which LitData uses for the index files, has no such restriction. Only applied
    when the configured endpoint is plain http; a no-op if LitData changes that dict.
    """
    if not configured_endpoint(storage_options).startswith("http://"):
        return
    from litdata.streaming import downloader

    options = getattr(downloader, "_OBSTORE_CLIENT_OPTIONS", None)
    if isinstance(options, dict) and not options.get("allow_http"):
        downloader._OBSTORE_CLIENT_OPTIONS = {**options, "allow_http": True}


def require_litdata() -> Any:
    try:
        import litdata
    except ImportError as error:  # pragma: no cover - litdata is an optional extra
        # Not a JEPADataError: a missing extra is an installation matter, shown with its traceback.
        raise ImportError("format='litdata' needs the litdata package: pip install 'jepa-datamodules[litdata]'.") from error
    return litdata


def check_reachable(url: str, storage_options: dict, timeout: float = 5.0) -> None:
    """Refuse an S3-compatible endpoint that does not answer, in one sentence naming ``url``.

    LitData's S3 client retries a failed request up to 1,000 times (botocore's adaptive mode),
    so an endpoint that is down would otherwise look like a hang. Only a configured endpoint
    URL (``storage_options.endpoint_url``, ``$AWS_ENDPOINT_URL[_S3]``) is probed: one TCP connect.
    """
    import socket
    from urllib.parse import urlparse

    endpoint = configured_endpoint(storage_options)
    if not endpoint:
        return
    parsed = urlparse(str(endpoint))
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname or "", port), timeout=timeout).close()
    except OSError as error:
        raise DownloadError(f"Could not read {url}: the endpoint {endpoint} does not answer ({error}); check "
                            f"the endpoint_url of {setting('storage_options')} and that the object store is running "
                            "and reachable from this machine.") from error
