"""Data parallelism through Lightning's DDP: disjoint per-rank shards that reshuffle every
epoch, equal batch counts on every rank, one download per node, per-rank masks and
augmentations, per-device vs global batch size, and one Hydra run directory per run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import lightning
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from jepa_datamodules import CIFAR10DataModule, SyntheticDataModule
from jepa_datamodules.pipeline.batching import JEPACollate, ViewDataset
from jepa_datamodules.pipeline.device_views import DeviceViews
from jepa_datamodules.pipeline.masks import MultiBlockMaskGenerator
from jepa_datamodules.formats.base import ArraySource
from jepa_datamodules.pipeline.sampling import BatchKey, EpochBatchSampler
from jepa_datamodules.pipeline.transforms import TrainView
from tests.helpers.fakes import archive_override, catalog_override, make_cifar
from tests.helpers.loopback import LoopbackServer
from tests.helpers.recorder import Recorder, close_process_group



class RankRecorder(Recorder):
    """Writes what this rank trained on to ``<out_dir>/rank<N>.json`` when training ends
    (ddp_spawn runs the ranks in child processes, so files carry the records back)."""

    def __init__(self, out_dir: str) -> None:
        super().__init__()
        self.out_dir = out_dir

    def on_train_end(self) -> None:
        path = Path(self.out_dir) / f"rank{self.global_rank}.json"
        path.write_text(json.dumps({"world_size": self.trainer.world_size, "seen": self.seen}))

    def on_fit_end(self) -> None:
        close_process_group()


@pytest.fixture
def own_cifar10_server(tmp_path, monkeypatch):
    """A fake CIFAR-10 behind a loopback server of this test's own (the session's shared
    server counts requests across tests, and other tests count its CIFAR-10 downloads)."""
    root = tmp_path / "upstream"
    fake = make_cifar(root, "cifar10", per_batch=20, test_count=30, seed=7)
    catalog = catalog_override(root / "catalog.yaml", archive_override("cifar10", fake, {"train": 100, "test": 30}))
    monkeypatch.setenv("JEPA_CATALOG", str(catalog))  # inherited by the spawned ranks
    with LoopbackServer(root) as server:
        yield server, fake


@pytest.mark.slow
@pytest.mark.parametrize("views_on", ["workers", "device"])
def test_two_ranks_see_disjoint_shards_reshuffled_each_epoch(own_cifar10_server, data_dir, tmp_path, views_on):
    server, fake = own_cifar10_server
    out = tmp_path / "records"
    out.mkdir()
    # Fake CIFAR-10: 100 training images; 2 ranks x 6 batches of 8 = 96 per epoch (drop_last).
    dm = CIFAR10DataModule(data_dir=data_dir, mirrors=[server.url], image_size=32, patch_size=4, batch_size=8,
                           num_workers=0, mask=MultiBlockMaskGenerator(min_keep=4), progress=False, views_on=views_on)
    trainer = lightning.Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", max_epochs=2, logger=False,
                                enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                                limit_val_batches=0, default_root_dir=tmp_path)
    trainer.fit(RankRecorder(str(out)), datamodule=dm)

    assert server.count(f"/{fake.path.name}") == 1  # prepare_data ran once per node, under the lock
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    seen = [[tuple(map(_tupled, batch)) for batch in r["seen"]] for r in ranks]
    assert len(seen[0]) == len(seen[1]) == 2 * 6  # same number of batches on every rank: no hang
    for epoch in (0, 1):
        ids = [[i for e, _, batch_ids, *_ in rank if e == epoch for i in batch_ids] for rank in seen]
        assert len(ids[0]) == len(ids[1]) == 48
        assert not set(ids[0]) & set(ids[1])  # disjoint shards
        union = set(ids[0]) | set(ids[1])
        assert len(union) == 96 and union <= set(range(100))  # the dataset, less the drop_last remainder
    for rank in seen:
        order = {e: [i for ep, _, batch_ids, *_ in rank if ep == e for i in batch_ids] for e in (0, 1)}
        assert order[0] != order[1]  # reshuffled each epoch
    # Same epoch and batch position, different rank: different masks.
    masks = [{(e, b): m for e, b, _, m, _ in rank} for rank in seen]
    assert all(masks[0][key] != masks[1][key] for key in masks[0])
    pixels = [{(e, b): p for e, b, _, _, p in rank} for rank in seen]
    assert all(pixels[0][key] != pixels[1][key] for key in pixels[0])  # the model got views, not native images


def _tupled(value):
    return tuple(value) if isinstance(value, list) else value


@settings(max_examples=200, deadline=None)
@given(size=st.integers(1, 300), world=st.integers(1, 8), batch=st.integers(1, 16), drop_last=st.booleans(),
       epoch=st.integers(0, 5))
def test_every_rank_gets_the_same_number_of_batches_from_one_permutation(size, world, batch, drop_last, epoch):
    samplers = [EpochBatchSampler(size, batch, shuffle=True, drop_last=drop_last, seed=3, num_replicas=world, rank=r)
                for r in range(world)]
    for sampler in samplers:
        sampler.set_epoch(epoch)
    per_rank = [list(s) for s in samplers]
    counts = {len(batches) for batches in per_rank}
    assert counts == {len(samplers[0])}  # equal on every rank, and len() tells the truth
    items = [i for batches in per_rank for key in batches for i in key.indices]
    if drop_last:
        assert len(items) == len(set(items))  # nothing repeated
        assert size - len(items) < world * batch  # only a remainder smaller than one global batch is dropped
    else:
        assert set(items) == set(range(size))  # everything seen; padding repeats < world items
        assert len(items) - size < world
    for rank, batches in enumerate(per_rank):
        assert all(key.rank == rank and key.epoch == epoch for key in batches)
        assert [key.batch_index for key in batches] == list(range(len(batches)))


@pytest.mark.parametrize("compact", [False, True], ids=["views-in-workers", "views-on-device"])
def test_masks_and_augmentations_differ_per_rank(compact):
    rng = np.random.default_rng(0)
    source = ArraySource(rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8), np.arange(8))
    dataset = ViewDataset(source, TrainView(32), seed=0, compact=compact)
    collate = JEPACollate(MultiBlockMaskGenerator(min_keep=4).with_grid((8, 8)), seed=0)
    finish = DeviceViews(32, (0.5,) * 3, (0.5,) * 3) if compact else (lambda batch: batch)
    batches = [finish(collate(dataset[BatchKey(tuple(range(8)), epoch=0, batch_index=3, rank=rank)])) for rank in (0, 1)]
    assert not torch.equal(batches[0]["images"], batches[1]["images"])
    assert not all(torch.equal(a, b) for a, b in zip(batches[0]["target_masks"], batches[1]["target_masks"]))
    again = finish(collate(dataset[BatchKey(tuple(range(8)), epoch=0, batch_index=3, rank=1)]))
    assert torch.equal(again["images"], batches[1]["images"])  # and each rank is reproducible


def test_batch_size_is_per_device_and_global_batch_size_divides(tmp_path):
    kwargs = dict(data_dir=tmp_path, num_train=64, num_test=16, image_size=32, patch_size=4, num_workers=0)
    per_device = SyntheticDataModule(batch_size=16, **kwargs)
    per_device.trainer = SimpleNamespace(world_size=4, global_rank=1)
    assert per_device.per_device_batch_size() == 16

    total = SyntheticDataModule(global_batch_size=48, **kwargs)
    total.trainer = SimpleNamespace(world_size=4, global_rank=1)
    assert total.per_device_batch_size() == 12

    uneven = SyntheticDataModule(global_batch_size=50, **kwargs)
    uneven.trainer = SimpleNamespace(world_size=4, global_rank=0)
    with pytest.raises(ValueError, match=r"global_batch_size=50 does not divide across 4 devices; allowed are multiples of 4"):
        uneven.per_device_batch_size()


@pytest.mark.slow
def test_jepa_fit_with_ddp_writes_one_run_directory(tmp_path):
    # Lightning's DDP launcher runs the script again for rank 1; it must reuse rank 0's run dir.
    runs = tmp_path / "runs"
    script = Path(sys.executable).parent / "jepa-fit"
    result = subprocess.run(
        [str(script), "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", f"paths.data_dir={tmp_path / 'data'}",
         f"paths.log_dir={runs}", "data.num_train=64", "data.num_test=16", "data.batch_size=8", "data.num_workers=0",
         "mask.min_keep=4", "trainer.max_steps=3", "model.embed_dim=32", "model.depth=1", "model.predictor_dim=16",
         "model.predictor_depth=1", "model.num_heads=2"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    run_dirs = [p.parent for p in runs.rglob("*.log")]
    assert len(set(run_dirs)) == 1, sorted(set(map(str, run_dirs)))
    run_dir = run_dirs[0]
    assert (run_dir / "train_ddp_process_1.log").exists()  # rank 1 wrote into rank 0's directory
    assert (run_dir / "summary.json").exists()
