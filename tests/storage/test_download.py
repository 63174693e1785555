"""``storage/download.py``'s ``fetch`` and ``candidate_urls`` against a fault-injecting server
on 127.0.0.1: dropped connections resumed with range requests, 5xx retried with backoff,
corruption caught and downloaded again, mirrors tried in order, a verified file not fetched
again (a same-size one with wrong bytes replaced), TLS and proxies named in the error.

Nothing here touches the internet: every URL points at a ``LoopbackServer`` started by the test
(or at a closed local port). Extraction is tested in test_extract.py, the free-space check in
test_files_free_space.py, the dataset lock in test_locks.py.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest

import jepa_datamodules.storage.download as dl
from jepa_datamodules.storage.download import (
    MIRROR_ENV,
    DownloadError,
    StorageError,
    candidate_urls,
    fetch,
    file_md5,
)
from jepa_datamodules.notices import Notice
from tests.helpers.loopback import LoopbackServer

BIG = 3 * 1024 * 1024  # "a file of a few MB"
SMALL = 200_000
CHUNK = 64 * 1024  # client read size used throughout, so "one chunk per drop" is small


def _payload(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # A proxy or mirror set in the developer's shell must not redirect the loopback traffic.
    for var in ("http_proxy", "https_proxy", "all_proxy", "no_proxy",
                "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", MIRROR_ENV):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    """A served folder with big.bin, small.bin and mirror/small.bin; returns (root, contents)."""
    root = tmp_path / "www"
    (root / "mirror").mkdir(parents=True)
    contents = {"big.bin": _payload(BIG, 1), "small.bin": _payload(SMALL, 2)}
    for name, data in contents.items():
        (root / name).write_bytes(data)
    (root / "mirror" / "small.bin").write_bytes(contents["small.bin"])
    return root, contents


def _get(srv: LoopbackServer, dest: Path, name: str, data: bytes, **kwargs: object) -> Path:
    options = {"md5": _md5(data), "size": len(data), "backoff": 0.0, "chunk_size": CHUNK,
               "progress": False, "timeout": 10.0}
    options.update(kwargs)
    return fetch([srv.url_for(name)], dest, **options)  # type: ignore[arg-type]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------- fetch
def test_three_dropped_connections_resume_with_range_requests(files, tmp_path):
    root, data = files
    dest = tmp_path / "out" / "big.bin"
    with LoopbackServer(root) as srv:
        srv.drop_after("big.bin", 700_000, times=3)
        assert _get(srv, dest, "big.bin", data["big.bin"]) == dest
        log = [r for r in srv.requests if r.path == "/big.bin"]
        served = srv.bytes_served("big.bin")
    assert dest.read_bytes() == data["big.bin"]
    assert not dest.with_name("big.bin.part").exists()
    # Each retry asked for exactly the bytes it was missing and got a partial answer.
    assert [r.range_start for r in log] == [None, 700_000, 1_400_000, 2_100_000]
    assert [r.status for r in log] == [200, 206, 206, 206]
    assert served <= BIG + 3 * CHUNK


def test_connection_reset_mid_body_is_retried(files, tmp_path):
    root, data = files
    dest = tmp_path / "small.bin"
    with LoopbackServer(root) as srv:
        srv.drop_after("small.bin", 80_000, times=1, reset=True)
        with pytest.warns(Notice, match=r"^Downloading small.bin failed: .*; retry 1/4 in 0.0 s.$"):  # the user is told
            _get(srv, dest, "small.bin", data["small.bin"])
        assert srv.count("small.bin") == 2
    assert dest.read_bytes() == data["small.bin"]


def test_server_ignoring_range_restarts_from_scratch(files, tmp_path):
    root, data = files
    dest = tmp_path / "big.bin"
    with LoopbackServer(root) as srv:
        srv.ignore_range("big.bin")
        srv.drop_after("big.bin", 1_000_000, times=1)
        _get(srv, dest, "big.bin", data["big.bin"])
        log = srv.requests
    assert dest.read_bytes() == data["big.bin"]
    assert [(r.range_start, r.status) for r in log] == [(None, 200), (1_000_000, 200)]


def test_5xx_below_retry_limit_succeeds_with_exponential_backoff(files, tmp_path, monkeypatch):
    root, data = files
    sleeps: list[float] = []
    monkeypatch.setattr(dl, "_sleep", sleeps.append)
    dest = tmp_path / "small.bin"
    with LoopbackServer(root) as srv:
        srv.fail("small.bin", 500, times=2)
        _get(srv, dest, "small.bin", data["small.bin"], retries=2, backoff=0.25)
        assert [r.status for r in srv.requests] == [500, 500, 200]
    assert dest.read_bytes() == data["small.bin"]
    assert sleeps == [0.25, 0.5]


def test_5xx_beyond_retry_limit_raises_naming_url_attempts_and_fix(files, tmp_path):
    root, data = files
    dest = tmp_path / "small.bin"
    with LoopbackServer(root) as srv:
        srv.fail("small.bin", 503, times=None)
        url = srv.url_for("small.bin")
        with pytest.raises(DownloadError) as err:
            _get(srv, dest, "small.bin", data["small.bin"], retries=2)
        assert srv.count("small.bin") == 3
    message = str(err.value)
    assert url in message and "3 attempts" in message and "503" in message
    assert str(dest) in message and MIRROR_ENV in message
    assert not dest.exists()


def test_failed_download_keeps_part_unpromoted_and_next_call_resumes(files, tmp_path):
    root, data = files
    dest = tmp_path / "big.bin"
    part = dest.with_name("big.bin.part")
    with LoopbackServer(root) as srv:
        srv.drop_after("big.bin", 500_000, times=2)
        with pytest.raises(DownloadError):
            _get(srv, dest, "big.bin", data["big.bin"], retries=1)
        assert not dest.exists()
        kept = part.stat().st_size
        assert kept == 1_000_000
        _get(srv, dest, "big.bin", data["big.bin"])
        assert srv.requests[-1].range_start == kept
    assert dest.read_bytes() == data["big.bin"]
    assert not part.exists()


def test_complete_part_left_before_the_rename_is_promoted_after_verification(files, tmp_path):
    root, data = files
    dest = tmp_path / "small.bin"
    dest.with_name("small.bin.part").write_bytes(data["small.bin"])
    with LoopbackServer(root) as srv:
        # No size given: the client only learns from the server's 416 that nothing is missing.
        fetch([srv.url_for("small.bin")], dest, md5=_md5(data["small.bin"]), progress=False)
        assert [(r.range_start, r.status) for r in srv.requests] == [(SMALL, 416)]
    assert dest.read_bytes() == data["small.bin"]


def test_stall_past_timeout_is_retried(files, tmp_path):
    root, data = files
    dest = tmp_path / "small.bin"
    with LoopbackServer(root) as srv:
        srv.stall("small.bin", seconds=60, times=1, after_bytes=50_000)
        _get(srv, dest, "small.bin", data["small.bin"], timeout=0.5)
        # The retry resumed after the bytes that arrived before the stall.
        assert [r.range_start for r in srv.requests][:2] == [None, 50_000]
    assert dest.read_bytes() == data["small.bin"]


def test_corruption_once_is_detected_and_downloaded_again(files, tmp_path):
    root, data = files
    dest = tmp_path / "small.bin"
    with LoopbackServer(root) as srv:
        srv.corrupt("small.bin", times=1)
        _get(srv, dest, "small.bin", data["small.bin"])
        log = srv.requests
    assert dest.read_bytes() == data["small.bin"]
    # The second download started over rather than resuming the bad bytes.
    assert [(r.range_start, r.bytes_sent) for r in log] == [(None, SMALL), (None, SMALL)]


def test_corruption_every_time_names_file_and_both_md5s(files, tmp_path):
    root, data = files
    dest = tmp_path / "small.bin"
    bad = bytearray(data["small.bin"])
    bad[SMALL // 2] ^= 0xFF  # what the server's corrupt() sends
    with LoopbackServer(root) as srv:
        srv.corrupt("small.bin", times=None)
        with pytest.raises(DownloadError) as err:
            _get(srv, dest, "small.bin", data["small.bin"])
        assert srv.count("small.bin") == 2
    message = str(err.value)
    assert "small.bin" in message
    assert _md5(data["small.bin"]) in message and _md5(bytes(bad)) in message
    assert not dest.exists() and not dest.with_name("small.bin.part").exists()


def test_failing_mirror_falls_through_to_good_mirror(files, tmp_path):
    root, data = files
    dest = tmp_path / "small.bin"
    with LoopbackServer(root) as srv:
        urls = candidate_urls(
            "small.bin",
            upstream=[srv.url_for("upstream/small.bin")],
            mirrors=[srv.url + "/empty-mirror", srv.url + "/mirror/"],
        )
        fetch(urls, dest, md5=_md5(data["small.bin"]), backoff=0.0, progress=False)
        log = [(r.path, r.status) for r in srv.requests]
    # A 404 is not retried; the upstream is never reached once a mirror delivered.
    assert log == [("/empty-mirror/small.bin", 404), ("/mirror/small.bin", 200)]
    assert dest.read_bytes() == data["small.bin"]


def test_env_mirror_is_tried_before_upstream(files, tmp_path, monkeypatch):
    root, data = files
    dest = tmp_path / "small.bin"
    with LoopbackServer(root) as srv:
        monkeypatch.setenv(MIRROR_ENV, f" {srv.url}/mirror , ")
        urls = candidate_urls("small.bin", upstream=[srv.url_for("small.bin")])
        fetch(urls, dest, md5=_md5(data["small.bin"]), progress=False)
        assert [r.path for r in srv.requests] == ["/mirror/small.bin"]
    assert dest.read_bytes() == data["small.bin"]


def test_a_bad_local_mirror_is_named_with_its_own_error_and_a_fix_that_can_work(tmp_path, monkeypatch):
    """$JEPA_DATA_MIRROR points at a folder without the file, upstream is unreachable: the final
    sentence names the mirror's own cause and says to mend that mirror (it is already set)."""
    shelf = tmp_path / "shelf"
    shelf.mkdir()
    monkeypatch.setenv(MIRROR_ENV, str(shelf))
    dead = f"http://127.0.0.1:{_free_port()}/f.bin"
    with pytest.raises(DownloadError) as err:
        fetch(candidate_urls("f.bin", [dead]), tmp_path / "out" / "f.bin", retries=0, backoff=0.0, progress=False)
    message = str(err.value)
    mirror_part, upstream_part = message.split("; ", 1)
    assert (shelf / "f.bin").as_uri() in mirror_part and "f.bin" in mirror_part and "1 attempt:" in mirror_part
    assert dead in upstream_part
    assert f"put an intact copy on the mirror ${MIRROR_ENV} names ({shelf})" in message
    assert f"set mirrors or ${MIRROR_ENV} to a mirror" not in message


def test_candidate_urls_order_and_deduplication(monkeypatch):
    monkeypatch.setenv(MIRROR_ENV, "http://c/data,,http://a")
    urls = candidate_urls(
        "cifar.tar.gz",
        upstream=["https://up/x/cifar.tar.gz", "http://a/cifar.tar.gz"],
        mirrors=["http://a/", "http://b//"],
    )
    assert urls == [
        "http://a/cifar.tar.gz",
        "http://b/cifar.tar.gz",
        "http://c/data/cifar.tar.gz",
        "https://up/x/cifar.tar.gz",
    ]


def test_local_folder_works_as_mirror_without_network(tmp_path):
    shelf = tmp_path / "shelf"
    shelf.mkdir()
    data = _payload(10_000, 3)
    (shelf / "f.bin").write_bytes(data)
    dead = f"http://127.0.0.1:{_free_port()}/f.bin"
    dest = tmp_path / "out" / "f.bin"
    fetch(candidate_urls("f.bin", [dead], [str(shelf)]), dest, md5=_md5(data), progress=False)
    assert dest.read_bytes() == data


def test_existing_verified_file_is_not_downloaded_again(files, tmp_path):
    root, data = files
    dest = tmp_path / "small.bin"
    dest.write_bytes(data["small.bin"])
    with LoopbackServer(root) as srv:
        _get(srv, dest, "small.bin", data["small.bin"])
        assert srv.count("small.bin") == 0
        dest.write_bytes(b"stale")  # wrong content is replaced, not trusted
        _get(srv, dest, "small.bin", data["small.bin"])
        assert srv.count("small.bin") == 1
    assert dest.read_bytes() == data["small.bin"]


def test_not_enough_space_for_download_fails_before_any_request(files, tmp_path):
    root, data = files
    with LoopbackServer(root) as srv:
        with pytest.raises(StorageError, match="Not enough free space to download small.bin"):
            fetch([srv.url_for("small.bin")], tmp_path / "small.bin", size=10**18, progress=False)
        assert srv.requests == []


def test_progress_false_writes_nothing_and_true_shows_a_bar(files, tmp_path, capfd):
    root, data = files
    with LoopbackServer(root) as srv:
        _get(srv, tmp_path / "quiet.bin", "small.bin", data["small.bin"], progress=False)
        file_md5(tmp_path / "quiet.bin", progress=False)
        quiet = capfd.readouterr()
        _get(srv, tmp_path / "loud.bin", "small.bin", data["small.bin"], progress=True)
        loud = capfd.readouterr()
    assert quiet.err == "" and quiet.out == ""
    assert "loud.bin" in loud.err


# ---------------------------------------------------------------------------------------- TLS, proxy
@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    return cert, key


def test_untrusted_certificate_is_refused_with_a_tls_message(files, tmp_path, self_signed, monkeypatch):
    root, data = files
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    with LoopbackServer(root, tls=self_signed) as srv:
        url = srv.url_for("small.bin")
        with pytest.raises(DownloadError) as err:
            fetch([url], tmp_path / "small.bin", backoff=0.0, progress=False)
    message = str(err.value)
    assert "TLS certificate verification failed" in message and url in message
    assert not (tmp_path / "small.bin").exists()


@pytest.mark.parametrize("var", ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"])
def test_ca_bundle_from_environment_is_trusted(files, tmp_path, self_signed, monkeypatch, var):
    root, data = files
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.setenv(var, str(self_signed[0]))
    with LoopbackServer(root, tls=self_signed) as srv:
        _get(srv, tmp_path / "small.bin", "small.bin", data["small.bin"])
    assert (tmp_path / "small.bin").read_bytes() == data["small.bin"]


def test_missing_ca_bundle_file_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "nope.pem"))
    with pytest.raises(DownloadError, match=r"\$SSL_CERT_FILE is set to .*nope.pem, which does not exist"):
        fetch(["https://127.0.0.1:9/x"], tmp_path / "x", progress=False)


def test_unreachable_proxy_is_named_in_the_error(files, tmp_path, monkeypatch):
    root, _ = files
    proxy = f"http://127.0.0.1:{_free_port()}"
    monkeypatch.setenv("http_proxy", proxy)
    with LoopbackServer(root) as srv:
        url = srv.url_for("small.bin")
        with pytest.raises(DownloadError) as err:
            fetch([url], tmp_path / "small.bin", retries=1, backoff=0.0, progress=False)
        assert srv.requests == []  # the traffic really went to the (dead) proxy
    assert proxy in str(err.value) and url in str(err.value)


def test_fetch_replaces_a_same_size_file_with_wrong_bytes_at_its_destination(tmp_path):
    www = tmp_path / "www"
    www.mkdir()
    payload = np.random.default_rng(1).bytes(100_000)
    (www / "f.bin").write_bytes(payload)
    dest = tmp_path / "f.bin"
    dest.write_bytes(payload[:-1] + bytes([payload[-1] ^ 0xFF]))  # the size alone cannot tell
    with LoopbackServer(www) as server:
        dl.fetch([server.url_for("f.bin")], dest, md5=dl.hashlib.md5(payload).hexdigest(), size=len(payload),
                 progress=False)
        assert server.count("f.bin") == 1
    assert dest.read_bytes() == payload
