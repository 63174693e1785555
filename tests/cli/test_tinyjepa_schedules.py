"""``cli/tinyjepa.py``: the tiny JEPA's schedules follow the global step and the plan saved in the
checkpoint, so a run that stops at step 12 and is resumed to 24 ends with the loss of 24
uninterrupted steps."""

from __future__ import annotations

import lightning
import pytest
from lightning.pytorch.callbacks import ModelCheckpoint

from jepa_datamodules import MultiBlockMaskGenerator, SyntheticDataModule, TinyJEPA
from jepa_datamodules.notices import Notice


def synthetic(data_dir) -> SyntheticDataModule:
    return SyntheticDataModule(data_dir=data_dir, num_train=64, num_test=16, batch_size=8, num_workers=0,
                               progress=False, mask=MultiBlockMaskGenerator(min_keep=4))


def tiny(**kwargs) -> TinyJEPA:
    lightning.seed_everything(0, verbose=False)
    return TinyJEPA(32, 4, 10, embed_dim=32, depth=1, num_heads=2, predictor_dim=16, predictor_depth=1, **kwargs)


def fit(model, data_dir, root, max_steps: int, ckpt_path=None) -> lightning.Trainer:
    trainer = lightning.Trainer(accelerator="cpu", devices=1, max_steps=max_steps, logger=False,
                                enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                                default_root_dir=root, callbacks=[ModelCheckpoint(dirpath=root)])
    trainer.fit(model, datamodule=synthetic(data_dir), ckpt_path=ckpt_path)
    return trainer


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def uninterrupted(data_dir, tmp_path_factory) -> TinyJEPA:
    model = tiny()
    fit(model, data_dir, tmp_path_factory.mktemp("whole"), 24)
    return model


def test_twelve_plus_twelve_steps_end_with_the_loss_of_twenty_four(data_dir, tmp_path, uninterrupted):
    first = tiny(schedule_steps=24)  # the plan of the whole run, stopped half-way
    fit(first, data_dir, tmp_path / "first", 12)
    assert first.losses == uninterrupted.losses[:12]
    second = tiny()  # resumed as typed: this run's limits plan 24 too, so no word about the plan
    checkpoint = next((tmp_path / "first").glob("*.ckpt"))
    fit(second, data_dir, tmp_path / "second", 24, ckpt_path=str(checkpoint))
    assert second.planned_steps == 24 and len(second.losses) == 12
    assert second.losses == pytest.approx(uninterrupted.losses[12:], abs=1e-6)
    assert second.losses[-1] == pytest.approx(uninterrupted.losses[-1], abs=1e-6)


def test_a_resume_that_plans_another_total_says_so(data_dir, tmp_path):
    first = tiny()
    fit(first, data_dir, tmp_path / "first", 6)
    assert first.planned_steps == 6
    second = tiny()
    with pytest.warns(Notice, match=r"planned over 6 steps and this run's limits plan 12.*model.schedule_steps=6"):
        fit(second, data_dir, tmp_path / "second", 12, ckpt_path=str(next((tmp_path / "first").glob("*.ckpt"))))
    assert second.planned_steps == 12


def test_schedules_are_functions_of_the_step_and_the_plan():
    model = tiny(schedule_steps=100)
    model.planned_steps = 100
    assert model.lr_factor(0) == pytest.approx(0.1) and model.lr_factor(9) == pytest.approx(1.0)
    assert model.lr_factor(100) == pytest.approx(0.0, abs=1e-12)
    assert model.ema_momentum(0) == pytest.approx(0.996) and model.ema_momentum(100) == pytest.approx(1.0)
    assert model.ema_momentum(50) == pytest.approx(0.998)
