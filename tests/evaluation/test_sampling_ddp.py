"""``evaluation/sampling.py`` (and ``monitor.py``): evaluation under DDP, 2 gloo ranks on the CPU:
Lightning's validation loop over an EvalDataModule sees every evaluation image exactly once (uneven
shards, no padding duplicates), and the kNN monitor's top-1 equals the single-process value."""

from __future__ import annotations

import json
from pathlib import Path

import lightning
import pytest
import torch
import torch.nn.functional as F

from jepa_datamodules import EvalDataModule, KNNMonitor, SyntheticDataModule
from tests.helpers.recorder import close_process_group


def colour_features(model, images: torch.Tensor) -> torch.Tensor:
    """A fixed feature map (4x4 average colours): the same whatever the training did."""
    return F.adaptive_avg_pool2d(images, 4).flatten(1)


class EvalRecorder(lightning.LightningModule):
    """Trains one scalar; records the evaluation items each rank validates, and the monitor's history."""

    def __init__(self, out_dir: str) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(1))
        self.out_dir = out_dir
        self.validated: list[int] = []

    def training_step(self, batch, batch_idx):
        return self.weight.pow(2).sum() * batch["images"].mean().abs().detach()

    def validation_step(self, batch, batch_idx):
        assert set(batch) == {"images", "labels", "indices"} and batch["images"].dtype == torch.float32
        self.validated += batch["indices"].tolist()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def on_fit_end(self) -> None:
        monitor = next(c for c in self.trainer.callbacks if isinstance(c, KNNMonitor))
        path = Path(self.out_dir) / f"rank{self.global_rank}.json"
        path.write_text(json.dumps({"world": self.trainer.world_size, "validated": self.validated,
                                    "knn": monitor.history}))
        close_process_group()


@pytest.mark.slow
def test_two_ranks_cover_the_evaluation_split_exactly_once(tmp_path, data_dir):
    # 37 evaluation images over 2 ranks: shards of 19 and 18, batches of 8 -> 3 and 3 batches (the last ones partial).
    dm = SyntheticDataModule(data_dir=data_dir, num_train=60, num_test=37, batch_size=8, num_workers=0, progress=False)
    edm = EvalDataModule(dm, protocol="knn", batch_size=8)
    monitor = KNNMonitor(EvalDataModule(dm, protocol="knn", batch_size=8), k=5, features=colour_features)
    trainer = lightning.Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", max_epochs=1, logger=False,
                                limit_train_batches=1, num_sanity_val_steps=0, enable_progress_bar=False,
                                enable_model_summary=False, enable_checkpointing=False, default_root_dir=tmp_path,
                                callbacks=[monitor])
    trainer.fit(EvalRecorder(str(tmp_path)), datamodule=edm)

    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    shards = [r["validated"] for r in ranks]
    assert sorted(len(s) for s in shards) == [18, 19] and not set(shards[0]) & set(shards[1])
    assert sorted(shards[0] + shards[1]) == list(range(37))  # every image once: no padding, nothing dropped

    # The monitor gathered both shards: its top-1 is the one-process value, on both ranks.
    single = KNNMonitor(EvalDataModule(dm, protocol="knn", batch_size=8), k=5, features=colour_features)
    single.eval_datamodule.setup()
    expected = single.evaluate(EvalRecorder(str(tmp_path)))
    assert [r["knn"] for r in ranks] == [[[0, expected]], [[0, expected]]]
