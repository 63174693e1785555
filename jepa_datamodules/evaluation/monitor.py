"""``KNNMonitor``: weighted-kNN top-1 of the frozen features every N epochs of pre-training.

The usual quick signal of SSL runs (solo-learn's and lightly's kNN monitors, DINO's
``eval_knn.py`` settings): after every ``every_n_epochs`` training epochs the model's
features of the labelled train split (the bank) and of the evaluation split are extracted
with an ``EvalDataModule``'s loaders (each rank its uneven shard, gathered: every image
counted once), classified by weighted kNN and logged as ``knn/top1``.
"""

from __future__ import annotations

from typing import Any

import torch
from lightning import Callback, LightningModule, Trainer

from .features import FeatureHook, extract, gather
from .metrics import KNN_K, KNN_TEMPERATURE, check_knn_settings, knn_predict
from .protocols import EvalDataModule
from ..errors import ConfigError


def forward_features(model: Any, images: torch.Tensor) -> torch.Tensor:
    """The default hook: the model's own ``forward_features(images)`` method."""
    method = getattr(model, "forward_features", None)
    if method is None:
        raise ConfigError(f"{type(model).__name__} has no forward_features(images) method, so its features are unknown; "
                         "pass features=<a callable (model, images) -> (batch, dim) features> (for the tiny JEPA: "
                         "jepa_datamodules.cli.evaluate.tinyjepa_features).")
    return method(images)


class KNNMonitor(Callback):
    """Logs ``knn/top1`` (and keeps ``history``: ``[(epoch, top1), ...]``) during ``fit``.

    Args:
        eval_datamodule: an ``EvalDataModule`` (protocol ``"knn"`` is the usual one).
        every_n_epochs: run after every this many training epochs [1].
        k: neighbours [20]; temperature: vote temperature [0.07] (DINO's defaults).
        features: ``features(model, images) -> (batch, dim)``; None calls the model's
            ``forward_features(images)``.
        standardize: standardize features with the bank's statistics first [True]
            (``metrics.knn_predict``; False: DINO's exact kNN).
    """

    def __init__(self, eval_datamodule: EvalDataModule, every_n_epochs: int = 1, k: int = KNN_K,
                 temperature: float = KNN_TEMPERATURE, features: FeatureHook | None = None, standardize: bool = True):
        if not isinstance(eval_datamodule, EvalDataModule):
            raise ConfigError(f"eval_datamodule={type(eval_datamodule).__name__} is invalid; allowed is an "
                             "EvalDataModule(datamodule, protocol='knn').")
        if isinstance(every_n_epochs, bool) or not isinstance(every_n_epochs, int) or every_n_epochs <= 0:
            raise ConfigError(f"every_n_epochs={every_n_epochs!r} is invalid; allowed is a positive whole number.")
        check_knn_settings(k, temperature)
        self.eval_datamodule = eval_datamodule
        self.every_n_epochs = every_n_epochs
        self.k, self.temperature, self.standardize = k, temperature, standardize
        self.features = features or forward_features
        self.history: list[tuple[int, float]] = []

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self.eval_datamodule.setup(stage)  # every rank: the sources (prepare_data ran on the DataModule)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        top1 = self.evaluate(pl_module, trainer.world_size, trainer.global_rank)
        self.history.append((trainer.current_epoch, top1))
        # Every rank computed it from the same gathered features: the mean over ranks is that value.
        pl_module.log("knn/top1", top1, prog_bar=True, sync_dist=True)

    def evaluate(self, model: LightningModule, world: int = 1, rank: int = 0) -> float:
        """kNN top-1 of ``model``'s features now (model in eval mode meanwhile)."""
        dm = self.eval_datamodule
        was_training = model.training
        model.eval()
        try:
            splits = [gather(extract(model, self.features, dm.loader(split, world, rank), lambda b: dm.on_after_batch_transfer(b, 0),
                                     model.device), model.device) for split in ("train", "eval")]
        finally:
            model.train(was_training)
        bank, queries = splits
        predictions = knn_predict(bank.features.to(model.device), bank.labels, queries.features.to(model.device),
                                  dm.num_classes, self.k, self.temperature, self.standardize)
        return float((predictions.cpu() == queries.labels).float().mean())
