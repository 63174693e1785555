"""LitData test helpers: an S3 API on 127.0.0.1 (moto's standalone server) and the comparison
of a DataModule's batches on its files and on its chunks."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import pytest
import torch


@contextlib.contextmanager
def s3_server(bucket: str = "jepa") -> Iterator[str]:
    """A loopback S3 endpoint with one bucket and dummy credentials; yields its URL."""
    moto_server = pytest.importorskip("moto.server", reason="moto[server] provides the local S3 endpoint")
    boto3 = pytest.importorskip("boto3")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            endpoint = f"http://{host}:{port}"
            boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
            yield endpoint
        finally:
            server.stop()


def upload_folder(folder: Path, endpoint: str, url: str) -> None:
    """Every file under ``folder`` to ``url`` (``s3://bucket/prefix``), as ``aws s3 cp --recursive`` would."""
    import boto3

    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    client = boto3.client("s3", endpoint_url=endpoint)
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file():
            client.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(folder).as_posix()}")


def files_in_block_order(files, streamed):
    """``files`` set up to follow ``streamed``'s chunk-by-chunk order: the files have no blocks
    of their own, so they borrow the chunks' (what the same run on the files would read)."""
    files.setup()
    streamed.setup()
    assert streamed.train_order == "blocks"  # shuffle="auto" on chunks
    chunks = streamed.datasets["train"].source.block_ids()
    files.datasets["train"].source.block_ids = lambda: chunks
    files.train_order = "blocks"
    return files


def assert_same_batches(files, streamed) -> int:
    """Train and val batches of the two DataModules are equal (pixels, labels, indices, masks); returns the count."""
    for dm in (files, streamed):
        dm.prepare_data()
        dm.setup()
    count = 0
    for a, b in zip(files.train_dataloader(), streamed.train_dataloader()):
        for key in ("images", "labels", "indices"):
            assert torch.equal(a[key], b[key])
        assert all(torch.equal(x, y) for x, y in zip(a.get("target_masks", []), b.get("target_masks", [])))
        count += 1
    assert count == len(streamed.train_dataloader()) > 0
    for a, b in zip(files.val_dataloader(), streamed.val_dataloader()):
        assert torch.equal(a["images"], b["images"]) and torch.equal(a["labels"], b["labels"])
    return count
