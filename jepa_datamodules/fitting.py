"""What ``jepa-fit`` adds around ``Trainer.fit``: the model from the config, throughput,
the summary a researcher reads at the end, and the pictures of the run."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import torch
from lightning import Callback, LightningModule, Trainer
from omegaconf import DictConfig, OmegaConf

from .tinyjepa import TinyJEPA


def build_model(cfg: DictConfig, dm: Any) -> TinyJEPA:
    options = OmegaConf.to_container(cfg.model, resolve=True)
    return TinyJEPA(image_size=dm.hparams.image_size, patch_size=dm.hparams.patch_size, num_classes=dm.num_classes,
                    **options)


class FitSummary(Callback):
    """Measures images/s over the training steps, draws the first batch's masks
    (``masks.png``) and the loss / probe-accuracy curves (``training.png``), and writes
    ``summary.json`` into the run directory."""

    def __init__(self, run_dir: Path, mean: Any = (0.0, 0.0, 0.0), std: Any = (1.0, 1.0, 1.0), patch_size: int = 16):
        self.run_dir = Path(run_dir)
        self.mean, self.std, self.patch_size = mean, std, patch_size
        self.images = 0
        self.steps = 0
        self.started: float | None = None
        self.elapsed = 0.0
        self.first_batch: Any = None
        self.probe_curve: list[tuple[int, float]] = []
        self.pictures: dict[str, Path] = {}

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        if self.started is None:
            self.started = time.perf_counter()
            self.first_batch = batch
            self.on_first_batch(trainer, pl_module, batch)

    def on_first_batch(self, trainer: Trainer, pl_module: LightningModule, batch: Any) -> None:
        if not trainer.is_global_zero:
            return
        from .mask_viz import draw_mask_grid

        images = batch["images"].detach().float().cpu()
        # Batches arrive normalized; undo it so the picture shows the views as they are.
        mean = torch.as_tensor(self.mean).view(1, -1, 1, 1)
        std = torch.as_tensor(self.std).view(1, -1, 1, 1)
        views = (images * std + mean).clamp(0, 1) if images.min() < 0 or images.max() > 1.5 else images / 255
        self.pictures["masks"] = draw_mask_grid(views, batch.get("context_masks"), batch.get("target_masks"),
                                                self.patch_size, self.run_dir / "masks.png")

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Not on_validation_epoch_end: callbacks run that hook before the module logs the metric.
        value = trainer.callback_metrics.get("val/probe_accuracy")
        if value is not None and not trainer.sanity_checking:
            self.probe_curve.append((trainer.global_step, float(value)))

    def plot(self, losses: list[float]) -> Path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
        left.plot(range(1, len(losses) + 1), losses, lw=1)
        left.set(xlabel="step", ylabel="JEPA loss (smooth-L1)", yscale="log", title="training loss")
        if self.probe_curve:
            steps, accuracy = zip(*self.probe_curve)
            right.plot(steps, accuracy, marker="o")
        right.set(xlabel="step", ylabel="accuracy", title="online linear probe (val)", ylim=(0, 1))
        figure.tight_layout()
        path = self.run_dir / "training.png"
        tmp = self.run_dir / ".training.png.tmp"
        figure.savefig(tmp, dpi=110, format="png")
        plt.close(figure)
        os.replace(tmp, path)
        return path

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.images += len(batch["labels"])
        self.steps += 1
        self.elapsed = time.perf_counter() - (self.started or time.perf_counter())

    def report(self, dm: Any, model: TinyJEPA, metrics: dict[str, float], checkpoint: str | None = None) -> dict[str, Any]:
        accuracy = float(metrics.get("val/probe_accuracy", float("nan")))
        chance = 1.0 / dm.num_classes if dm.num_classes else float("nan")
        summary = {
            "dataset": dm.spec.name,
            "steps": self.steps,
            "images_per_second": self.images / self.elapsed if self.elapsed else 0.0,
            "first_loss": model.losses[0] if model.losses else None,
            "last_loss": model.losses[-1] if model.losses else None,
            "probe_accuracy": accuracy,
            "chance": chance,
            "run_dir": str(self.run_dir),
            "checkpoint": checkpoint,
        }
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.pictures["training"] = self.plot(model.losses)
        summary["pictures"] = {name: str(path) for name, path in self.pictures.items()}
        tmp = self.run_dir / ".summary.json.tmp"
        tmp.write_text(json.dumps(summary, indent=1))
        os.replace(tmp, self.run_dir / "summary.json")
        loss = (f"{summary['first_loss']:.4f} -> {summary['last_loss']:.4f}" if model.losses else "n/a")
        verdict = "above" if accuracy > chance else "NOT above"
        probe = f"{accuracy:.3f} ({verdict} chance {chance:.3f})" if dm.num_classes else "none (unlabeled images)"
        val = getattr(dm, "val_description", None)  # how val was made, where a dataset chooses (imagefolder)
        print(
            f"\n== jepa-fit summary ==\n"
            f"dataset:        {summary['dataset']} ({dm.hparams.image_size}px, patch {dm.hparams.patch_size})\n"
            f"steps:          {self.steps}\n"
            f"images/s:       {summary['images_per_second']:.1f}\n"
            f"loss:           {loss}\n"
            f"probe accuracy: {probe}\n"
            f"run directory:  {self.run_dir}\n"
            + (f"val:            {val}\n" if val else "")
            + (f"checkpoint:     {checkpoint}\n" if checkpoint else "")
            + "".join(f"picture:        {path}\n" for path in self.pictures.values())
        )
        return summary


# Lightning's default names (epoch=0-step=20.ckpt) break a Hydra override: `ckpt_path=<it>`
# is parsed as a key with an "=" in its value. These names paste as they are.
CHECKPOINT_NAME = "epoch{epoch}-step{step}"


def fit_callbacks(cfg: DictConfig) -> list[Callback]:
    """The checkpointing jepa-fit does (unless trainer.enable_checkpointing=false), then the
    user's ``callbacks`` (a mapping of name -> ``{_target_: ..., ...}``), in that order."""
    from hydra.utils import instantiate
    from lightning.pytorch.callbacks import ModelCheckpoint

    callbacks: list[Callback] = []
    if cfg.trainer.get("enable_checkpointing", True):
        callbacks.append(ModelCheckpoint(filename=CHECKPOINT_NAME, auto_insert_metric_name=False))
    callbacks += [instantiate(spec) for spec in (cfg.get("callbacks") or {}).values() if spec is not None]
    return callbacks


def checkpoint_path(trainer: Trainer) -> str | None:
    """The checkpoint the run wrote last, or None."""
    callback = trainer.checkpoint_callback
    path = getattr(callback, "best_model_path", "") or getattr(callback, "last_model_path", "")
    return path or None


def already_complete(trainer: Trainer, ckpt_path: str) -> str:
    """What to say when a resumed run had nothing left to train, and how to extend it."""
    step, epoch = trainer.global_step, trainer.current_epoch
    if trainer.max_steps is not None and trainer.max_steps >= 0:
        limit, extend = f"trainer.max_steps={trainer.max_steps}", f"trainer.max_steps={max(2 * step, step + 1)}"
    else:
        limit, extend = f"trainer.max_epochs={trainer.max_epochs}", f"trainer.max_epochs={epoch + 1}"
    return (f"Nothing to train: the run in {ckpt_path} is already complete (step {step}, epoch {epoch}; "
            f"{limit} is reached). To extend it, run the same command with a higher limit, e.g. "
            f"{extend} ckpt_path={ckpt_path}")
