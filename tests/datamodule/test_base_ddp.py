"""``datamodule/base.py`` under Lightning's DDP: disjoint per-rank shards that reshuffle every
epoch, equal batch counts on every rank, one download per node, per-rank masks and
augmentations, and per-device vs global batch size."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import lightning
import pytest

from jepa_datamodules import CIFAR10DataModule, SyntheticDataModule
from jepa_datamodules.pipeline.masks import MultiBlockMaskGenerator
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
