"""Shared fixtures: fake upstream archives served from a loopback HTTP server, with the
catalog pointed at their checksums through ``$JEPA_CATALOG`` (the same setting a mirror
operator would use), and Hydra configs composed once."""

from __future__ import annotations

import os

import pytest

from tests.helpers.fake_ownimages import make_hf_release
from tests.helpers.fakes import (
    TINY_WNIDS, archive_override, catalog_override, make_cifar, make_imagenette, make_stl10, make_tinyimagenet,
)
from tests.helpers.loopback import LoopbackServer

# Keep test runs quiet and CPU-friendly on a 2-core machine.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.pop("JEPA_DATA_MIRROR", None)
os.environ.pop("JEPA_CATALOG", None)

FAKE_SPLITS = {
    "cifar10": {"train": 100, "test": 30},
    "cifar100": {"train": 200, "test": 100},
    "stl10": {"train": 20, "test": 10, "unlabeled": 30, "train+unlabeled": 50},
}


@pytest.fixture(scope="session")
def upstream(tmp_path_factory):
    """Fake CIFAR-10, CIFAR-100, STL-10, Imagenette and Tiny-ImageNet archives behind one loopback server.

    Yields (server, fakes, catalog_path); tests set ``$JEPA_CATALOG`` to catalog_path
    (see the ``served`` fixture) and pass ``mirrors=[server.url]``.
    """
    root = tmp_path_factory.mktemp("upstream")
    fakes = {
        "cifar10": make_cifar(root, "cifar10", per_batch=20, test_count=30, seed=1),
        "cifar100": make_cifar(root, "cifar100", per_batch=40, test_count=100, seed=2),
        "stl10": make_stl10(root, train=20, test=10, unlabeled=30, seed=3),
        "imagenette": make_imagenette(root, seed=4),
        "tinyimagenet": make_tinyimagenet(root, seed=5),
    }
    entries: dict = {}
    for name, fake in fakes.items():
        splits = FAKE_SPLITS.get(name) or {split: len(items) for split, items in fake.written.items()}
        entries.update(archive_override(name, fake, splits))
    entries["tinyimagenet"]["num_classes"] = len(TINY_WNIDS)  # the fake keeps 4 of the 200 classes
    catalog = catalog_override(root / "catalog.yaml", entries)
    with LoopbackServer(root) as server:
        yield server, fakes, catalog


@pytest.fixture
def served(upstream, monkeypatch):
    server, fakes, catalog = upstream
    monkeypatch.setenv("JEPA_CATALOG", str(catalog))
    return server, fakes


@pytest.fixture
def data_dir(tmp_path):
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def release(tmp_path, monkeypatch):
    """The Hugging Face ImageNet release in miniature, ``<data>/imagenet/data/*.parquet``, with
    the catalog pointed at its counts; yields (data_dir, rows written per split)."""
    data_dir, written, entries = make_hf_release(tmp_path)
    monkeypatch.setenv("JEPA_CATALOG", str(catalog_override(tmp_path / "catalog.yaml", entries)))
    return data_dir, written
