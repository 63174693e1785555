"""``datamodule/base.py``: resume as users type it: both limits (max_steps, max_epochs), in Python and
through ``jepa-fit`` with the default config, and what a resume that cannot be exact says."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import lightning
import pytest
from lightning.pytorch.callbacks import ModelCheckpoint

from jepa_datamodules import SyntheticDataModule
from jepa_datamodules.pipeline.masks import MultiBlockMaskGenerator
from tests.helpers.recorder import Recorder, tiny_fit_overrides

# 96 training images in batches of 8: 12 batches per epoch.
NUM_TRAIN, BATCH = 96, 8


def synthetic(data_dir: Path, batch_size: int = BATCH) -> SyntheticDataModule:
    return SyntheticDataModule(data_dir=data_dir, num_train=NUM_TRAIN, num_test=16, image_size=32, patch_size=4,
                               batch_size=batch_size, num_workers=0, mask=MultiBlockMaskGenerator(min_keep=4),
                               progress=False)


def run(dm, root: Path, ckpt_path: str | None = None, **limits) -> tuple[Recorder, lightning.Trainer]:
    model = Recorder()
    trainer = lightning.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                                enable_model_summary=False, limit_val_batches=0, default_root_dir=root,
                                callbacks=[ModelCheckpoint(dirpath=root / "checkpoints", save_top_k=-1)], **limits)
    trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
    return model, trainer


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("data")


def test_run_cut_by_max_steps_resumed_under_max_epochs_trains_the_uninterrupted_total(data_dir, tmp_path):
    # max_steps=5 ends epoch 0 early; resumed with the same max_epochs=2 and no step limit, the
    # run must end where the uninterrupted 2-epoch run ends: 24 steps, the same batches.
    whole, _ = run(synthetic(data_dir), tmp_path / "whole", max_epochs=2)
    first, _ = run(synthetic(data_dir), tmp_path / "first", max_epochs=2, max_steps=5)
    checkpoint = next((tmp_path / "first" / "checkpoints").glob("*step=5.ckpt"))
    second, trainer = run(synthetic(data_dir), tmp_path / "second", ckpt_path=str(checkpoint), max_epochs=2)
    assert len(whole.seen) == 24
    assert len(second.seen) == 24 - 5
    assert first.seen + second.seen == whole.seen
    assert (trainer.global_step, trainer.current_epoch) == (24, 2)


def test_changed_batch_size_on_resume_is_refused_naming_both(data_dir, tmp_path):
    run(synthetic(data_dir), tmp_path / "first", max_steps=3)
    checkpoint = next((tmp_path / "first" / "checkpoints").glob("*step=3.ckpt"))
    with pytest.raises(ValueError, match=r"Cannot resume with batch size 16: .* batch size 8"):
        run(synthetic(data_dir, batch_size=16), tmp_path / "second", ckpt_path=str(checkpoint), max_steps=6)


def test_changed_world_size_on_resume_is_refused_naming_both(data_dir):
    dm = synthetic(data_dir)
    dm.prepare_data()
    state = {**dm.state_dict(), "next_batch": 3, "world_size": 2}
    assert dm.state_dict()["world_size"] == 1 and dm.state_dict()["batch_size"] == BATCH
    dm.load_state_dict(state)
    with pytest.raises(ValueError, match=r"Cannot resume with world size 1: .* world size 2"):
        dm.train_dataloader()


@pytest.mark.slow
def test_resume_through_jepa_fit_on_the_default_config(tmp_path):
    """The README's recipe with the default trainer (cpu: max_epochs 1): max_steps decides, the
    extension continues, and resuming a finished run names the limit that ended it."""
    fit_script = Path(sys.executable).with_name("jepa-fit")
    # 64 images in batches of 8: 8 batches per epoch, so 12 steps need a second epoch.
    common = tiny_fit_overrides(tmp_path)

    def jepa_fit(*extra: str) -> str:
        result = subprocess.run([str(fit_script), *common, *extra], cwd=tmp_path, capture_output=True, text=True,
                                timeout=600, stdin=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
        return result.stdout

    def field(out: str, name: str) -> str:
        return re.search(rf"^{name}:\s+(.+)$", out, flags=re.M).group(1)

    short = jepa_fit("trainer.max_steps=12")
    assert field(short, "steps") == "12"  # not cut at 8 by the cpu trainer's max_epochs: 1
    assert field(short, "ended by") == "trainer.max_steps=12"
    extended = jepa_fit("trainer.max_steps=20", f"ckpt_path={field(short, 'checkpoint')}")
    assert field(extended, "steps") == "8" and field(extended, "ended by") == "trainer.max_steps=20"
    done = jepa_fit("trainer.max_steps=20", f"ckpt_path={field(extended, 'checkpoint')}")
    assert "Nothing to train" in done and "trainer.max_steps=20 is reached" in done
    assert "trainer.max_steps=40" in done

    # A run ended by its epoch limit says so, and resuming it names that limit, not max_steps.
    epochs = jepa_fit("trainer.max_epochs=1")
    assert field(epochs, "steps") == "8" and field(epochs, "ended by") == "trainer.max_epochs=1"
    again = jepa_fit("trainer.max_epochs=1", f"ckpt_path={field(epochs, 'checkpoint')}")
    assert "trainer.max_epochs=1 is reached" in again and "trainer.max_epochs=2 ckpt_path=" in again
