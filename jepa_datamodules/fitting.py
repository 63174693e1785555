"""What ``jepa-fit`` adds around ``Trainer.fit``: the model from the config, throughput,
the summary a researcher reads at the end, and the pictures of the run."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from lightning import Callback, LightningModule, Trainer
from omegaconf import DictConfig, OmegaConf

from .tinyjepa import TinyJEPA


def build_model(cfg: DictConfig, dm: Any) -> TinyJEPA:
    options = OmegaConf.to_container(cfg.model, resolve=True)
    return TinyJEPA(image_size=dm.hparams.image_size, patch_size=dm.hparams.patch_size, num_classes=dm.num_classes,
                    **options)


class FitSummary(Callback):
    """Measures images/s over the training steps and writes ``summary.json``."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.images = 0
        self.steps = 0
        self.started: float | None = None
        self.elapsed = 0.0
        self.first_batch: Any = None

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        if self.started is None:
            self.started = time.perf_counter()
            self.first_batch = batch
            self.on_first_batch(trainer, pl_module, batch)

    def on_first_batch(self, trainer: Trainer, pl_module: LightningModule, batch: Any) -> None:
        """Hook for pictures of the first batch; see ``masks_picture``."""

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.images += len(batch["labels"])
        self.steps += 1
        self.elapsed = time.perf_counter() - (self.started or time.perf_counter())

    def report(self, dm: Any, model: TinyJEPA, metrics: dict[str, float]) -> dict[str, Any]:
        accuracy = float(metrics.get("val/probe_accuracy", float("nan")))
        chance = 1.0 / dm.num_classes
        summary = {
            "dataset": dm.spec.name,
            "steps": self.steps,
            "images_per_second": self.images / self.elapsed if self.elapsed else 0.0,
            "first_loss": model.losses[0] if model.losses else None,
            "last_loss": model.losses[-1] if model.losses else None,
            "probe_accuracy": accuracy,
            "chance": chance,
            "run_dir": str(self.run_dir),
        }
        self.run_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.run_dir / ".summary.json.tmp"
        tmp.write_text(json.dumps(summary, indent=1))
        os.replace(tmp, self.run_dir / "summary.json")
        loss = (f"{summary['first_loss']:.4f} -> {summary['last_loss']:.4f}" if model.losses else "n/a")
        verdict = "above" if accuracy > chance else "NOT above"
        print(
            f"\n== jepa-fit summary ==\n"
            f"dataset:        {summary['dataset']} ({dm.hparams.image_size}px, patch {dm.hparams.patch_size})\n"
            f"steps:          {self.steps}\n"
            f"images/s:       {summary['images_per_second']:.1f}\n"
            f"loss:           {loss}\n"
            f"probe accuracy: {accuracy:.3f} ({verdict} chance {chance:.3f})\n"
            f"run directory:  {self.run_dir}"
        )
        return summary
