"""``datamodule/datasets.py``: the CIFAR DataModules on fakes in the upstream format served
over loopback, fetched through the mirror setting, verified and read back exactly; CIFAR-100's
coarse labels."""

from __future__ import annotations

import numpy as np
import pytest

from jepa_datamodules import CIFAR100DataModule, CIFAR10DataModule
from jepa_datamodules.storage import download as dl


SMALL = dict(image_size=32, patch_size=4, batch_size=8, num_workers=0)


@pytest.mark.parametrize("name, cls", [("cifar10", CIFAR10DataModule), ("cifar100", CIFAR100DataModule)])
def test_cifar_downloads_through_mirror_and_reads_back_exactly(served, data_dir, name, cls):
    server, fakes = served
    fake = fakes[name]
    dm = cls(data_dir=data_dir, mirrors=[server.url], progress=False, **SMALL)
    before = server.count(f"/{fake.path.name}")
    dm.prepare_data()
    assert server.count(f"/{fake.path.name}") == before + 1
    assert dl.file_md5(data_dir / name / fake.path.name) == fake.md5
    for split in ("train", "test"):
        source = dm.open_split(split)
        assert len(source) == len(fake.labels[split])
        np.testing.assert_array_equal(source.images, fake.splits[split])
        np.testing.assert_array_equal(source.labels, fake.labels[split])


def test_cifar100_coarse_labels(served, data_dir):
    server, fakes = served
    dm = CIFAR100DataModule(data_dir=data_dir, mirrors=[server.url], label_type="coarse", progress=False, **SMALL)
    dm.prepare_data()
    assert dm.num_classes == 20
    np.testing.assert_array_equal(dm.open_split("test").labels, fakes["cifar100"].labels["test"] // 5)
