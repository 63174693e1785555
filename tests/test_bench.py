"""jepa-bench from the command line on generated stand-ins (tiny settings: speed is measured
by the bench, never asserted here), and the stand-ins themselves passing each dataset's
own prepare/verify path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module

from jepa_datamodules import CIFAR10DataModule
from jepa_datamodules.bench import run as bench
from jepa_datamodules.bench.run import STANDIN_KINDS, build_bench_datamodule, run_bench, write_standin
from jepa_datamodules.formats.imagenet import detect_source

TINY = ["data.batch_size=8", "data.num_workers=1", "bench.batches=2", "bench.warmup=1", "bench.mask_repeats=2",
        "bench.isolated_samples=2", "bench.standin_images=50"]


def _bench_cli(tmp_path: Path, *overrides: str) -> tuple[subprocess.CompletedProcess, dict]:
    script = Path(sys.executable).parent / "jepa-bench"
    result = subprocess.run([str(script), *overrides, f"paths.data_dir={tmp_path / 'data'}",
                             f"paths.log_dir={tmp_path / 'runs'}", *TINY],
                            capture_output=True, text=True, cwd=tmp_path, timeout=600,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    json_line = next(line for line in result.stdout.splitlines() if line.startswith("json:"))
    path = Path(json_line.split(":", 1)[1].strip())
    assert path.parent.parent == tmp_path / "runs" / "jepa-bench"  # Hydra's run directory
    return result, json.loads(path.read_text())


def _check_common(stdout: str, report: dict, workers: int = 1) -> None:
    for field in ("images/s", "CPU ms/image", "first batch", "peak PSS", "baseline", "ours, workers", "ours, device",
                  "ratio:", "ratio, device:", "device stage:", "mask collator:", "prepare_data:"):
        assert field in stdout, f"{field!r} missing from the printed report"
    assert report["settings"]["batch_size"] == 8 and report["settings"]["num_workers"] == workers
    for pipeline in ("ours", "ours_device", "baseline"):
        run = report[pipeline]
        assert run["images"] == 2 * 8 and run["images_per_s"] > 0 and run["first_batch_s"] > 0
        assert run["peak_pss"]["total_mb"] > 0 and run["peak_pss"]["processes"] == 1 + workers
    for pipeline, ratio in (("ours", "ratio"), ("ours_device", "ratio_device")):
        assert report[ratio] == pytest.approx(report[pipeline]["images_per_s"] / report["baseline"]["images_per_s"])
        assert f"{report[ratio]:.1f}x" in stdout
    stage = report["device_stage_ms_per_batch"]
    assert stage["ms"] > 0 and stage["batch_size"] == 8 and stage["device"] == ("cpu" if not torch.cuda.is_available()
                                                                                 else torch.cuda.get_device_name(0))
    assert report["isolated_cpu_ms_per_image"]["ours_device"] > 0
    masks = report["masks_ms_per_batch"]
    assert masks["ours"] > 0 and masks["per_sample_baseline"] > 0
    assert 0 <= report["prepare_data_s"]["again"]
    assert report["settings"]["loader"]["persistent_workers"] is True
    assert report["settings"]["loader"]["pin_memory"] is torch.cuda.is_available()


def test_cifar10_bench_runs_offline_on_a_stand_in(tmp_path):
    # No data and no network: plain data=cifar10 falls back to a generated CIFAR-format stand-in.
    result, report = _bench_cli(tmp_path, "data=cifar10")
    _check_common(result.stdout, report)
    assert "not prepared" in result.stdout and "generated stand-in" in result.stdout
    assert report["dataset"] == "cifar10" and report["data"]["kind"] == "stand-in"
    assert report["data"]["catalog_override"]["splits"]["train"] == 50
    assert (Path(report["data"]["folder"]) / "cifar-10-python" / "cifar-10-batches-py" / "data_batch_1").is_file()


def test_imagenet_bench_on_a_jpeg_stand_in_reports_decoders(tmp_path):
    result, report = _bench_cli(tmp_path, "data=imagenet", "bench.synthetic_like=imagenet")
    _check_common(result.stdout, report)
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
    return bench._check_settings(cfg.bench)


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


def test_a_stand_in_is_written_once_and_then_reused(tmp_path, monkeypatch):
    cfg = _cfg(tmp_path, "data=cifar10", "bench.synthetic_like=cifar10", "bench.standin_images=50")
    dm, _ = build_bench_datamodule(cfg, _settings(cfg))

    def no_writing(*args, **kwargs):
        raise AssertionError("the cached stand-in was written again")

    monkeypatch.setattr(bench, "_write_cifar", no_writing)
    counts = write_standin(dm.spec, dm.folder, 50)
    assert counts["train"] == 50 and not list(dm.folder.parent.glob(".*partial*"))


def test_prepared_real_data_is_preferred_over_a_stand_in(served, data_dir):
    server, _ = served
    cfg = _cfg(data_dir, "data=cifar10", f"data.mirrors=[{server.url}]", "bench.standin_images=50")
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
