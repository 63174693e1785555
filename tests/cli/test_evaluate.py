"""``cli/evaluate.py``: ``jepa-eval`` as a user runs it: on a checkpoint of the tiny JEPA trained by
``jepa-fit`` on the synthetic set, kNN and linear top-1 above chance with their intervals, a
per-class picture, the extraction speed, and the features read back from the per-checkpoint cache;
bad input is one sentence."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import lightning
import pytest
from lightning.pytorch.demos.boring_classes import BoringModel

from jepa_datamodules.cli.evaluate import feature_hook

BIN = Path(sys.executable).parent
SMALL = ["data=synthetic", "data.num_train=512", "data.num_test=256", "data.num_workers=0"]


def cli(command: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / command), *args], capture_output=True, text=True, cwd=cwd, timeout=600,
                          stdin=subprocess.DEVNULL,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "JEPA_DATA_DIR": str(cwd / "data")})


def _run_dir(stdout: str) -> Path:
    return Path(re.search(r"^picture:\s+(.+)/per_class\.png$", stdout, re.M).group(1))


@pytest.mark.slow
def test_jepa_eval_on_a_tiny_jepa_checkpoint_is_above_chance_and_caches_features(tmp_path):
    fit = cli("jepa-fit", *SMALL, "trainer.max_steps=8", cwd=tmp_path)
    assert fit.returncode == 0, fit.stderr[-3000:]
    checkpoint = re.search(r"^checkpoint:\s+(\S+\.ckpt)$", fit.stdout, re.M).group(1)

    first = cli("jepa-eval", *SMALL, f"ckpt_path={checkpoint}", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    summary = json.loads((_run_dir(first.stdout) / "summary.json").read_text())
    assert (summary["train"], summary["eval"], summary["feature_dim"]) == (512, 256, 384)
    for name in ("knn", "linear"):
        report = summary[name]
        assert report["n"] == 256 and report["verdict"].startswith("above chance")
        low, high = report["interval"]
        assert low < report["top1"] < high and report["top1"] > report["chance"] + 0.05
        assert len(report["per_class"]) == 10
    assert re.search(r"^kNN top-1:\s+0\.\d{3} \(95 % interval 0\.\d{3}-0\.\d{3}, \d+ of 256; k=20, T=0\.07", first.stdout, re.M)
    assert re.search(r"^linear top-1:\s+0\.\d{3} \(95 % interval", first.stdout, re.M)
    assert re.search(r"^extraction:\s+768 images at [\d,]+ images/s on cpu$", first.stdout, re.M)
    assert (_run_dir(first.stdout) / "per_class.png").stat().st_size > 5000
    cached = list(Path(checkpoint + ".features").glob("features-*.pt"))
    assert len(cached) == 2  # train and eval features, beside the checkpoint

    # Loader settings do not change the features: still read from the cache.
    second = cli("jepa-eval", *SMALL, f"ckpt_path={checkpoint}", "eval.knn.k=5", "data.batch_size=32", cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "extraction:     read from the cache" in second.stdout
    again = json.loads((_run_dir(second.stdout) / "summary.json").read_text())
    assert again["linear"]["top1"] == summary["linear"]["top1"]  # the same features, the same probe
    assert again["knn_settings"]["k"] == 5


@pytest.fixture(scope="module")
def boring_checkpoint(tmp_path_factory):
    """A Lightning checkpoint of a model without a target encoder."""
    folder = tmp_path_factory.mktemp("boring")
    trainer = lightning.Trainer(max_steps=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                                enable_checkpointing=False, default_root_dir=folder, limit_val_batches=0)
    trainer.fit(BoringModel())
    trainer.save_checkpoint(folder / "boring.ckpt")
    return folder / "boring.ckpt"


def test_a_checkpoint_without_the_feature_hook_is_one_sentence(boring_checkpoint):
    with pytest.raises(ValueError) as error:
        feature_hook(None, BoringModel(), str(boring_checkpoint))
    assert str(error.value) == (
        f"ckpt_path={boring_checkpoint} holds a BoringModel without a target_encoder, so the default feature hook "
        "(the tiny JEPA's target encoder) does not apply; pass +eval.features=<dotted path of a callable "
        "(model, images) -> (batch, dim) features>.")
    hook, name = feature_hook("torch.flatten", BoringModel(), str(boring_checkpoint))
    assert name == "torch.flatten" and callable(hook)


@pytest.mark.slow
@pytest.mark.parametrize("overrides, message", [
    (["eval.protocol=finetune"], "error: Unknown value 'finetune' for argument protocol. Valid values are {knn, linear}."),
    (["eval.model_class=lightning.pytorch.demos.boring_classes.BoringModel"],
     "holds a BoringModel without a target_encoder, so the default feature hook"),
    ([], "error: jepa-eval needs a checkpoint: add ckpt_path="),
])
def test_bad_input_on_the_command_line_is_one_error_line(tmp_path, boring_checkpoint, overrides, message):
    checkpoint = [f"ckpt_path={boring_checkpoint}"] if overrides else []
    result = cli("jepa-eval", *SMALL, *checkpoint, *overrides, cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in result.stderr
