"""What the streaming tests share: LitData's staging folders kept under each test's tmp_path, and
the synthetic dataset converted once into a local LitData folder (``converted``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from jepa_datamodules.streaming import convert_to_litdata
from tests.helpers.litdata import synthetic


@pytest.fixture(autouse=True)
def litdata_scratch(tmp_path, monkeypatch):
    # LitData stages chunks for remote outputs in these folders (default: under $HOME).
    monkeypatch.setenv("DATA_OPTIMIZER_CACHE_FOLDER", str(tmp_path / "optimizer-chunks"))
    monkeypatch.setenv("DATA_OPTIMIZER_DATA_CACHE_FOLDER", str(tmp_path / "optimizer-data"))


@pytest.fixture(scope="package")  # converted once for every module of tests/streaming
def converted(tmp_path_factory) -> tuple[Path, Path]:
    """The synthetic dataset, prepared as files and converted into a local LitData folder."""
    root = tmp_path_factory.mktemp("litdata")
    dm = synthetic(root / "data")
    dm.prepare_data()
    written = convert_to_litdata(dm, root / "chunks", chunk_bytes="40KB", num_workers=2)
    assert set(written) == {"train", "test"}
    return root / "data", root / "chunks"
