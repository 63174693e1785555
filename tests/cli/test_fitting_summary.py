"""``cli/fitting.py``: the summary and pictures ``jepa-fit`` leaves, from a run on CIFAR-10
fetched through the mirror setting, and the probe panel's chance line."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jepa_datamodules.cli.fitting import FitSummary
from tests.helpers.console import run_command as _cli


def test_probe_panel_of_a_smoke_run_has_a_chance_line(tmp_path):
    summary = FitSummary(tmp_path)
    summary.probe_curve = [(3, 0.118)]
    path = summary.plot([0.52, 0.42, 0.36], chance=0.1)
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width >= 900 and image.height >= 330
        pixels = np.asarray(image.convert("RGB")).astype(int)
    right = pixels[:, pixels.shape[1] // 2:]
    red = (right[..., 0] - right[..., 1] > 60) & (right[..., 0] - right[..., 2] > 60)  # the dashed red chance line
    assert red.sum(1).max() >= 100, "no horizontal chance line in the probe panel"


@pytest.mark.slow
def test_jepa_fit_cifar10_from_the_command_line(served, data_dir, tmp_path):
    server, _ = served
    result = _cli("jepa-fit", "data=cifar10", f"data.mirrors=[{server.url}]", f"paths.data_dir={data_dir}",
                  f"paths.log_dir={tmp_path / 'runs'}", "data.image_size=32", "data.patch_size=4", "data.batch_size=16",
                  "data.num_workers=0", "mask.min_keep=4", "trainer.max_steps=3", "model.embed_dim=32", "model.depth=1",
                  "model.predictor_dim=16", "model.predictor_depth=1", "model.num_heads=2",
                  env={"JEPA_CATALOG": os.environ["JEPA_CATALOG"]}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "== jepa-fit summary ==" in result.stdout
    assert "dataset:        cifar10" in result.stdout
    assert "steps:          3" in result.stdout
    assert (data_dir / "cifar10" / ".jepa-verified.json").exists()
    # The run folder holds the pictures the summary names, as real PNGs.
    pictures = [line.split(":", 1)[1].strip() for line in result.stdout.splitlines() if line.startswith("picture:")]
    assert {Path(p).name for p in pictures} == {"masks.png", "training.png"}
    from PIL import Image

    for picture in pictures:
        with Image.open(picture) as image:
            assert image.format == "PNG" and image.width > 100
