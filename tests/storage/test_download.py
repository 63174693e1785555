"""Downloading, verifying and unpacking, against a fault-injecting server on 127.0.0.1.

Nothing here touches the internet: every URL points at a ``LoopbackServer`` started by the test
(or at a closed local port).
"""

from __future__ import annotations

import errno
import hashlib
import io
import random
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import types
import zipfile
from pathlib import Path

import filelock
import pytest

import jepa_datamodules.storage.download as dl
from jepa_datamodules.storage import files as storage
from jepa_datamodules.storage.download import (
    MIRROR_ENV,
    DownloadError,
    StorageError,
    candidate_urls,
    check_free_space,
    fetch,
    file_md5,
)
from jepa_datamodules.errors import ExtractError
from jepa_datamodules.notices import Notice
from jepa_datamodules.storage.extract import safe_extract
from jepa_datamodules.storage.locks import dataset_lock
import jepa_datamodules.storage.locks as locks
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


# ---------------------------------------------------------------------------------------- extract
def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], mode: str = "w") -> Path:
    with tarfile.open(path, mode) as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name: str) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), f"content of {name}".encode()


def _link(name: str, target: str, kind: bytes) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


def _special(name: str, kind: bytes) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    return info, None


def _snapshot(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


UNSAFE = {  # case: (member, its name, the reason the message must give)
    "parent": (_file("../evil"), "../evil", "'..' component"),
    "absolute": (_file("/abs"), "/abs", "absolute path"),
    "symlink-outside": (_link("link", "../outside", tarfile.SYMTYPE), "link", "points outside"),
    "symlink-absolute": (_link("link", "/etc", tarfile.SYMTYPE), "link", "is an absolute path"),
    "hardlink-outside": (_link("hard", "../outside", tarfile.LNKTYPE), "hard", "points outside"),
    "char-device": (_special("null", tarfile.CHRTYPE), "null", "device file"),
    "fifo": (_special("pipe", tarfile.FIFOTYPE), "pipe", "FIFO"),
}


@pytest.mark.parametrize("case", sorted(UNSAFE))
def test_unsafe_tar_member_is_refused_before_writing(tmp_path, case):
    member, name, reason = UNSAFE[case]
    archive = _tar(tmp_path / "bad.tar", [_file("good.txt"), member])
    target = tmp_path / "work" / "ds"
    before = _snapshot(tmp_path)
    with pytest.raises(ExtractError) as err:
        safe_extract(archive, target, progress=False)
    # Our own check fires (not only tarfile's filter), so Pythons without the filter are safe too.
    assert f"member {name!r}" in str(err.value) and reason in str(err.value)
    assert not target.exists()
    assert _snapshot(tmp_path) - before <= {"work"}  # at most the (empty) parent was created
    assert not any((tmp_path / "work").iterdir())


def test_chained_symlink_escape_is_refused(tmp_path):
    # "here" -> "." is harmless alone, but "up" -> "here/.." resolves to the parent on disk.
    archive = _tar(tmp_path / "chain.tar", [
        _link("here", ".", tarfile.SYMTYPE),
        _link("up", "here/..", tarfile.SYMTYPE),
    ])
    with pytest.raises(ExtractError, match="'up'.*passes through the symlink 'here'"):
        safe_extract(archive, tmp_path / "ds", progress=False)
    assert not (tmp_path / "ds").exists()


def test_member_under_a_symlink_is_refused(tmp_path):
    archive = _tar(tmp_path / "under.tar", [_link("d", "sub", tarfile.SYMTYPE), _file("d/x")])
    with pytest.raises(ExtractError, match="'d/x' lies under the symlink 'd'"):
        safe_extract(archive, tmp_path / "ds", progress=False)


def test_zip_with_parent_component_is_refused(tmp_path):
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok.txt", "fine")
        zf.writestr("../evil.txt", "bad")
    with pytest.raises(ExtractError, match="'../evil.txt'"):
        safe_extract(archive, tmp_path / "ds", progress=False)
    assert not (tmp_path / "ds").exists() and not (tmp_path.parent / "evil.txt").exists()


def _good_tgz(path: Path) -> Path:
    return _tar(path, [
        _file("top/a.txt"),
        _file("top/sub/b.txt"),
        _link("top/alias.txt", "a.txt", tarfile.SYMTYPE),
        _link("top/copy.txt", "top/a.txt", tarfile.LNKTYPE),
    ], mode="w:gz")


def test_tgz_and_zip_extract_and_replace_existing_target(tmp_path):
    target = tmp_path / "ds"
    target.mkdir()
    (target / "old.txt").write_text("from an earlier version")
    safe_extract(_good_tgz(tmp_path / "a.tgz"), target, progress=False)
    assert (target / "top/sub/b.txt").read_text() == "content of top/sub/b.txt"
    assert (target / "top/alias.txt").read_text() == "content of top/a.txt"
    assert (target / "top/copy.txt").read_text() == "content of top/a.txt"
    assert not (target / "old.txt").exists()

    archive = tmp_path / "b.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("images/0.txt", "zero")
    safe_extract(archive, target, progress=False, members_filter=lambda n: n.startswith("images/"))
    assert _snapshot(target) == {"images", "images/0.txt"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tgz", "b.zip", "ds"]


def test_leftover_partial_folder_is_removed_and_extraction_completes(tmp_path):
    leftover = tmp_path / ".ds.partial-xyz"
    (leftover / "half").mkdir(parents=True)
    (leftover / "half" / "file").write_bytes(b"junk")
    target = safe_extract(_good_tgz(tmp_path / "a.tgz"), tmp_path / "ds", progress=False)
    assert not leftover.exists()
    assert (target / "top/a.txt").read_text() == "content of top/a.txt"


@pytest.mark.parametrize("crash", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()])
def test_crash_mid_extraction_leaves_target_as_it_was(tmp_path, monkeypatch, crash):
    archive = _good_tgz(tmp_path / "a.tgz")
    real_extractall = tarfile.TarFile.extractall

    def extract_two_then_crash(self, path=".", members=None, **kwargs):
        real_extractall(self, path, members=list(members)[:2], **kwargs)
        assert any(Path(path).rglob("*.txt"))  # the crash really happens mid-way
        raise crash

    monkeypatch.setattr(tarfile.TarFile, "extractall", extract_two_then_crash)
    existing = tmp_path / "kept"
    existing.mkdir()
    (existing / "v1.txt").write_text("v1")
    for target in (tmp_path / "fresh", existing):
        with pytest.raises(StorageError if isinstance(crash, OSError) else KeyboardInterrupt):
            safe_extract(archive, target, progress=False)
    assert not (tmp_path / "fresh").exists()
    assert _snapshot(existing) == {"v1.txt"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tgz", "kept"]


def test_unreadable_archive_is_reported(tmp_path):
    archive = tmp_path / "broken.tar.gz"
    archive.write_bytes(b"this is not gzip data at all")
    with pytest.raises(ExtractError, match="broken.tar.gz is not a readable"):
        safe_extract(archive, tmp_path / "ds", progress=False)
    assert not (tmp_path / "ds").exists()


# ---------------------------------------------------------------------------------------- space, lock
def test_free_space_message_names_needed_free_and_path(tmp_path, monkeypatch):
    folder = tmp_path / "not" / "yet"
    check_free_space(folder, 1, "download x.tar")  # a byte always fits; measured on tmp_path
    usage = types.SimpleNamespace(total=10**13, used=0, free=1_100_000_000)
    monkeypatch.setattr(storage.shutil, "disk_usage", lambda path: usage)
    with pytest.raises(StorageError) as err:
        check_free_space(folder, 2_700_000_000, "download x.tar")
    assert str(err.value) == (f"Not enough free space to download x.tar: needs 2.7 GB at {folder}, only 1.1 GB free; "
                              "free space there or point data_dir (or $JEPA_DATA_DIR) at a disk "
                              "with room.")
    assert (err.value.setting, err.value.path) == ("data_dir", folder)  # the facts, for callers that act on them
    assert not folder.exists()


def test_free_space_check_measures_real_disk(tmp_path):
    free = shutil.disk_usage(tmp_path).free
    with pytest.raises(StorageError, match=f"at {tmp_path}"):
        check_free_space(tmp_path, free + 10**15, "extract y")


# The child imports locks.py alone (the package imports its modules lazily, so no torch is
# loaded: that would cost seconds per process on a small CI machine and is irrelevant to locking).
_LOCK_CHILD = r"""
import importlib, sys, time
from pathlib import Path
module = importlib.import_module(sys.argv[1])
assert "torch" not in sys.modules
folder, log, name, release = sys.argv[2:6]
def note(text):
    with open(log, "a") as fh:
        fh.write(text + "\n")
note(name + " trying")
with module.dataset_lock(Path(folder)):
    note(name + " start")
    while release != "-" and not Path(release).exists():
        time.sleep(0.02)
    note(name + " end")
"""


def _wait_for_line(log: Path, line: str, procs: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if log.exists() and line in log.read_text().splitlines():
            return
        if any(proc.poll() not in (None, 0) for proc in procs):
            raise AssertionError("a lock child failed; see its stderr above")
        time.sleep(0.02)
    raise AssertionError(f"{line!r} never appeared in {log}")


def test_dataset_lock_serialises_two_processes(tmp_path):
    folder, log, release = tmp_path / "data" / "cifar10", tmp_path / "log.txt", tmp_path / "release"
    script = [sys.executable, "-c", _LOCK_CHILD, locks.__name__, str(folder), str(log)]
    # Children inherit this process's stderr, so a crash in one shows up in pytest's report.
    first = subprocess.Popen([*script, "A", str(release)])
    procs = [first]
    try:
        _wait_for_line(log, "A start", procs)
        assert (tmp_path / "data" / ".cifar10.lock").exists()
        with pytest.raises(filelock.Timeout):
            dataset_lock(folder, timeout=0).acquire()
        procs.append(subprocess.Popen([*script, "B", "-"]))
        _wait_for_line(log, "B trying", procs)
        time.sleep(0.3)  # give a broken lock the chance to let B in while A still holds it
        release.touch()
        assert [proc.wait(timeout=60) for proc in procs] == [0, 0]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert log.read_text().splitlines() == ["A trying", "A start", "B trying", "A end", "B start", "B end"]
