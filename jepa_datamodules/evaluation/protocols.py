"""``EvalDataModule``: the data side of measuring frozen features, over any DataModule.

Protocols (``PROTOCOLS``):

* ``"knn"``: the labelled train split (the bank) and the evaluation split, both with the
  DataModule's own evaluation view (short side resized to ``image_size / eval_crop_fraction``,
  centre crop), in dataset order.
* ``"linear"``: the labelled train split with the light augmentation of linear probing
  (random resized crop, area ``linear_crop_scale`` [(0.08, 1.0)], horizontal flip; seeded
  per epoch and item), shuffled per epoch; the evaluation split as for ``"knn"``.

Both: no masks; every item exactly once per epoch, on one process or split over DDP ranks
(uneven shards, no padding duplicates, no dropped last batch: ``sampling.py``); only
labelled items (STL-10's unlabelled images, label -1, never enter either split). Batches are
``{"images", "labels", "indices"}``: uint8 ``(B, 3, H, W)`` images, normalized with the
dataset's mean and std once they reach the device (``on_after_batch_transfer``, or
``adapters.to_device(batch, eval_dm, device)`` outside Lightning), int64 labels, and int64
positions in the split (``train_source`` / ``eval_source``).

``shots=N`` keeps exactly N labelled train images per class (``shots.py``); ``subset=``
``"1percent"`` / ``"10percent"`` keeps SimCLR's ImageNet lists (``subsets.py``). The
evaluation split is always whole.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from lightning import LightningDataModule

from ..choices import check_choice
from ..datamodule import JEPADataModule
from ..formats.base import Source, SubsetSource
from ..pipeline.batching import ViewDataset
from ..pipeline.sampling import EpochDataLoader
from ..pipeline.transforms import TrainView, check_crop_scale, normalize
from .sampling import EvalBatchSampler
from .shots import check_shots, few_shot_indices
from .subsets import check_subset_dataset, subset_indices
from ..errors import ConfigError, setting

PROTOCOLS = ("knn", "linear")
SPLITS = ("train", "eval")


class EvalCollate:
    """A ``ViewDataset`` batch reduced to ``{"images", "labels", "indices"}``."""

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {"images": batch["images"], "labels": batch["labels"], "indices": batch["indices"]}


class EvalDataModule(LightningDataModule):
    """Labelled train split + evaluation split of ``datamodule`` for a frozen-feature protocol.

    ``train_dataloader()``: the labelled train split; ``val_dataloader()`` and
    ``test_dataloader()``: the evaluation split (the DataModule's ``test``, i.e. the official
    test / val split). See the module docstring for what each protocol guarantees.
    """

    def __init__(self, datamodule: JEPADataModule, protocol: str = "knn", shots: int | None = None,
                 subset: str | None = None, seed: int = 0, batch_size: int | None = None,
                 num_workers: int | None = None, linear_crop_scale: Sequence[float] = (0.08, 1.0)):
        """Nothing is read until ``setup``.

        Args:
            datamodule: any of the package's DataModules (its dataset, image size, eval view
                and mean / std are used; its masks and training augmentation are not).
            protocol: ``"knn"`` or ``"linear"`` (see the module docstring).
            shots: exactly this many labelled train images per class; None keeps them all.
            subset: ``"1percent"`` or ``"10percent"``: SimCLR's ImageNet-1k label subsets
                (ImageNet-100: their images of its 100 classes); None keeps them all.
            seed: seeds the shots' pick and the linear protocol's augmentation and order.
            batch_size: per device; None takes the DataModule's.
            num_workers: loader processes; None takes the DataModule's.
            linear_crop_scale: random-resized-crop area range of the linear protocol.
        """
        super().__init__()
        if not isinstance(datamodule, JEPADataModule):
            raise ConfigError(f"datamodule={type(datamodule).__name__} is not one of this package's DataModules; "
                             "allowed is a JEPADataModule such as CIFAR10DataModule(...) or SyntheticDataModule(...).")
        check_choice("protocol", protocol, PROTOCOLS)
        self.shots = check_shots(shots)
        if subset is not None:
            check_subset_dataset(subset, datamodule.spec.name)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ConfigError(f"seed={seed!r} is invalid; allowed is an integer (e.g. seed=0).", setting="seed",
                              allowed="an integer")
        self.datamodule = datamodule
        self.protocol = protocol
        self.subset = subset
        self.seed = int(seed)
        self.batch_size = int(batch_size if batch_size is not None else datamodule.hparams.batch_size)
        if self.batch_size <= 0:  # not check_positive: its mark would name the DataModule's batch_size
            raise ConfigError(f"batch_size={self.batch_size} is invalid; allowed is a positive integer.",
                              setting="batch_size", allowed="a positive integer")
        self.num_workers = int(num_workers if num_workers is not None else datamodule.hparams.num_workers)
        if self.num_workers < 0:
            raise ConfigError(f"num_workers={self.num_workers} is invalid; allowed is 0 or more.", setting="num_workers",
                              allowed="0 or more")
        hp = datamodule.hparams
        self.train_view = (TrainView(hp.image_size, check_crop_scale(linear_crop_scale), hp.crop_ratio, hflip=True)
                           if protocol == "linear" else datamodule.eval_view)
        self.eval_view = datamodule.eval_view
        self.train_source: Source | None = None
        self.eval_source: Source | None = None

    # ------------------------------------------------------------------ the splits
    @property
    def num_classes(self) -> int:
        return self.datamodule.num_classes

    @property
    def classes(self) -> list[str] | None:
        return self.datamodule.classes

    def prepare_data(self) -> None:
        self.datamodule.prepare_data()

    def setup(self, stage: str | None = None) -> None:
        if self.train_source is not None:
            return
        dm = self.datamodule
        dm.setup(stage)
        train, evaluation = dm.datasets["train"].source, dm.datasets["test"].source
        name = dm.spec.name
        if self.subset is not None:  # the lists name files of the whole train split, unlabelled rows excluded anyway
            train = SubsetSource(train, subset_indices(self.subset, train, name, dm.classes if name != "imagenet" else None))
        train = _labelled(train)
        if self.shots is not None:
            train = SubsetSource(train, few_shot_indices(train.labels, self.shots, self.seed, dm.num_classes,
                                                         f"{name} train"))
        evaluation = _labelled(evaluation)
        for what, source in (("labelled train split", train), ("evaluation split", evaluation)):
            if len(source) == 0:
                raise ConfigError(f"{name} has no labelled images in its {what}, so frozen features cannot be "
                                  "evaluated on it; allowed are datasets with labels (for your own folder: "
                                  f"{setting('labels', 'folders')}).", setting="labels")
        self.train_source, self.eval_source = train, evaluation

    def describe(self) -> dict[str, Any]:
        """Protocol, split sizes and selection, for summaries."""
        self.setup()
        return {"dataset": self.datamodule.spec.name, "protocol": self.protocol, "shots": self.shots,
                "subset": self.subset, "seed": self.seed, "train": len(self.train_source),
                "eval": len(self.eval_source), "classes": self.num_classes}

    # ------------------------------------------------------------------ loaders
    def _world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 1, 0
        return trainer.world_size, trainer.global_rank

    def loader(self, split: str, world: int | None = None, rank: int | None = None) -> EpochDataLoader:
        """The loader of ``split`` (``"train"`` or ``"eval"``) for ``rank`` of ``world``
        [default: the attached Trainer's, else one process]."""
        check_choice("split", split, SPLITS)
        self.setup()
        if world is None or rank is None:
            world, rank = self._world()
        train = split == "train"
        source = self.train_source if train else self.eval_source
        view = self.train_view if train else self.eval_view
        shuffle = train and self.protocol == "linear"
        sampler = EvalBatchSampler(len(source), self.batch_size, shuffle=shuffle, seed=self.seed,
                                   num_replicas=world, rank=rank)
        workers = self.num_workers
        hp = self.datamodule.hparams
        return EpochDataLoader(
            ViewDataset(source, view, self.seed), batch_size=None, sampler=sampler, collate_fn=EvalCollate(),
            num_workers=workers, persistent_workers=False, prefetch_factor=(hp.prefetch_factor or 2) if workers else None,
            pin_memory=torch.cuda.is_available() if hp.pin_memory is None else hp.pin_memory,
        )

    def train_dataloader(self) -> EpochDataLoader:
        return self.loader("train")

    def val_dataloader(self) -> EpochDataLoader:
        return self.loader("eval")

    def test_dataloader(self) -> EpochDataLoader:
        return self.loader("eval")

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        if batch["images"].dtype == torch.uint8:
            spec = self.datamodule.spec
            batch["images"] = normalize(batch["images"], spec.mean, spec.std)
        return batch


def _labelled(source: Source) -> Source:
    """``source`` without its unlabelled items (label -1): STL-10's unlabelled images, unlabelled folders."""
    keep = np.flatnonzero(np.asarray(source.labels) >= 0)
    return source if len(keep) == len(source) else SubsetSource(source, keep)
