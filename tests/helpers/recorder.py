"""A LightningModule that records every batch it trains on, and runs of it: the resume and DDP
tests compare what an interrupted run and an uninterrupted one trained on."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Callable

import lightning
import torch
from lightning.pytorch.callbacks import ModelCheckpoint


def batch_record(batch: dict[str, Any]) -> tuple:
    """What a user would compare between two runs: where the batch sits, which samples it
    holds, and digests of its masks and (augmented, normalized) pixels."""
    masks = hashlib.sha1()
    for mask in batch.get("context_masks", []) + batch.get("target_masks", []):
        masks.update(mask.cpu().numpy().tobytes())
    pixels = hashlib.sha1(batch["images"].cpu().numpy().tobytes()).hexdigest()[:12]
    return (int(batch["epoch"]), int(batch["batch_index"]), tuple(batch["indices"].tolist()),
            masks.hexdigest()[:12], pixels)


class Recorder(lightning.LightningModule):
    """Trains one scalar and records every batch it is given (see ``batch_record``)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(1))
        self.seen: list[tuple] = []

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        self.seen.append(batch_record(batch))
        return self.weight.pow(2).sum() * batch["images"].mean().abs().detach()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def close_process_group() -> None:
    """For a ``ddp_spawn`` rank's ``on_fit_end`` (it runs after the strategy's teardown, so nothing
    collective is left): close the gloo group before the process exits. Left open, a rank that
    exits while the other is still in gloo's threads can die with SIGABRT ("terminate called
    without an active exception"), after all its records were written; seen twice on fresh-clone runs."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def fit(datamodule: lightning.LightningDataModule, max_steps: int, root: Path, ckpt_path: str | None = None,
        checkpoint_every: int | None = None, checkpoint_at_end: bool = False) -> Recorder:
    """``checkpoint_every``: save every that many steps; ``checkpoint_at_end``: save when the
    run ends (ModelCheckpoint's default, on epoch end, which is where jepa-fit saves)."""
    model = Recorder()
    callbacks = [ModelCheckpoint(dirpath=root / "checkpoints", every_n_train_steps=checkpoint_every,
                                 save_top_k=-1)] if checkpoint_every or checkpoint_at_end else []
    trainer = lightning.Trainer(max_steps=max_steps, accelerator="cpu", devices=1, logger=False,
                                enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                                enable_checkpointing=bool(callbacks), callbacks=callbacks, default_root_dir=root)
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    return model


def interrupted_and_resumed(make_dm: Callable[[], lightning.LightningDataModule], tmp_path: Path, total: int,
                            checkpoint_at: int, stop_at: int) -> list[tuple]:
    """Run to ``stop_at`` saving a checkpoint at step ``checkpoint_at`` (the run goes on
    past it, as a run that crashes later does), then resume from that checkpoint to ``total``;
    returns the batches the model trained on, in order, as the resumed history sees them."""
    first = fit(make_dm(), stop_at, tmp_path / "first", checkpoint_every=checkpoint_at)
    checkpoint = next((tmp_path / "first" / "checkpoints").glob(f"*step={checkpoint_at}.ckpt"))
    second = fit(make_dm(), total, tmp_path / "second", ckpt_path=str(checkpoint))
    return first.seen[:checkpoint_at] + second.seen


def tiny_fit_overrides(tmp_path: Path) -> list[str]:
    """``jepa-fit`` overrides for a quick CPU run: data and runs under ``tmp_path``, 64 synthetic
    images in batches of 8 (8 batches per epoch), a one-block model."""
    return [f"paths.data_dir={tmp_path / 'data'}", f"paths.log_dir={tmp_path / 'runs'}", "data.num_train=64",
            "data.num_test=16", "data.batch_size=8", "data.num_workers=0", "mask.min_keep=4", "model.embed_dim=32",
            "model.depth=1", "model.num_heads=2", "model.predictor_dim=16", "model.predictor_depth=1"]
