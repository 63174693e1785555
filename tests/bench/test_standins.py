"""jepa-bench from the command line on generated stand-ins (tiny settings: speed is measured
by the bench, never asserted here), and the stand-ins themselves passing each dataset's
own prepare/verify path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import yaml
from hydra import compose, initialize_config_module

from jepa_datamodules import CIFAR10DataModule
from jepa_datamodules.bench import standins
from jepa_datamodules.bench.run import check_settings, run_bench
from jepa_datamodules.bench.standins import STANDIN_KINDS, bench_datamodule, build_bench_datamodule, write_standin
from jepa_datamodules.catalog import CATALOG_ENV
from jepa_datamodules.formats.imagenet import detect_source
from jepa_datamodules.preparation import is_prepared
from tests.helpers.bench import bench_cli, check_report


def test_cifar10_bench_runs_offline_on_a_stand_in(tmp_path):
    # No data and no network: plain data=cifar10 falls back to a generated CIFAR-format stand-in.
    result, report = bench_cli(tmp_path, "data=cifar10")
    check_report(result.stdout, report)
    assert "generated stand-in" in result.stdout and "not prepared" not in result.stdout
    warning = next(line for line in result.stderr.splitlines() if "not prepared" in line)
    assert warning.startswith("warning: CIFAR-10 is not prepared at ") and "jepa-prepare data=cifar10" in warning
    assert report["dataset"] == "cifar10" and report["data"]["kind"] == "stand-in"
    assert report["data"]["catalog_override"]["splits"]["train"] == 50
    assert f"catalog override {report['data']['catalog']}: train 50, test 10, 10 classes" in result.stdout
    assert (Path(report["data"]["folder"]) / "cifar-10-python" / "cifar-10-batches-py" / "data_batch_1").is_file()


def test_imagenet_bench_on_a_jpeg_stand_in_reports_decoders(tmp_path):
    result, report = bench_cli(tmp_path, "data=imagenet", "bench.synthetic_like=imagenet")
    check_report(result.stdout, report)
    assert report["data"]["kind"] == "stand-in" and report["data"]["catalog_override"]["num_classes"] == 10
    decode = report["isolated_cpu_ms_per_image"]["decode"]
    assert {"pillow", "torchvision"} <= set(decode) and all(ms > 0 for ms in decode.values())
    assert "JPEG decode alone" in result.stdout
    assert report["device_stage_ms_per_batch"]["input"] == "encoded files"  # JPEG bytes left the workers
    folder = Path(report["data"]["folder"])
    sizes = {p.stat().st_size for p in (folder / "train").glob("n*/*.JPEG")}
    assert len(sizes) > 1 and detect_source(folder) == "layout"


# ---------------------------------------------------------------- in-process parts
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


@pytest.mark.parametrize("overrides, message", [
    (["data=cifar10", "bench.synthetic_like=imagenet"],
     "bench.synthetic_like=imagenet does not match data=cifar10; .* use data=imagenet bench.synthetic_like=imagenet"),
    (["data=cifar10", "bench.synthetic_like=mnist"], "Unknown value 'mnist' for bench.synthetic_like. Valid values are"),
    (["data=cifar10", "bench.batches=0"], r"bench.batches=0 is invalid; allowed is an integer >= 1"),
    (["data=imagenet100"], r"imagenet100 is not prepared at .* has no stand-in .* run `jepa-prepare data=imagenet100`"),
])
def test_bad_bench_settings_say_what_is_allowed(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        run_bench(_cfg(tmp_path, *overrides), output_dir=tmp_path)
    assert not (tmp_path / "bench.json").exists()
