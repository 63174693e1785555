"""``bench/run.py``'s ``run_bench`` (``jepa-bench``): from the command line on generated stand-ins
it runs offline and writes its report (tiny settings: speed is measured by the bench, never
asserted here; ImageNet's JPEG stand-in reports its decoders), bad settings say what is allowed
before anything is written, and the sources mode is refused, naming its own runner."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_module

from jepa_datamodules.bench.run import run_bench
from jepa_datamodules.formats.imagenet import detect_source
from tests.helpers.bench import bench_cli, check_report


def _cfg(tmp_path: Path, *overrides: str):
    with initialize_config_module(config_module="jepa_datamodules.conf", version_base="1.3"):
        return compose("config", overrides=[f"paths.data_dir={tmp_path}", "data.num_workers=0", "data.batch_size=4",
                                            "data.image_size=32", "data.patch_size=4", "mask.min_keep=4", *overrides])


def _sources_cfg(tmp_path: Path, *overrides: str):
    with initialize_config_module(config_module="jepa_datamodules.conf", version_base="1.3"):
        return compose("config", overrides=[f"paths.data_dir={tmp_path}", "bench=sources", *overrides])


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


def test_run_bench_refuses_the_sources_mode_and_names_its_runner(tmp_path):
    from jepa_datamodules.bench.run import run_bench

    with pytest.raises(ValueError, match=r"bench.mode=sources is not run by run_bench, .*bench.sources.run_sources"):
        run_bench(_sources_cfg(tmp_path, "data=imagenet"), output_dir=tmp_path)
