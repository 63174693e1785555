"""``storage/download.py`` on a disk that fills up mid-download (another job's file filling a
tiny tmpfs): one sentence naming what is needed and where, from Python and from ``jepa-prepare``
(exit 2, the console's words), and nothing half-written kept."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from jepa_datamodules import StorageError
from jepa_datamodules.storage import download as dl
from tests.helpers.fakes import catalog_override
from tests.helpers.loopback import LoopbackServer
from tests.helpers.storage import cifar10_cli, last_error, mirror, run_cli, tmpfs  # noqa: F401 - fixtures

ARCHIVE = "cifar-10-python.tar.gz"


def fill_disk_when(part: Path, size: int, filler: Path) -> None:
    """Once ``part`` holds ``size`` bytes, fill its disk with ``filler``: another job on the same scratch."""
    deadline = time.monotonic() + 120
    while not (part.exists() and part.stat().st_size >= size) and time.monotonic() < deadline:
        time.sleep(0.01)
    with open(filler, "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError:
            pass


def test_disk_filling_up_mid_download_names_need_and_place_and_keeps_nothing(tmpfs, tmp_path, monkeypatch):
    www = tmp_path / "www"
    www.mkdir()
    payload = np.random.default_rng(0).bytes(3_000_000)
    (www / "big.bin").write_bytes(payload)
    disk = tmpfs("disk", "4m")  # room for the file when the download starts ...
    monkeypatch.setattr(dl, "_sleep", lambda seconds: None)
    dest = disk / "big.bin"
    part = disk / "big.bin.part"

    with LoopbackServer(www) as server:
        server.stall("big.bin", seconds=1.0, after_bytes=500_000)
        filler = threading.Thread(target=fill_disk_when, args=(part, 500_000, disk / "other-job.bin"))
        filler.start()
        with pytest.raises(StorageError) as error:
            dl.fetch([server.url_for("big.bin")], dest, md5=dl.hashlib.md5(payload).hexdigest(), size=len(payload),
                     progress=False, timeout=10.0)
        filler.join()
    sentence = str(error.value)
    assert sentence.startswith(f"The disk holding {disk} filled up while writing the download of big.bin: "
                               f"it needs 3.0 MB there, "), sentence
    assert sentence.endswith("nothing half-written was kept: free space there or point data_dir "
                             "(or $JEPA_DATA_DIR) at a disk with room.")
    assert sorted(p.name for p in disk.iterdir()) == ["other-job.bin"]


@pytest.mark.slow
def test_jepa_prepare_on_a_disk_filling_up_mid_download_exits_2_with_one_sentence(mirror, tmpfs, tmp_path,
                                                                                  monkeypatch):
    server, fakes = mirror
    entries = yaml.safe_load(Path(os.environ["JEPA_CATALOG"]).read_text())
    entries["cifar10"]["archives"][0]["extracted_size"] = 0  # let the download start on a small disk
    monkeypatch.setenv("JEPA_CATALOG", str(catalog_override(tmp_path / "catalog.yaml", entries)))
    disk = tmpfs("disk", "2m")
    half = fakes["cifar10"].size // 2
    server.stall(ARCHIVE, seconds=1.0, after_bytes=half)
    filler = threading.Thread(target=fill_disk_when, args=(disk / "cifar10" / f"{ARCHIVE}.part", half,
                                                           disk / "other-job.bin"))
    filler.start()
    result = run_cli("jepa-prepare", *cifar10_cli(disk, server), cwd=tmp_path)
    filler.join()
    assert result.returncode == 2
    sentence = last_error(result.stderr)
    assert sentence.startswith(f"The disk holding {disk / 'cifar10'} filled up while writing the download of "
                               f"{ARCHIVE}: it needs "), sentence
    assert "nothing half-written was kept: free space there or point paths.data_dir" in sentence  # console words
    assert sorted(p.name for p in (disk / "cifar10").iterdir()) == []  # no .part, no archive, no stamp
