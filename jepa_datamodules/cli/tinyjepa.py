"""A small I-JEPA-style model whose only job is to prove the data path trains.

Context encoder (a narrow ViT) sees the context patches; a narrower predictor, given the
context tokens and the positions of each target block, predicts the target encoder's
embeddings of those patches; the target encoder is an EMA copy of the context encoder and
sees the whole image. Loss: smooth-L1 on layer-normed target embeddings (as in I-JEPA).
An online linear probe on detached target-encoder features (mean and standard deviation
over patches) reports how linearly separable they are (torchmetrics accuracy on val).
"""

from __future__ import annotations

import copy
import math
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from lightning import LightningModule
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from ..notices import Notice
from ..errors import ConfigError
from ..pipeline.masks import target_levels


def sincos_position_embedding(grid: tuple[int, int], dim: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embedding, ``(rows * cols, dim)``."""
    rows, cols = grid
    quarter = dim // 4
    freqs = 1.0 / (10000 ** (torch.arange(quarter, dtype=torch.float32) / quarter))
    ys, xs = torch.meshgrid(torch.arange(rows, dtype=torch.float32), torch.arange(cols, dtype=torch.float32), indexing="ij")
    parts = []
    for coord in (ys.flatten(), xs.flatten()):
        angles = coord[:, None] * freqs[None]
        parts += [angles.sin(), angles.cos()]
    embedding = torch.cat(parts, dim=1)
    return F.pad(embedding, (0, dim - embedding.shape[1]))


def _blocks(dim: int, depth: int, heads: int) -> nn.ModuleList:
    return nn.ModuleList(
        nn.TransformerEncoderLayer(dim, heads, dim * 4, dropout=0.0, activation="gelu", batch_first=True, norm_first=True)
        for _ in range(depth)
    )


def gather_tokens(tokens: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """``tokens[b, indices[b]]`` for a ``(B, N, D)`` tensor and ``(B, K)`` indices."""
    return torch.gather(tokens, 1, indices.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))


def gather_blocks(tokens: torch.Tensor, blocks: list[torch.Tensor]) -> torch.Tensor:
    """Each block's tokens, concatenated along the batch: ``(len(blocks) * B, K, D)``.

    The I-JEPA convention (its ``apply_masks``): block ``i`` of sample ``b`` lands at row
    ``i * B + b``. It needs one K for all ``blocks``, which the mask generators guarantee
    (one block size per batch, per level for hierarchical masks).
    """
    return torch.cat([gather_tokens(tokens, block) for block in blocks], dim=0)


def repeat_batches(x: torch.Tensor, batch: int, repeat: int) -> torch.Tensor:
    """Repeat each consecutive group of ``batch`` rows ``repeat`` times, group by group
    (I-JEPA's ``repeat_interleave_batch``): ``[g0, g1]`` -> ``[g0, g0, g1, g1]`` for 2."""
    groups = x.reshape(-1, batch, *x.shape[1:])
    return groups.repeat_interleave(repeat, dim=0).reshape(-1, *x.shape[1:])


class PatchEncoder(nn.Module):
    def __init__(self, image_size: int, patch_size: int, dim: int, depth: int, heads: int):
        super().__init__()
        self.grid = (image_size // patch_size, image_size // patch_size)
        self.patch_embed = nn.Conv2d(3, dim, patch_size, patch_size)
        self.register_buffer("position", sincos_position_embedding(self.grid, dim), persistent=False)
        self.blocks = _blocks(dim, depth, heads)
        self.norm = nn.LayerNorm(dim)

    def forward(self, images: torch.Tensor, keep: list[torch.Tensor] | None = None) -> torch.Tensor:
        """All patches, or those of each ``keep`` block concatenated along the batch."""
        tokens = self.patch_embed(images).flatten(2).transpose(1, 2) + self.position
        if keep is not None:
            tokens = gather_blocks(tokens, keep)
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)


class Predictor(nn.Module):
    def __init__(self, grid: tuple[int, int], dim: int, predictor_dim: int, depth: int, heads: int):
        super().__init__()
        self.embed = nn.Linear(dim, predictor_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, predictor_dim))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.register_buffer("position", sincos_position_embedding(grid, predictor_dim), persistent=False)
        self.blocks = _blocks(predictor_dim, depth, heads)
        self.norm = nn.LayerNorm(predictor_dim)
        self.project = nn.Linear(predictor_dim, dim)

    def forward(self, context: torch.Tensor, context_masks: list[torch.Tensor],
                target_masks: list[torch.Tensor]) -> torch.Tensor:
        """Predictions for every (target block, context block) pair, as I-JEPA orders them.

        ``context`` is the encoder's ``(len(context_masks) * B, K_c, D)`` output; the result is
        ``(len(target_masks) * len(context_masks) * B, K_t, D)``, row ``(t * C + c) * B + b``.
        """
        batch = context_masks[0].shape[0]
        position = self.position.unsqueeze(0).expand(batch, -1, -1)
        tokens = self.embed(context) + gather_blocks(position, context_masks)
        tokens = tokens.repeat(len(target_masks), 1, 1)
        queries = repeat_batches(gather_blocks(position, target_masks), batch, len(context_masks))
        tokens = torch.cat([tokens, self.mask_token + queries], dim=1)
        for block in self.blocks:
            tokens = block(tokens)
        return self.project(self.norm(tokens[:, -queries.shape[1]:]))


def pooled_features(tokens: torch.Tensor) -> torch.Tensor:
    """Per-image features for the probe: mean and standard deviation over patch tokens.

    Mean pooling alone (I-JEPA's linear-probe convention) leaves a probe trained online
    for a few hundred steps near chance on the synthetic shapes even with a good encoder;
    the spread across patches (how much the image varies: edges, stripes, a small or large
    shape) is what separates them: with it the demo's probe more than doubled its accuracy
    when this was chosen (compare with ``pooled_features = lambda t: t.mean(1)``).
    """
    return torch.cat([tokens.mean(1), tokens.std(1)], dim=1)


class TinyJEPA(LightningModule):
    """Defaults: embed_dim 192, depth 4, heads 3 (ViT-tiny width, a third of its depth);
    predictor 96 wide, 2 deep; AdamW lr 1e-3 with 10% warm-up then cosine, weight decay
    0.05; EMA momentum 0.996 -> 1.0 over training.

    The learning-rate and EMA schedules are functions of the global step and the planned total
    (``schedule_steps``; None: the Trainer's ``estimated_stepping_batches``, the whole run's
    steps under its limits). The plan is saved in every checkpoint, so a run interrupted and
    resumed with the same limits follows the uninterrupted run's schedules step for step; a
    resume whose limits plan another total uses the new plan and says so.
    """

    def __init__(self, image_size: int, patch_size: int, num_classes: int, embed_dim: int = 192, depth: int = 4,
                 num_heads: int = 3, predictor_dim: int = 96, predictor_depth: int = 2, lr: float = 1e-3,
                 weight_decay: float = 0.05, ema: tuple[float, float] = (0.996, 1.0), probe_lr: float = 1e-2,
                 schedule_steps: int | None = None):
        super().__init__()
        self.save_hyperparameters()
        #: The total steps the schedules stretch over (set when training starts).
        self.planned_steps: int | None = None
        self._checkpoint_plan: int | None = None
        self.encoder = PatchEncoder(image_size, patch_size, embed_dim, depth, num_heads)
        self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        self.predictor = Predictor(self.encoder.grid, embed_dim, predictor_dim, predictor_depth, num_heads)
        # Normalize features without learned scale before the linear layer, as MAE's linear
        # probe does (BatchNorm1d, affine=False): the probe then learns at one rate whatever
        # the scale the encoder's features drift to.
        # Unlabeled data (num_classes 0, every label -1) gets no probe metric; the layers stay
        # (never trained: no label reaches them) so checkpoints keep one shape.
        self.has_probe = num_classes >= 2
        self.probe = nn.Sequential(nn.BatchNorm1d(2 * embed_dim, affine=False, eps=1e-6),
                                   nn.Linear(2 * embed_dim, max(2, num_classes)))
        self.probe_accuracy = MulticlassAccuracy(num_classes=max(2, num_classes), average="micro")
        self.losses: list[float] = []

    def _target_features(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            tokens = self.target_encoder(images)
        return F.layer_norm(tokens, tokens.shape[-1:])

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        if "context_masks" not in batch:
            raise ConfigError("TinyJEPA needs masked batches; choose mask=multiblock or mask=hierarchical, not mask=none.")
        # I-JEPA's training step, one level of target blocks at a time: gather each mask and
        # concatenate along the batch, repeat the targets once per context block.
        images = batch["images"]
        targets = self._target_features(images)
        context_masks = batch["context_masks"]
        context = self.encoder(images, keep=context_masks)
        levels = target_levels(batch["target_masks"])
        loss = images.new_zeros(())
        for target_masks in levels:
            prediction = self.predictor(context, context_masks, target_masks)
            expected = repeat_batches(gather_blocks(targets, target_masks), len(images), len(context_masks))
            loss = loss + F.smooth_l1_loss(prediction, expected) * len(target_masks)
        loss = loss / sum(len(level) for level in levels)  # every block weighs the same
        probe_loss = self._probe_loss(pooled_features(targets), batch["labels"])
        self.losses.append(float(loss.detach()))
        self.log("train/loss", loss, prog_bar=True, batch_size=len(images))
        self.log("train/probe_loss", probe_loss, batch_size=len(images))
        return loss + probe_loss

    def _probe_loss(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        labeled = labels >= 0
        if not labeled.any():
            return features.new_zeros(())
        return F.cross_entropy(self.probe(features[labeled].detach()), labels[labeled])

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        labels = batch["labels"]
        labeled = labels >= 0
        if labeled.any():
            logits = self.probe(pooled_features(self._target_features(batch["images"])))
            self.probe_accuracy.update(logits[labeled], labels[labeled])

    def on_validation_epoch_end(self) -> None:
        if not self.has_probe:
            return
        self.log("val/probe_accuracy", self.probe_accuracy.compute(), prog_bar=True, sync_dist=True)
        self.probe_accuracy.reset()

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        # EMA update of the target encoder right after the optimizer's (as I-JEPA does), momentum
        # annealed towards 1. Here rather than in on_train_batch_end, which runs after the
        # callbacks': a checkpoint saved at a batch end then holds the updated target encoder.
        momentum = self.ema_momentum(self.global_step + 1)  # the step being completed
        with torch.no_grad():
            for target, online in zip(self.target_encoder.parameters(), self.encoder.parameters()):
                target.mul_(momentum).add_(online.detach(), alpha=1 - momentum)

    def ema_momentum(self, step: int) -> float:
        """The EMA momentum after ``step`` optimizer steps: cosine from ``ema[0]`` to ``ema[1]`` over the plan."""
        start, end = self.hparams.ema
        return end - (end - start) * (math.cos(math.pi * min(1.0, step / self.plan())) + 1) / 2

    def lr_factor(self, step: int) -> float:
        """The backbone's learning rate at ``step`` as a fraction of ``lr``: 10 % linear warm-up, then cosine to 0."""
        total = self.plan()
        warmup = max(1, total // 10)
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

    def plan(self) -> int:
        """The planned total steps, fixed once per fit (see the class docstring)."""
        if self.planned_steps is None:
            wanted = self.hparams.schedule_steps or max(1, int(min(self.trainer.estimated_stepping_batches, 2**62)))
            if self._checkpoint_plan is not None and wanted != self._checkpoint_plan:
                warnings.warn(f"The checkpoint's learning-rate and EMA schedules were planned over "
                              f"{self._checkpoint_plan} steps and this run's limits plan {wanted}: they continue from "
                              f"step {self.global_step} over {wanted}, so the run will not match an uninterrupted "
                              f"one; add model.schedule_steps={self._checkpoint_plan} to keep the checkpoint's plan.",
                              Notice, stacklevel=2)
            self.planned_steps = int(wanted)
        return self.planned_steps

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["tinyjepa_schedule"] = {"planned_steps": self.plan()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._checkpoint_plan = checkpoint.get("tinyjepa_schedule", {}).get("planned_steps")
        self.planned_steps = None  # planned again when training starts, against this run's limits

    def configure_optimizers(self) -> Any:
        backbone = [p for n, p in self.named_parameters() if p.requires_grad and not n.startswith("probe.")]
        optimizer = torch.optim.AdamW(
            [{"params": backbone, "lr": self.hparams.lr, "weight_decay": self.hparams.weight_decay},
             {"params": self.probe.parameters(), "lr": self.hparams.probe_lr, "weight_decay": 0.0}])
        self.planned_steps = None
        self.plan()
        # LambdaLR counts its own steps, which resume with the checkpoint: the global step.
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, [self.lr_factor, lambda step: 1.0])
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
