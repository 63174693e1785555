"""``datamodule/base.py``: ``prepare_data`` as a user meets it. A second call neither downloads
nor hashes, no network names the URL, the target and the fixes, and a failed forced download
keeps the verified archive."""

from __future__ import annotations

import pytest

from jepa_datamodules import CIFAR10DataModule
from jepa_datamodules.storage import download as dl


SMALL = dict(image_size=32, patch_size=4, batch_size=8, num_workers=0)


def test_second_prepare_neither_downloads_nor_hashes(served, data_dir, monkeypatch):
    server, fakes = served
    dm = CIFAR10DataModule(data_dir=data_dir, mirrors=[server.url], progress=False, **SMALL)
    dm.prepare_data()
    served_before = server.count("/cifar-10-python.tar.gz")

    def no_hashing(*args, **kwargs):
        raise AssertionError("a verified dataset was hashed again")

    monkeypatch.setattr(dl, "file_md5", no_hashing)
    CIFAR10DataModule(data_dir=data_dir, mirrors=[server.url], progress=False, **SMALL).prepare_data()
    assert server.count("/cifar-10-python.tar.gz") == served_before


def test_no_network_names_url_target_and_fixes(served, data_dir):
    # Port 9 on loopback: nothing listens, the connection is refused at once.
    # The served catalog has no upstream URLs, so the dead mirror is the only candidate.
    dm = CIFAR10DataModule(data_dir=data_dir, mirrors=["http://127.0.0.1:9"], retries=0, progress=False, **SMALL)
    with pytest.raises(dl.DownloadError) as error:
        dm.prepare_data()
    text = str(error.value)
    assert "http://127.0.0.1:9/cifar-10-python.tar.gz" in text
    assert str(data_dir / "cifar10" / "cifar-10-python.tar.gz") in text
    assert "JEPA_DATA_MIRROR" in text or "mirrors" in text
    assert not (data_dir / "cifar10" / "cifar-10-python").exists()


def test_failed_forced_download_keeps_the_archive(served, data_dir):
    server, fakes = served
    CIFAR10DataModule(data_dir=data_dir, mirrors=[server.url], progress=False, **SMALL).prepare_data()
    archive = data_dir / "cifar10" / "cifar-10-python.tar.gz"
    dead = CIFAR10DataModule(data_dir=data_dir, mirrors=["http://127.0.0.1:9"], retries=0, force=True, progress=False,
                             **SMALL)
    with pytest.raises(dl.DownloadError):
        dead.prepare_data()
    assert dl.file_md5(archive) == fakes["cifar10"].md5
    # Without force the kept archive is extracted and verified again; nothing is fetched.
    before = server.count("/cifar-10-python.tar.gz")
    CIFAR10DataModule(data_dir=data_dir, mirrors=[server.url], progress=False, **SMALL).prepare_data()
    assert server.count("/cifar-10-python.tar.gz") == before
    assert len(CIFAR10DataModule(data_dir=data_dir, **SMALL).open_split("train")) == 100
