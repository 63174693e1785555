"""``cli/apps.py``: the console scripts turn only the package's own errors (``JEPADataError``) into one
``error:`` sentence; anything else is a bug and keeps its traceback and a non-zero exit, even a
``ValueError`` raised by a user's callback in the middle of training."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from lightning import Callback

from jepa_datamodules import ConfigError
from jepa_datamodules.catalog import dataset_names, get_spec

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]
TINY = ["data=synthetic", "data.num_train=64", "data.num_test=16", "data.batch_size=8", "data.num_workers=0",
        "trainer.max_steps=2", "model.depth=1", "model.num_heads=2", "model.predictor_dim=16",
        "model.predictor_depth=1", "model.embed_dim=32"]


class RaisesValueError(Callback):
    """A user's callback with a bug: a plain ValueError once training starts."""

    def on_train_start(self, trainer, pl_module):
        raise ValueError("a bug in a user callback")


class AsksForAMissingDataset(Callback):
    """A user's callback that asks the library for a dataset the catalog lacks: a ConfigError."""

    def on_train_start(self, trainer, pl_module):
        get_spec("cifar-11")


def jepa_fit(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    # The callbacks above are imported by the console script from this module (tests.cli...).
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return subprocess.run([str(BIN / "jepa-fit"), *TINY, *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600, stdin=subprocess.DEVNULL,
                          env={**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1",
                               "JEPA_DATA_DIR": str(cwd / "data"), "JEPA_LOG_DIR": str(cwd / "runs")})


@pytest.mark.slow
def test_a_value_error_in_a_user_callback_keeps_its_traceback(tmp_path):
    result = jepa_fit(f"+callbacks.bug._target_={__name__}.RaisesValueError", cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback (most recent call last)" in result.stderr, result.stderr[-3000:]
    assert "ValueError: a bug in a user callback" in result.stderr
    assert not any(line.startswith("error: ") for line in result.stderr.splitlines()), result.stderr[-3000:]


@pytest.mark.slow
def test_a_library_error_mid_training_is_still_one_sentence(tmp_path):
    result = jepa_fit(f"+callbacks.missing._target_={__name__}.AsksForAMissingDataset", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: Unknown dataset 'cifar-11'. Valid values are {{{', '.join(dataset_names())}}}."], \
        result.stderr[-3000:]


def test_the_library_error_used_above_is_a_jepa_data_error():
    """The second test's callback fails with the package's own error, not a plain ValueError."""
    with pytest.raises(ConfigError):
        get_spec("cifar-11")
