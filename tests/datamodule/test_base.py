"""``datamodule/base.py``: ``JEPADataModule`` end to end. Batches are uint8 until the device and
carry masks, val is carved from train with a seeded split, a Trainer runs with each
DataModule, and bad arguments say what is allowed."""

from __future__ import annotations

import lightning
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.utils import instantiate

from jepa_datamodules import CIFAR10DataModule, SyntheticDataModule, TinyJEPA
from jepa_datamodules.pipeline.masks import MultiBlockMaskGenerator


SMALL = dict(image_size=32, patch_size=4, batch_size=8, num_workers=0)


def small_mask() -> MultiBlockMaskGenerator:
    return MultiBlockMaskGenerator(min_keep=4)


def test_batches_are_uint8_until_the_device_and_carry_masks(tmp_path):
    dm = SyntheticDataModule(data_dir=tmp_path, num_train=64, num_test=16, mask=small_mask(), progress=False, **SMALL)
    dm.prepare_data()
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["images"].dtype == torch.uint8 and batch["images"].shape == (8, 3, 32, 32)
    assert batch["labels"].dtype == torch.int64 and batch["labels"].shape == (8,)
    assert len(batch["context_masks"]) == 1 and len(batch["target_masks"]) == 4
    assert batch["context_masks"][0].shape[0] == 8 and int(batch["context_masks"][0].max()) < 64
    on_device = dm.on_after_batch_transfer(batch, 0)
    assert on_device["images"].dtype == torch.float32
    assert abs(float(on_device["images"].mean())) < 1.5


def test_val_carved_from_train_with_seeded_split(tmp_path):
    kwargs = dict(data_dir=tmp_path, num_train=100, num_test=20, val_fraction=0.2, progress=False, **SMALL)
    first = SyntheticDataModule(**kwargs)
    first.prepare_data()
    first.setup()
    second = SyntheticDataModule(**kwargs)
    second.setup()
    assert len(first.datasets["val"]) == 20 and len(first.datasets["train"]) == 80
    np.testing.assert_array_equal(first.datasets["val"].source.indices, second.datasets["val"].source.indices)
    assert not set(first.datasets["val"].source.indices) & set(first.datasets["train"].source.indices)
    assert len(first.datasets["test"]) == 20


@pytest.mark.slow
@pytest.mark.parametrize("name", ["synthetic", "cifar10", "cifar100"])
def test_trainer_fast_dev_run_with_each_datamodule(served, data_dir, name):
    server, _ = served
    with initialize_config_module(config_module="jepa_datamodules.conf", version_base="1.3"):
        cfg = compose("config", overrides=[
            f"data={name}", f"paths.data_dir={data_dir}", "data.num_workers=0", "data.image_size=32",
            "data.patch_size=4", "data.batch_size=8", "mask.min_keep=4"]
            + ([f"data.mirrors=[{server.url}]"] if name != "synthetic" else ["data.num_train=64", "data.num_test=16"]))
    dm = instantiate(cfg.data)
    model = TinyJEPA(32, 4, dm.num_classes, embed_dim=32, depth=1, num_heads=2, predictor_dim=16, predictor_depth=1)
    trainer = lightning.Trainer(fast_dev_run=True, accelerator="cpu", logger=False, enable_progress_bar=False,
                                enable_model_summary=False)
    trainer.fit(model, datamodule=dm)
    assert trainer.state.finished and len(model.losses) == 1 and np.isfinite(model.losses[0])


@pytest.mark.parametrize("kwargs, message", [
    (dict(batch_size=0), "batch_size=0 is invalid; allowed is a positive integer"),
    (dict(num_workers=-1), "num_workers=-1 is invalid; allowed is 0 or more"),
    (dict(image_size=30, patch_size=4), "image_size=30 is not a multiple of patch_size=4"),
    (dict(crop_scale=(0.0, 1.0)), r"crop_scale=\(0.0, 1.0\) is invalid; allowed is \(low, high\) with 0 < low <= high <= 1"),
    (dict(crop_scale=(0.5, 1.5)), r"crop_scale=\(0.5, 1.5\) is invalid"),
])
def test_bad_arguments_say_what_is_allowed(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        CIFAR10DataModule(data_dir=tmp_path, **{**SMALL, **kwargs})
