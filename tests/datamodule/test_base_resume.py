"""``datamodule/base.py``: mid-epoch resume through Lightning checkpoints: a run that stops and resumes
sees exactly the batches (sample ids, masks, augmented pixels) the uninterrupted run sees, whatever
the number of loader workers."""

from __future__ import annotations

from pathlib import Path


import pytest
import torch

from jepa_datamodules import SyntheticDataModule
from jepa_datamodules.pipeline.masks import MultiBlockMaskGenerator
from jepa_datamodules.pipeline.sampling import EpochBatchSampler
from tests.helpers.recorder import fit, interrupted_and_resumed, tiny_fit_overrides

# 96 training images in batches of 8: 12 batches per epoch.
NUM_TRAIN, BATCH = 96, 8
BATCHES_PER_EPOCH = NUM_TRAIN // BATCH


def synthetic(data_dir: Path, num_workers: int, views_on: str = "auto") -> SyntheticDataModule:
    return SyntheticDataModule(data_dir=data_dir, num_train=NUM_TRAIN, num_test=16, image_size=32, patch_size=4,
                               batch_size=BATCH, num_workers=num_workers, mask=MultiBlockMaskGenerator(min_keep=4),
                               progress=False, views_on=views_on)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def uninterrupted(data_dir, tmp_path_factory) -> list[tuple]:
    """30 steps straight through: two and a half epochs."""
    return fit(synthetic(data_dir, 0), 30, tmp_path_factory.mktemp("reference")).seen


@pytest.fixture(scope="module")
def uninterrupted_on_device(data_dir, tmp_path_factory) -> list[tuple]:
    """The same 30 steps with views_on="device" (views built in on_after_batch_transfer, here on the CPU)."""
    return fit(synthetic(data_dir, 0, "device"), 30, tmp_path_factory.mktemp("reference-device")).seen


def test_uninterrupted_run_covers_epochs_in_new_orders(uninterrupted):
    assert len(uninterrupted) == 30
    assert [(e, b) for e, b, *_ in uninterrupted[:13]] == [(0, b) for b in range(12)] + [(1, 0)]
    epoch0 = [i for e, _, ids, *_ in uninterrupted if e == 0 for i in ids]
    epoch1 = [i for e, _, ids, *_ in uninterrupted if e == 1 for i in ids]
    assert sorted(epoch0) == sorted(epoch1) == list(range(NUM_TRAIN))
    assert epoch0 != epoch1


@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize("checkpoint_at, stop_at", [(5, 7), (BATCHES_PER_EPOCH, BATCHES_PER_EPOCH + 2)],
                         ids=["mid-epoch", "last-batch-of-epoch"])
def test_resumed_run_sees_exactly_the_uninterrupted_batches(data_dir, tmp_path, uninterrupted, num_workers,
                                                            checkpoint_at, stop_at):
    resumed = interrupted_and_resumed(lambda: synthetic(data_dir, num_workers), tmp_path, 30, checkpoint_at, stop_at)
    assert [r[:2] for r in resumed] == [r[:2] for r in uninterrupted]  # no repeats, no skips
    assert resumed == uninterrupted  # same samples, masks and augmented pixels


@pytest.mark.parametrize("num_workers", [0, 2])
def test_resume_on_the_device_path_sees_exactly_the_uninterrupted_batches(data_dir, tmp_path, uninterrupted,
                                                                           uninterrupted_on_device, num_workers):
    # Same samples and masks as the workers path, batch for batch (the pixels differ by uint8 rounding).
    assert [r[:4] for r in uninterrupted_on_device] == [r[:4] for r in uninterrupted]
    resumed = interrupted_and_resumed(lambda: synthetic(data_dir, num_workers, "device"), tmp_path, 30, 5, 7)
    assert resumed == uninterrupted_on_device  # same samples, masks and device-built pixels


def test_checkpoint_records_the_delivered_batch_not_the_prefetched_ones(data_dir, tmp_path):
    # Two workers with prefetching run several batches ahead of training when step 5 is saved.
    fit(synthetic(data_dir, 2), 7, tmp_path, checkpoint_every=5)
    checkpoint = torch.load(next((tmp_path / "checkpoints").glob("*step=5.ckpt")), weights_only=False)
    assert checkpoint["SyntheticDataModule"]["epoch"] == 0
    assert checkpoint["SyntheticDataModule"]["next_batch"] == 5


def test_load_state_dict_without_a_trainer_starts_the_loader_there(data_dir):
    resumed = synthetic(data_dir, 0)
    resumed.prepare_data()
    resumed.load_state_dict({"epoch": 1, "next_batch": 4, "seed": 0})
    batch = next(iter(resumed.train_dataloader()))
    assert (batch["epoch"], batch["batch_index"]) == (1, 4)
    sampler = EpochBatchSampler(NUM_TRAIN, BATCH, shuffle=True, drop_last=True)
    assert batch["indices"].tolist() == list(sampler.epoch_order(1)[4 * BATCH:5 * BATCH])


def test_checkpointed_hyperparameters_load_with_weights_only(tmp_path):
    # Trainer.fit(ckpt_path=...) loads with torch.load(weights_only=True): Paths and Hydra's
    # ListConfig values in the DataModule's hyperparameters would make resuming fail.
    from hydra import compose, initialize_config_module
    from hydra.utils import instantiate

    with initialize_config_module(config_module="jepa_datamodules.conf", version_base="1.3"):
        cfg = compose("config", overrides=[f"paths.data_dir={tmp_path}"])
    dm = instantiate(cfg.data, data_dir=tmp_path / "data")
    torch.save({"datamodule_hyper_parameters": dict(dm.hparams)}, tmp_path / "hparams.ckpt")
    loaded = torch.load(tmp_path / "hparams.ckpt", weights_only=True)["datamodule_hyper_parameters"]
    assert loaded["data_dir"] == str(tmp_path / "data")
    assert list(loaded["crop_scale"]) == list(cfg.data.crop_scale)


@pytest.mark.parametrize("stop_at", [5, BATCHES_PER_EPOCH + 3, BATCHES_PER_EPOCH])
def test_extending_a_run_stopped_by_max_steps_continues_its_stream(data_dir, tmp_path, uninterrupted, stop_at):
    # A run that max_steps ended, saved at its end, then extended with a larger max_steps:
    # Lightning counts the cut-short epoch as finished, the DataModule's position must win.
    first = fit(synthetic(data_dir, 0), stop_at, tmp_path / "first", checkpoint_at_end=True)
    checkpoint = next((tmp_path / "first" / "checkpoints").glob(f"*step={stop_at}.ckpt"))
    second = fit(synthetic(data_dir, 0), 30, tmp_path / "second", ckpt_path=str(checkpoint))
    assert len(second.seen) == 30 - stop_at
    assert first.seen + second.seen == uninterrupted


RECORDER_CALLBACK = '''
import hashlib
import json

import lightning


class BatchRecorder(lightning.Callback):
    """Appends one JSON line per training batch: position, sample ids, digests of masks and views."""

    def __init__(self, path):
        self.path = path

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        masks = hashlib.sha1()
        for mask in batch["context_masks"] + batch["target_masks"]:
            masks.update(mask.cpu().numpy().tobytes())
        views = hashlib.sha1(batch["images"].cpu().numpy().tobytes()).hexdigest()
        with open(self.path, "a") as out:
            out.write(json.dumps([trainer.global_step, int(batch["epoch"]), int(batch["batch_index"]),
                                  batch["indices"].tolist(), masks.hexdigest(), views]) + "\\n")
'''


@pytest.mark.slow
def test_readme_resume_recipe_through_jepa_fit(tmp_path):
    """The README's recipe: a short run, then the same command with more steps and the
    checkpoint path the summary printed; compared with one uninterrupted run."""
    import json
    import os
    import re
    import subprocess
    import sys

    (tmp_path / "recorder.py").write_text(RECORDER_CALLBACK)
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "OMP_NUM_THREADS": "1"}
    fit_script = Path(sys.executable).with_name("jepa-fit")
    # 64 images in batches of 8: 8 batches per epoch; 5 + 9 steps cross an epoch boundary.
    common = [*tiny_fit_overrides(tmp_path), "trainer.max_epochs=10",
              "+callbacks.recorder._target_=recorder.BatchRecorder"]

    def jepa_fit(record: str, *extra: str) -> tuple[str, list]:
        result = subprocess.run([str(fit_script), *common, f"+callbacks.recorder.path={tmp_path / record}", *extra],
                                cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
                                stdin=subprocess.DEVNULL)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
        path = tmp_path / record
        return result.stdout, [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    _, uninterrupted = jepa_fit("uninterrupted.jsonl", "trainer.max_steps=14")
    short_out, short = jepa_fit("short.jsonl", "trainer.max_steps=5")
    checkpoint = re.search(r"^checkpoint:\s+(\S+)$", short_out, flags=re.M).group(1)
    assert "=" not in Path(checkpoint).name  # pastes into a Hydra override as it is
    extended_out, extended = jepa_fit("extended.jsonl", "trainer.max_steps=14", f"ckpt_path={checkpoint}")
    assert re.search(r"^steps:\s+9$", extended_out, flags=re.M)
    assert [step for step, *_ in extended] == list(range(5, 14))  # continues at the step where it stopped
    assert short + extended == uninterrupted  # sample ids, masks and views: exactly the uninterrupted run's

    # Resuming a run that is already complete says so and how to extend it.
    final = re.search(r"^checkpoint:\s+(\S+)$", extended_out, flags=re.M).group(1)
    done_out, nothing = jepa_fit("nothing.jsonl", "trainer.max_steps=14", f"ckpt_path={final}")
    assert nothing == [] and "already complete" in done_out and "trainer.max_steps=28" in done_out
