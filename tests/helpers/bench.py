"""Running ``jepa-bench`` as a user does (the console script, tiny settings) and checking the
report every run must have; speed itself is measured by the bench, never asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

TINY = ["data.batch_size=8", "data.num_workers=1", "bench.batches=2", "bench.warmup=1", "bench.mask_repeats=2",
        "bench.isolated_samples=2", "bench.standin_images=50"]


def bench_cli(tmp_path: Path, *overrides: str, tiny: tuple[str, ...] | list[str] = TINY
              ) -> tuple[subprocess.CompletedProcess, dict]:
    script = Path(sys.executable).parent / "jepa-bench"
    result = subprocess.run([str(script), *overrides, f"paths.data_dir={tmp_path / 'data'}",
                             f"paths.log_dir={tmp_path / 'runs'}", *tiny],
                            capture_output=True, text=True, cwd=tmp_path, timeout=600,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    json_line = next(line for line in result.stdout.splitlines() if line.startswith("json:"))
    path = Path(json_line.split(":", 1)[1].strip())
    assert path.parent.parent == tmp_path / "runs" / "jepa-bench"  # Hydra's run directory
    return result, json.loads(path.read_text())


def check_report(stdout: str, report: dict, workers: int = 1) -> None:
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
