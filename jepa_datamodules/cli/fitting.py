"""What ``jepa-fit`` adds around ``Trainer.fit``: the model from the config, throughput,
the summary a researcher reads at the end, the pictures of the run, and training progress
as plain lines when the output goes to a log."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from lightning import Callback, LightningModule, Trainer
from omegaconf import DictConfig, OmegaConf

from ..progress import PlainProgress
from ..storage.files import atomic_write, atomic_write_text
from .terms import console_text, typed_key
from .tinyjepa import TinyJEPA

# "above chance" needs a one-sided binomial test at this level: an accuracy this far above
# 1 / classes happens by luck less than once in a hundred runs.
CHANCE_ALPHA = 0.01


def build_model(cfg: DictConfig, dm: Any) -> TinyJEPA:
    options = OmegaConf.to_container(cfg.model, resolve=True)
    return TinyJEPA(image_size=dm.hparams.image_size, patch_size=dm.hparams.patch_size, num_classes=dm.num_classes,
                    **options)


def chance_verdict(accuracy: float, n: int, chance: float, alpha: float = CHANCE_ALPHA) -> dict[str, Any]:
    """Is ``accuracy`` on ``n`` validation images above ``chance``? A one-sided binomial test.

    Under "no better than chance" the number of correct answers is Binomial(n, chance); the
    p-value is the probability of at least as many as observed. Returns ``above`` (p < alpha),
    ``p_value``, ``needed`` (the smallest accuracy that would pass at this n) and ``text``, the
    wording the summary prints.
    """
    if n <= 0 or accuracy != accuracy:  # no labeled validation image, or no accuracy at all
        return {"above": False, "p_value": None, "needed": None, "text": "no labeled validation images: not tested"}
    correct = round(accuracy * n)
    tail = binomial_tails(n, chance)
    p_value = tail[min(max(correct, 0), n)]
    passing = next((k for k in range(n + 1) if tail[k] <= alpha), None)
    needed = passing / n if passing is not None else None
    above = p_value < alpha
    evidence = f"n={n:,} validation images, one-sided binomial p {'< 0.001' if p_value < 0.001 else f'= {p_value:.3f}'}"
    if needed is None:  # even every answer right would not be evidence at this n
        text = (f"not tested, too few validation images (n={n:,}; even {n} of {n} right is not above chance "
                f"{chance:.3f} at p < {alpha})")
    elif above:
        text = f"above chance {chance:.3f} ({evidence})"
    else:
        text = f"not distinguishable from chance {chance:.3f} ({evidence}; above chance needs >= {needed:.3f})"
    return {"above": above, "p_value": p_value, "needed": needed, "text": text}


def binomial_tails(n: int, p: float) -> list[float]:
    """``P(X >= k)`` for ``k = 0..n`` with ``X ~ Binomial(n, p)``, exact to float precision.

    Summed from the top in log space (``lgamma``), so n = 50,000 (ImageNet's val set) costs
    milliseconds and no term underflows before it matters; no scipy needed.
    """
    if p <= 0 or p >= 1:
        return [1.0] + [float(p >= 1)] * n
    log_p, log_q = math.log(p), math.log1p(-p)
    log_terms = [math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * log_p + (n - k) * log_q
                 for k in range(n + 1)]
    tails, total = [0.0] * (n + 1), 0.0
    for k in range(n, -1, -1):
        total += math.exp(log_terms[k])
        tails[k] = min(total, 1.0)
    return tails


class PlainTrainingProgress(Callback):
    """Training and validation progress as plain lines on stderr (``progress.PlainProgress``:
    every 10 % of an epoch or 30 s, with the last loss), for logs where Lightning's bar would
    write carriage returns. ``jepa-fit`` uses it instead of the bar when stderr is not a terminal."""

    def __init__(self) -> None:
        self.lines: PlainProgress | None = None
        self.validation: PlainProgress | None = None

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        total = trainer.num_training_batches
        if trainer.max_steps is not None and trainer.max_steps >= 0:
            total = min(total, trainer.max_steps - trainer.global_step)
        self.lines = PlainProgress(None if total == float("inf") else int(total), f"epoch {trainer.current_epoch}",
                                   unit="steps")

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self.lines is not None:
            loss = trainer.callback_metrics.get("train/loss")
            if loss is not None:
                self.lines.set_postfix_str(f"loss {float(loss):.4f}")
            self.lines.update(1)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.lines is not None:
            self.lines.close()
            self.lines = None

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.is_global_zero and not trainer.sanity_checking:
            total = sum(trainer.num_val_batches)
            self.validation = PlainProgress(None if total == float("inf") else int(total), "validation",
                                            unit="batches")

    def on_validation_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        if self.validation is not None:
            self.validation.update(1)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.validation is not None:
            self.validation.close()
            self.validation = None


class FitSummary(Callback):
    """Measures images/s over the training steps, draws the first batch's masks
    (``masks.png``) and the loss / probe-accuracy curves (``training.png``), and writes
    ``summary.json`` into the run directory.

    ``started``: ``time.perf_counter()`` when the command began [None = when this object was
    made], for the wall time; ``mask``: the DataModule's mask generator, named in the masks
    picture's title.
    """

    def __init__(self, run_dir: Path, mean: Any = (0.0, 0.0, 0.0), std: Any = (1.0, 1.0, 1.0), patch_size: int = 16,
                 started: float | None = None, mask: Any = None):
        self.run_dir = Path(run_dir)
        self.mean, self.std, self.patch_size = mean, std, patch_size
        self.command_started = time.perf_counter() if started is None else started
        self.mask = mask
        self.images = 0
        self.steps = 0
        self.started: float | None = None
        self.elapsed = 0.0
        self.first_batch: Any = None
        self.probe_curve: list[tuple[int, float]] = []
        self.pictures: dict[str, Path] = {}
        self.notes: list[str] = []  # one line each under the summary (e.g. a picture not drawn)
        self.validation_images = 0
        self._counting = 0
        #: What stopped the run when it was not a limit (an interrupt names its signal here).
        self.stopped: str | None = None

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
                                                self.patch_size, self.run_dir / "masks.png",
                                                recipe=self.mask, title="first training batch")

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._counting = 0

    def on_validation_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        self._counting += int((batch["labels"] >= 0).sum())  # the probe scores labeled images only

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Every rank saw its shard: the accuracy (synced) is over all of them, so is the count.
        self.validation_images = int(trainer.strategy.reduce(torch.tensor(self._counting), reduce_op="sum"))
        # Not on_validation_epoch_end: callbacks run that hook before the module logs the metric.
        value = trainer.callback_metrics.get("val/probe_accuracy")
        if value is not None and not trainer.sanity_checking:
            self.probe_curve.append((trainer.global_step, float(value)))

    def plot(self, losses: list[float], chance: float | None = None) -> Path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator

        # Unlabeled images have no probe: the loss panel alone, not an empty probe panel.
        probed = chance is not None or bool(self.probe_curve)
        figure, axes = plt.subplots(1, 2 if probed else 1, figsize=(9 if probed else 4.5, 3.2), squeeze=False)
        left, right = axes[0][0], axes[0][-1]
        left.plot(range(1, len(losses) + 1), losses, lw=1, marker="o" if len(losses) < 20 else None)
        left.set(xlabel="step", ylabel="JEPA loss (smooth-L1)", yscale="log", title="training loss")
        last_step = max([len(losses)] + [step for step, _ in self.probe_curve])
        if self.probe_curve:
            steps, accuracy = zip(*self.probe_curve)
            right.plot(steps, accuracy, marker="o", label="probe accuracy")
        if chance is not None:
            right.axhline(chance, ls="--", color="tab:red", lw=1.5, label=f"chance {chance:.3f}")
        if probed:
            right.set(xlabel="step", ylabel="accuracy", title="online linear probe (val)", ylim=(0, 1))
            right.legend(loc="upper left", fontsize="small")
        for axis in {left, right}:  # whole steps from 0, also for a 3-step smoke run
            axis.set_xlim(0, max(1, last_step) * 1.05)
            axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        figure.tight_layout()
        try:
            return atomic_write(self.run_dir / "training.png", lambda handle: figure.savefig(handle, dpi=110, format="png"))
        finally:
            plt.close(figure)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.images += len(batch["labels"])
        self.steps += 1
        self.elapsed = time.perf_counter() - (self.started or time.perf_counter())

    def report(self, dm: Any, model: TinyJEPA, metrics: dict[str, float], trainer: Trainer | None = None) -> dict[str, Any]:
        accuracy = float(metrics.get("val/probe_accuracy", float("nan")))
        chance = 1.0 / dm.num_classes if dm.num_classes else None  # None: unlabeled images, no probe
        verdict = (chance_verdict(accuracy, self.validation_images, chance) if chance is not None
                   else {"above": False, "p_value": None, "text": "none (unlabeled images)"})
        checkpoint = self.checkpoint(trainer)
        limit = self.stopped if self.stopped else (ended_by(trainer) if trainer is not None else None)
        summary = {
            "dataset": dm.spec.name,
            "steps": self.steps,
            "images_per_second": self.images / self.elapsed if self.elapsed else 0.0,
            "first_loss": model.losses[0] if model.losses else None,
            "last_loss": model.losses[-1] if model.losses else None,
            "probe_accuracy": accuracy,
            "chance": chance,
            "validation_images": self.validation_images,
            "above_chance": verdict["above"],
            "p_value": verdict["p_value"],
            "checkpoint": checkpoint,
            "ended_by": limit,
            "run_dir": str(self.run_dir),
        }
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.pictures["training"] = self.plot(model.losses, chance)
        except ImportError:  # the pictures extra is not installed: the run itself is unaffected
            self.notes.append("no training.png: the curves need matplotlib (pip install 'jepa-datamodules[pictures]')")
        summary["wall_time_s"] = time.perf_counter() - self.command_started
        summary["pictures"] = {name: str(path) for name, path in self.pictures.items()}
        atomic_write_text(self.run_dir / "summary.json", json.dumps(summary, indent=1))
        loss = (f"{summary['first_loss']:.4f} -> {summary['last_loss']:.4f}" if model.losses else "n/a")
        probe = f"{accuracy:.3f}: {verdict['text']}" if chance is not None else verdict["text"]
        val = getattr(dm, "val_description", None)  # how val was made, where a dataset chooses (imagefolder)
        print(console_text(  # library text (val's description, notes) may hold marked settings
            f"\n== jepa-fit summary ==\n"
            f"dataset:        {summary['dataset']} ({dm.hparams.image_size}px, patch {dm.hparams.patch_size})\n"
            f"steps:          {self.steps}\n"
            + (f"ended by:       {limit}\n" if limit else "") +
            f"wall time:      {_duration(summary['wall_time_s'])}\n"
            f"images/s:       {summary['images_per_second']:.1f}\n"
            f"loss:           {loss}\n"
            f"probe accuracy: {probe}\n"
            f"checkpoint:     {checkpoint or self.no_checkpoint(trainer)}\n"
            f"run directory:  {self.run_dir}\n"
            + (f"val:            {val}\n" if val else "")
            + "".join(f"picture:        {path}\n" for path in self.pictures.values())
            + "".join(f"note:           {note}\n" for note in self.notes)
        ))
        return summary

    @staticmethod
    def no_checkpoint(trainer: Trainer | None) -> str:
        """Why no checkpoint was saved, as it happened."""
        if getattr(trainer, "checkpoint_callback", None) is None:
            return "none saved (checkpointing is off: trainer.enable_checkpointing=false)"
        return "none saved (checkpointing is on, but the run ended before a checkpoint was due)"

    @staticmethod
    def checkpoint(trainer: Trainer | None) -> str | None:
        """The checkpoint to continue from: the one an interrupt saved, else the one this run saved
        last; None when checkpointing is off."""
        from .interrupt import SaveOnInterrupt

        for saver in getattr(trainer, "callbacks", []):
            if isinstance(saver, SaveOnInterrupt) and saver.checkpoint:
                return saver.checkpoint
        callback = getattr(trainer, "checkpoint_callback", None)
        if callback is None:
            return None
        return callback.last_model_path or callback.best_model_path or None


def _duration(seconds: float) -> str:
    minutes, rest = divmod(seconds, 60)
    return f"{seconds:.1f} s" if minutes == 0 else f"{int(minutes)} min {rest:.0f} s"


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


def step_limit_options(cfg: DictConfig, typed: list[str] | None) -> dict[str, Any]:
    """Trainer options so that a run given ``trainer.max_steps`` is not cut short by the trainer
    file's own ``max_epochs`` (``cpu``: 1): the epoch limit then goes, unless the user typed
    ``trainer.max_epochs`` too (then both limits hold). ``typed``: the command-line overrides."""
    steps = cfg.trainer.get("max_steps")
    keys = {typed_key(word) for word in typed or ()}
    if not isinstance(steps, int) or steps < 0 or typed is None or "trainer.max_epochs" in keys:
        return {}  # no step limit (a non-number is build_trainer's to refuse)
    return {"max_epochs": -1}


def ended_by(trainer: Trainer) -> str | None:
    """The limit that ended the run (``trainer.max_steps=100``), or None when none did."""
    if trainer.max_steps is not None and trainer.max_steps >= 0 and trainer.global_step >= trainer.max_steps:
        return f"trainer.max_steps={trainer.max_steps}"
    if trainer.max_epochs is not None and trainer.max_epochs >= 0 and trainer.current_epoch >= trainer.max_epochs:
        return f"trainer.max_epochs={trainer.max_epochs}"
    return None


def already_complete(trainer: Trainer, ckpt_path: str) -> str:
    """What to say when a resumed run had nothing left to train: the limit reached, and how to extend it."""
    step, epoch = trainer.global_step, trainer.current_epoch
    limit = ended_by(trainer)
    if limit is not None and limit.startswith("trainer.max_steps"):
        extend = f"trainer.max_steps={max(2 * step, step + 1)}"
    else:
        extend = f"trainer.max_epochs={epoch + 1}"
    reached = f"{limit} is reached" if limit else "no limit is left to train to"
    return (f"Nothing to train: the run in {ckpt_path} is already complete (step {step}, epoch {epoch}; "
            f"{reached}). To extend it, run the same command with a higher limit, e.g. "
            f"{extend} ckpt_path={ckpt_path}")
