"""``bench/standins.py``: every generated stand-in passes its dataset's own prepare/verify path and
loads, its counts reach its DataModules through a catalog override only (the user's catalog
kept, nothing leaking), it is written once and then reused, and prepared real data is preferred
over it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import yaml
from hydra import compose, initialize_config_module

from jepa_datamodules import CIFAR10DataModule
from jepa_datamodules.bench import standins
from jepa_datamodules.bench.run import check_settings
from jepa_datamodules.bench.standins import STANDIN_KINDS, bench_datamodule, build_bench_datamodule, write_standin
from jepa_datamodules.catalog import CATALOG_ENV
from jepa_datamodules.preparation import is_prepared


def _cfg(tmp_path: Path, *overrides: str):
    with initialize_config_module(config_module="jepa_datamodules.conf", version_base="1.3"):
        return compose("config", overrides=[f"paths.data_dir={tmp_path}", "data.num_workers=0", "data.batch_size=4",
                                            "data.image_size=32", "data.patch_size=4", "mask.min_keep=4", *overrides])


def _settings(cfg) -> dict:
    return check_settings(cfg.bench)


@pytest.mark.parametrize("kind", STANDIN_KINDS)
def test_every_stand_in_passes_its_datasets_prepare_and_loads(tmp_path, kind):
    cfg = _cfg(tmp_path, f"data={kind}", f"bench.synthetic_like={kind}", "bench.standin_images=60")
    dm, data = build_bench_datamodule(cfg, _settings(cfg))
    assert data["kind"] == "stand-in" and str(dm.folder).startswith(str(tmp_path / "bench-standins"))
    dm.prepare_data()  # the dataset's own verification: files, counts (overridden), classes, decoding
    assert (dm.folder / ".jepa-verified.json").exists()
    dm.setup("fit")
    assert len(dm.datasets["train"]) == data["catalog_override"]["splits"][dm.spec.pretrain_split]
    batch = next(iter(dm.train_dataloader()))
    assert batch["images"].shape == (4, 3, 32, 32) and batch["images"].dtype == torch.uint8
    assert len(batch["target_masks"]) == 4
    # Another DataModule on the same stand-in (the bench's views-on-device one) gets the same spec.
    again = bench_datamodule(cfg, data, views_on="device")
    assert again.spec == dm.spec and again.folder == dm.folder and is_prepared(again.data)
    assert again.hparams.views_on == "device" and dm.hparams.views_on != "device"


def test_stand_in_counts_reach_its_datamodules_through_the_catalog_only(tmp_path, monkeypatch):
    user = tmp_path / "mine.yaml"
    user.write_text(yaml.safe_dump({"cifar10": {"title": "My CIFAR-10"}, "stl10": {"title": "My STL-10"}}))
    monkeypatch.setenv(CATALOG_ENV, str(user))
    cfg = _cfg(tmp_path, "data=cifar10", "bench.synthetic_like=cifar10", "bench.standin_images=50")
    dm, data = build_bench_datamodule(cfg, _settings(cfg))
    assert dm.spec.splits == {"train": 50, "test": 10} and dm.spec.title == "My CIFAR-10"  # the user's entry kept
    written = yaml.safe_load(Path(data["catalog"]).read_text())
    assert written["stl10"] == {"title": "My STL-10"} and written["cifar10"]["splits"] == {"train": 50, "test": 10}
    # Nothing leaks: a DataModule built afterwards reads the user's catalog, with the real counts.
    assert os.environ[CATALOG_ENV] == str(user)
    assert CIFAR10DataModule(data_dir=tmp_path).spec.splits["train"] == 50_000


def test_a_stand_in_is_written_once_and_then_reused(tmp_path, monkeypatch):
    cfg = _cfg(tmp_path, "data=cifar10", "bench.synthetic_like=cifar10", "bench.standin_images=50")
    dm, _ = build_bench_datamodule(cfg, _settings(cfg))

    def no_writing(*args, **kwargs):
        raise AssertionError("the cached stand-in was written again")

    monkeypatch.setattr(standins, "_write_cifar", no_writing)
    counts = write_standin(dm.spec, dm.folder, 50)
    assert counts["train"] == 50 and not list(dm.folder.parent.glob(".*partial*"))


def test_prepared_real_data_is_preferred_over_a_stand_in(served, data_dir):
    server, _ = served
    cfg = _cfg(data_dir, "data=cifar10", f"data.mirrors=[{server.url}]", "bench.standin_images=50")
    with pytest.warns(UserWarning, match=r"CIFAR-10 is not prepared at .*; benchmarking a generated stand-in"):
        assert build_bench_datamodule(cfg, _settings(cfg))[1]["kind"] == "stand-in"  # nothing prepared yet
    CIFAR10DataModule(data_dir=data_dir, mirrors=[server.url], progress=False).prepare_data()
    dm, data = build_bench_datamodule(cfg, _settings(cfg))
    assert data == {"kind": "real", "folder": str(data_dir / "cifar10")} and dm.folder == data_dir / "cifar10"
