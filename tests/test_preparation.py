"""``preparation.py``: downloads and verification through ``JEPADataModule.prepare_data`` / ``verify`` and the
``jepa-prepare`` / ``jepa-verify`` commands, against the fault-injecting loopback server.

What a user on a flaky network or a shared cluster would notice: a failing mirror ends in one
error and leaves no half-written dataset; a corrupted transfer is caught and repaired; two
processes preparing the same folder download once; a killed extraction needs no manual
clean-up; a full disk is reported before a byte is fetched; a verified dataset is not read
again; ``jepa-verify`` names what is broken and how to fix it; no progress bars in logs.

Each test gets its own loopback server over the session's fake archives (``mirror``), so
request counts start at zero and injected faults never leak into another test.
"""

from __future__ import annotations

import builtins
import fcntl
import io
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tarfile
import termios
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from jepa_datamodules.cli.terms import HydraTerms, console_text
import yaml

from jepa_datamodules import CIFAR10DataModule
from jepa_datamodules.storage import download as dl
from jepa_datamodules.storage.verify import STAMP_NAME
from tests.helpers.loopback import LoopbackServer

ARCHIVE = "cifar-10-python.tar.gz"
EXTRACTED = "cifar-10-python"  # the archive's extract_to folder
BATCHES = f"{EXTRACTED}/cifar-10-batches-py"
SMALL = dict(image_size=32, patch_size=4, batch_size=8, num_workers=0, progress=False)
# What a tqdm bar prints: "name:  40%|####      | 240k/598k [00:00<00:00, 3.1MB/s]".
BAR = re.compile(r"\d+%\||\d[kMG]?B/s|it/s|file/s")


@pytest.fixture
def mirror(served):
    """A fresh loopback server over the fake archives: counts start at 0, faults die with it."""
    upstream, fakes = served
    with LoopbackServer(upstream.root) as server:
        yield server, fakes


def cifar10(data_dir: Path, server: LoopbackServer, **overrides) -> CIFAR10DataModule:
    return CIFAR10DataModule(data_dir=data_dir, mirrors=[server.url], **{**SMALL, **overrides})


def assert_verified_copy(dm: CIFAR10DataModule, fake) -> None:
    """The stamp is there and both splits read back exactly the fake's pixels and labels."""
    assert (dm.folder / STAMP_NAME).is_file()
    for split in ("train", "test"):
        source = dm.open_split(split)
        np.testing.assert_array_equal(source.images, fake.splits[split])
        np.testing.assert_array_equal(source.labels, fake.labels[split])


def leftovers(folder: Path) -> list[Path]:
    return sorted(folder.glob(f".{EXTRACTED}.partial-*")) + sorted(folder.glob(f".{EXTRACTED}.old-*"))


def cli(command: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run a console script as a user would: stdout/stderr are pipes (not a TTY)."""
    script = Path(sys.executable).parent / command
    return subprocess.run([str(script), *args, f"paths.log_dir={cwd / 'runs'}"], capture_output=True, text=True,
                          cwd=cwd, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})


def cifar10_args(data_dir: Path, server: LoopbackServer) -> list[str]:
    return ["data=cifar10", f"paths.data_dir={data_dir}", f"data.mirrors=[{server.url}]"]


def prepare_hint(data_dir: Path, server: LoopbackServer) -> str:
    """The fix hint repeats the user's own overrides, shell-quoted: following it repairs this folder."""
    return f"`jepa-prepare data=cifar10 paths.data_dir={data_dir} 'data.mirrors=[{server.url}]' force=true`"


# ------------------------------------------------------------------------ network faults
def test_mirror_failing_past_the_retry_limit_leaves_no_dataset_and_resumes_later(mirror, data_dir, monkeypatch):
    server, fakes = mirror
    sleeps: list[float] = []
    monkeypatch.setattr(dl, "_sleep", sleeps.append)  # keep the backoff schedule, skip the waiting
    folder = data_dir / "cifar10"

    # A first attempt dies mid-body, leaving a partial .part behind ...
    server.drop_after(ARCHIVE, 200_000)
    with pytest.raises(dl.DownloadError):
        cifar10(data_dir, server, retries=0).prepare_data()
    part = folder / f"{ARCHIVE}.part"
    assert part.stat().st_size == 200_000

    # ... then the mirror answers 500 to every try: initial attempt + 2 retries.
    server.fail(ARCHIVE, 500, times=3)
    with pytest.raises(dl.DownloadError) as error:
        cifar10(data_dir, server, retries=2).prepare_data()
    message = str(error.value)
    assert server.url_for(ARCHIVE) in message and "(3 attempts)" in message and "HTTP 500" in message
    assert sleeps == [1.0, 2.0]
    assert not (folder / ARCHIVE).exists(), "an incomplete .part was promoted to the archive"
    assert not (folder / EXTRACTED).exists() and not leftovers(folder)
    assert not (folder / STAMP_NAME).exists()
    assert part.stat().st_size == 200_000  # kept, so the next run resumes instead of starting over

    # The mirror recovers: the next prepare_data resumes from byte 200,000 and verifies.
    dm = cifar10(data_dir, server)
    dm.prepare_data()
    assert server.requests[-1].range_start == 200_000
    assert server.bytes_served(ARCHIVE) == fakes["cifar10"].size  # no byte was sent twice
    assert not part.exists()
    assert_verified_copy(dm, fakes["cifar10"])


def test_bytes_corrupted_in_transit_are_detected_and_downloaded_again(mirror, data_dir):
    server, fakes = mirror
    server.corrupt(ARCHIVE, times=1)
    dm = cifar10(data_dir, server)
    dm.prepare_data()
    assert [r.range_start for r in server.requests] == [None, None]  # the bad copy, then a fresh one
    assert dl.file_md5(dm.folder / ARCHIVE) == fakes["cifar10"].md5
    assert_verified_copy(dm, fakes["cifar10"])


def test_not_enough_disk_space_is_one_sentence_before_any_download(mirror, data_dir, tmp_path, monkeypatch):
    server, _ = mirror
    free = shutil.disk_usage(data_dir).free
    catalog = yaml.safe_load(Path(os.environ["JEPA_CATALOG"]).read_text())
    catalog["cifar10"]["archives"][0]["size"] = 2 * free  # an archive twice the size of this disk's free space
    override = tmp_path / "huge.yaml"
    override.write_text(yaml.safe_dump(catalog))
    monkeypatch.setenv("JEPA_CATALOG", str(override))

    with pytest.raises(dl.StorageError) as error:
        cifar10(data_dir, server).prepare_data()
    message = str(error.value)
    match = re.fullmatch(r"Not enough free space to download and extract cifar-10-python\.tar\.gz: "
                         r"needs ([\d.]+) ([kMGT]?B) at (.+), only ([\d.]+) ([kMGT]?B) free; free space there "
                         r"or point data_dir \(or \$JEPA_DATA_DIR\) at a disk with room\.", message)
    assert match, message
    scale = {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}
    assert float(match[1]) * scale[match[2]] > float(match[4]) * scale[match[5]]
    assert match[3] == str(data_dir / "cifar10")
    assert server.requests == []
    assert not list((data_dir / "cifar10").glob(f"{ARCHIVE}*"))


# -------------------------------------------------------------------- concurrent processes
_PREPARE_SCRIPT = """
import sys, time
from pathlib import Path
from jepa_datamodules import CIFAR10DataModule

data_dir, mirror, go = sys.argv[1:4]
dm = CIFAR10DataModule(data_dir=data_dir, mirrors=[mirror], image_size=32, patch_size=4, num_workers=0,
                       progress=False)
print("ready", flush=True)
while not Path(go).exists():  # start line: both processes call prepare_data at the same moment
    time.sleep(0.005)
dm.prepare_data()
print("splits", len(dm.open_split("train")), len(dm.open_split("test")), flush=True)
"""


@pytest.mark.slow
def test_two_processes_preparing_one_folder_download_once(mirror, data_dir, tmp_path):
    server, fakes = mirror
    script = tmp_path / "prepare.py"
    script.write_text(_PREPARE_SCRIPT)
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, str(script), str(data_dir), server.url, str(go)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        for proc in procs:
            assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        go.touch()
        outputs = [proc.communicate(timeout=120) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err[-2000:]
        assert out.strip() == "splits 100 30"
    assert server.count(ARCHIVE) == 1
    assert_verified_copy(cifar10(data_dir, server), fakes["cifar10"])


# --------------------------------------------------------------------- killed extraction
_KILLED_EXTRACTION_SCRIPT = """
import sys, time
from jepa_datamodules import CIFAR10DataModule
from jepa_datamodules.storage import extract

real_track = extract.track

def crawl(items, *args, **kwargs):
    # Extract two members at normal speed, then stall until the test kills this process.
    for index, item in enumerate(real_track(items, *args, **kwargs)):
        if index == 2:
            time.sleep(120)
        yield item

extract.track = crawl
data_dir, mirror = sys.argv[1:3]
CIFAR10DataModule(data_dir=data_dir, mirrors=[mirror], image_size=32, patch_size=4, num_workers=0,
                  progress=False).prepare_data()
"""


@pytest.mark.slow
def test_extraction_killed_midway_recovers_without_manual_cleanup(mirror, data_dir, tmp_path):
    server, fakes = mirror
    folder = data_dir / "cifar10"
    script = tmp_path / "extract.py"
    script.write_text(_KILLED_EXTRACTION_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(data_dir), server.url],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not any(p.is_file() for partial in leftovers(folder) for p in partial.rglob("*")):
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "extraction never started"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)  # no cleanup handler can run: as an OOM kill or a pulled plug
        proc.wait(timeout=30)
    finally:
        proc.kill()
        proc.stderr.close()
    # The killed run left a half-extracted hidden folder and nothing that looks finished.
    assert leftovers(folder)
    assert not (folder / EXTRACTED).exists() and not (folder / STAMP_NAME).exists()

    dm = cifar10(data_dir, server)
    dm.prepare_data()
    assert server.count(ARCHIVE) == 1  # the complete archive is reused, not fetched again
    assert not leftovers(folder)
    assert_verified_copy(dm, fakes["cifar10"])


# ------------------------------------------------------------- a verified dataset is not read
def test_second_prepare_on_a_verified_dataset_opens_nothing_but_the_stamp(mirror, data_dir, monkeypatch):
    server, fakes = mirror
    cifar10(data_dir, server).prepare_data()
    folder = data_dir / "cifar10"

    opened: list[Path] = []

    def spy(real_open):
        def recording_open(file, *args, **kwargs):
            if isinstance(file, (str, bytes, os.PathLike)):
                opened.append(Path(os.path.abspath(os.fsdecode(file))))
            return real_open(file, *args, **kwargs)
        return recording_open

    # Every way this package (and tarfile / numpy under it) opens a file by name.
    monkeypatch.setattr(builtins, "open", spy(builtins.open))
    monkeypatch.setattr(io, "open", spy(io.open))
    monkeypatch.setattr(os, "open", spy(os.open))
    monkeypatch.setattr(tarfile, "bltn_open", spy(tarfile.bltn_open))

    def no_hashing(*args, **kwargs):
        raise AssertionError("a verified dataset was hashed again")

    monkeypatch.setattr(dl, "file_md5", no_hashing)
    cifar10(data_dir, server).prepare_data()
    monkeypatch.undo()

    inside = {p for p in opened if data_dir in p.parents}
    assert folder / ARCHIVE not in inside
    assert inside <= {folder / STAMP_NAME, data_dir / ".cifar10.lock"}, sorted(inside)
    assert (folder / STAMP_NAME) in inside  # the spy works: the stamp itself was read
    assert server.count(ARCHIVE) == 1


# ------------------------------------------------------------------------------ jepa-verify
TABLE_HEADER = re.compile(r"^check\s+expected\s+found\s+ok$", re.MULTILINE)


def assert_verify_error(result: subprocess.CompletedProcess, start: str, replace: str, hint: str) -> None:
    """jepa-verify's last line is one sentence: the failed checks, what to replace, the fix."""
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith(start), error
    assert replace in error
    assert hint in error
    assert "Traceback" not in result.stderr


def row(stdout: str, check: str) -> str:
    rows = [line for line in stdout.splitlines() if line.startswith(check + " ")]
    assert len(rows) == 1, stdout
    return rows[0]


def flip_byte_keeping_mtime(path: Path) -> None:
    """Damage a file in place the way bit rot does: same size, same mtime."""
    before = path.stat()
    with open(path, "r+b") as handle:
        handle.seek(before.st_size // 2)
        byte = handle.read(1)
        handle.seek(before.st_size // 2)
        handle.write(bytes([byte[0] ^ 0xFF]))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


@pytest.mark.slow
def test_jepa_verify_prints_the_table_and_full_rehashes_the_archive(mirror, data_dir, tmp_path):
    server, fakes = mirror
    cifar10(data_dir, server).prepare_data()
    args = cifar10_args(data_dir, server)

    intact = cli("jepa-verify", *args, cwd=tmp_path)
    assert intact.returncode == 0, intact.stderr[-2000:]
    header = TABLE_HEADER.search(intact.stdout)
    assert header, intact.stdout
    checks = intact.stdout[header.start():].splitlines()[2:]
    checks = [line for line in checks if line.split()[0] in ("md5", "file", "count", "classes", "decode")]
    # 1 archive + 7 files + count/classes/decode for 2 splits
    assert len(checks) == 14 and all(line.endswith(" ok") for line in checks), intact.stdout
    # Plain verify takes the archive's md5 from the stamp (same size and mtime as verified) ...
    assert f"{fakes['cifar10'].md5} (stamp)" in row(intact.stdout, f"md5 {ARCHIVE}")

    # ... so bit rot that kept size and mtime takes full=true, which hashes the archive again.
    flip_byte_keeping_mtime(data_dir / "cifar10" / ARCHIVE)
    full = cli("jepa-verify", *args, "full=true", cwd=tmp_path)
    assert full.returncode == 1
    assert row(full.stdout, f"md5 {ARCHIVE}").endswith("FAIL")
    assert "(stamp)" not in full.stdout
    assert_verify_error(full, f"error: cifar10 failed 1 check(s) (md5 {ARCHIVE})",
                        f"replace {ARCHIVE} under {data_dir / 'cifar10'}", prepare_hint(data_dir, server))


def test_plain_verify_trusts_the_stamp_only_while_size_and_mtime_match(mirror, data_dir):
    server, fakes = mirror
    dm = cifar10(data_dir, server)
    dm.prepare_data()
    archive = dm.folder / ARCHIVE
    flip_byte_keeping_mtime(archive)
    assert dm.verify().ok  # stat-only, as documented: same size and mtime as when it was verified
    assert not dm.verify(full=True).ok
    os.utime(archive)  # now touched: the stamp's md5 no longer describes it
    report = dm.verify()
    assert [c.name for c in report.failures] == [f"md5 {ARCHIVE}"]
    assert report.failures[0].found == dl.file_md5(archive) != fakes["cifar10"].md5
    assert report.bad_files == [ARCHIVE]


@pytest.mark.slow
def test_jepa_verify_names_a_missing_and_a_truncated_batch_and_the_fix(mirror, data_dir, tmp_path):
    server, _ = mirror
    cifar10(data_dir, server).prepare_data()
    missing = data_dir / "cifar10" / BATCHES / "data_batch_2"
    truncated = data_dir / "cifar10" / BATCHES / "data_batch_4"
    missing.unlink()
    size = truncated.stat().st_size
    with open(truncated, "r+b") as handle:
        handle.truncate(size // 2)

    result = cli("jepa-verify", *cifar10_args(data_dir, server), cwd=tmp_path)
    assert result.returncode == 1
    assert TABLE_HEADER.search(result.stdout), result.stdout
    assert re.search(r"\spresent\s+missing\s+FAIL$", row(result.stdout, f"file {BATCHES}/data_batch_2"))
    assert re.search(rf"\s{size} bytes\s+{size // 2} bytes\s+FAIL$", row(result.stdout, f"file {BATCHES}/data_batch_4"))
    assert row(result.stdout, f"file {BATCHES}/data_batch_1").endswith(" ok")
    assert_verify_error(result, f"error: cifar10 failed 2 check(s) (file {BATCHES}/data_batch_2, "
                                f"file {BATCHES}/data_batch_4)",
                        f"replace {BATCHES}/data_batch_2, {BATCHES}/data_batch_4 under {data_dir / 'cifar10'}",
                        prepare_hint(data_dir, server))


def test_truncated_batch_without_a_stamp_is_named_by_the_read_check(mirror, data_dir):
    server, _ = mirror
    dm = cifar10(data_dir, server)
    dm.prepare_data()
    (dm.folder / STAMP_NAME).unlink()  # e.g. extracted by hand: no verified sizes to compare with
    batch = dm.folder / BATCHES / "data_batch_2"
    with open(batch, "r+b") as handle:
        handle.truncate(batch.stat().st_size // 2)
    report = dm.verify()
    assert [c.name for c in report.failures] == ["read train"]
    assert f"{BATCHES}/data_batch_2 is not a readable CIFAR batch" in report.failures[0].found
    assert report.bad_files == [f"{BATCHES}/data_batch_2"]
    assert f"replace {BATCHES}/data_batch_2 under {dm.folder}" in report.fix()
    # The table cuts long cells; the failure is repeated in full underneath.
    assert f"FAIL read train: expected readable, found FormatError: {BATCHES}/data_batch_2" in report.table()


def test_verify_before_anything_is_prepared_says_to_run_prepare(data_dir, served):
    dm = CIFAR10DataModule(data_dir=data_dir, **SMALL)
    report = dm.verify()
    assert not report.ok
    # The hint repeats the user's own data_dir: following it prepares this folder, not ./data.
    assert console_text(report.fix(terms=None), HydraTerms()) == (
        f"nothing of it is on disk yet: run `jepa-prepare data=cifar10 paths.data_dir={data_dir}` to fetch and verify it")
    # A Python caller reads the same fix in Python's terms.
    assert report.fix() == (f"nothing of it is on disk yet: run `prepare_data()` of the cifar10 DataModule "
                            f"with data_dir='{data_dir}' to fetch and verify it")


# --------------------------------------------------------------------------- jepa-prepare
@pytest.mark.slow
def test_jepa_prepare_force_downloads_and_extracts_again_without_progress_bars(mirror, data_dir, tmp_path):
    server, fakes = mirror
    cifar10(data_dir, server).prepare_data()
    marker = data_dir / "cifar10" / EXTRACTED / "left-by-an-earlier-run"
    marker.touch()

    result = cli("jepa-prepare", *cifar10_args(data_dir, server), "force=true", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "cifar10: ready and verified at" in result.stdout
    assert server.count(ARCHIVE) == 2  # downloaded again ...
    assert not marker.exists()  # ... and the extracted folder replaced by a fresh one
    assert_verified_copy(cifar10(data_dir, server), fakes["cifar10"])
    # stderr is a pipe here, not a TTY, and progress is left at its default: no bars in logs.
    assert not BAR.search(result.stderr), result.stderr


def test_progress_false_prints_no_bars_and_true_does(mirror, tmp_path, capfd):
    server, _ = mirror
    cifar10(tmp_path / "quiet", server, progress=False).prepare_data()
    assert not BAR.search(capfd.readouterr().err)
    cifar10(tmp_path / "loud", server, progress=True).prepare_data()
    loud = capfd.readouterr().err
    assert BAR.search(loud) and ARCHIVE in loud  # the detector above does see real bars


@pytest.mark.parametrize("rows, columns", [(24, 100), (0, 0), (0, 100)])
def test_prepare_on_a_terminal_shows_bars(mirror, tmp_path, monkeypatch, rows, columns):
    """Positive control for the pipe case: progress left at its default, stderr a pseudo-terminal.

    A size of 0 is a terminal nobody sized (fresh ptys, some container consoles): it still gets bars.
    """
    server, _ = mirror
    leader, follower = os.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    received: list[bytes] = []

    def drain() -> None:  # read while writing: a pty holds only a few kB
        while True:
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO: the other end was closed
                return
            if not data:
                return
            received.append(data)

    reader = threading.Thread(target=drain)
    reader.start()
    try:
        with os.fdopen(follower, "w", buffering=1) as terminal:
            monkeypatch.setattr(sys, "stderr", terminal)
            cifar10(tmp_path, server, progress=None).prepare_data()
            monkeypatch.undo()
    finally:
        reader.join(timeout=30)
        os.close(leader)
    shown = b"".join(received).decode(errors="replace")
    assert BAR.search(shown) and f"{ARCHIVE}: 100%|" in shown, shown[-2000:]
    assert f"extract {ARCHIVE}: 100%|" in shown, shown[-2000:]


# -------------------------------------------------------------------- hand-placed archives
@pytest.mark.parametrize("damage", ["truncated", "same size, other bytes"])
def test_wrong_hand_placed_archive_is_named_before_any_extraction(damage, served, data_dir):
    _, fakes = served
    fake = fakes["cifar10"]
    folder = data_dir / "cifar10"
    folder.mkdir()
    good = fake.path.read_bytes()
    placed = good[: len(good) // 2] if damage == "truncated" else good[:-1] + bytes([good[-1] ^ 0xFF])
    (folder / ARCHIVE).write_bytes(placed)

    with pytest.raises(dl.DownloadError) as error:
        CIFAR10DataModule(data_dir=data_dir, download=False, **SMALL).prepare_data()
    sentence = str(error.value)
    expected = f"expected {fake.size:,} bytes with md5 {fake.md5}"
    if damage == "truncated":
        assert sentence.startswith(f"{folder / ARCHIVE} is not the official {ARCHIVE}: it has {len(placed):,} bytes, "
                                   f"{expected}; it is truncated or another file, so nothing was extracted")
    else:
        found = dl.hashlib.md5(placed).hexdigest()
        assert sentence.startswith(f"{folder / ARCHIVE} is not the official {ARCHIVE}: it has the expected "
                                   f"{fake.size:,} bytes but md5 {found}, {expected}")
    assert f"run `prepare_data()` of the cifar10 DataModule with data_dir='{data_dir}' to download it" in sentence
    assert sorted(p.name for p in folder.iterdir()) == [ARCHIVE]
