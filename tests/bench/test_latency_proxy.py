"""``bench/latency_proxy.py``'s ``LatencyProxy``: it relays S3 requests (whole objects and byte
ranges) with the added latency, counts only what went through it, and its process is gone once
it is closed."""

from __future__ import annotations

import io
from pathlib import Path

import pytest


def test_the_latency_proxy_relays_and_counts_requests(tmp_path, monkeypatch):
    pytest.importorskip("moto.server", reason="moto[server] provides the loopback S3 endpoint")
    boto3 = pytest.importorskip("boto3")
    from jepa_datamodules.bench.latency_proxy import LatencyProxy

    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    body = bytes(range(256)) * 1000
    with LatencyProxy(latency_ms=1) as proxy:
        direct = boto3.client("s3", endpoint_url=proxy.s3_url)
        direct.create_bucket(Bucket="bench")
        direct.upload_fileobj(io.BytesIO(body), "bench", "k.bin")
        assert proxy.stats()["requests"] == 0  # uploads went straight to the S3 endpoint
        through = boto3.client("s3", endpoint_url=proxy.url)
        assert through.get_object(Bucket="bench", Key="k.bin")["Body"].read() == body
        assert through.get_object(Bucket="bench", Key="k.bin", Range="bytes=10-19")["Body"].read() == body[10:20]
        stats = proxy.stats()
        assert stats["gets"] == 2 and stats["bytes"] == len(body) + 10 and stats["requests"] == 2
        pid = proxy.pid
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
