"""``JEPADataModule``: the Lightning glue every dataset's DataModule (``datasets.py``) extends.

A dataset is data: its spec (``catalog.py``) and, where it needs code, its format module
(``formats/``). ``prepare_data`` runs the one preparation pipeline
(``preparation.py``: fetch or generate, verify, stamp, under an inter-process lock) and
assigns no state; ``setup`` is idempotent.

Splits: ``train`` is the dataset's pre-training split (STL-10: ``train+unlabeled``).
``val`` is the official test / val split by default (``val_fraction=0``: the usual
convention for monitoring SSL runs with an online probe); with ``val_fraction > 0`` it is
a seeded carve-out of the training split and ``test`` stays the official one.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from lightning import LightningDataModule

from ..catalog import DatasetSpec
from ..choices import check_choice, check_positive
from ..notices import Notice
from ..formats import Dataset, open_dataset
from ..formats.base import Source, SubsetSource, block_ids, check_labels, reserve_blocks
from ..pipeline.batching import JEPACollate, ViewDataset
from ..pipeline.device_views import DeviceViews
from ..pipeline.masks import MaskGenerator
from ..pipeline.sampling import EpochBatchSampler, EpochDataLoader
from ..pipeline.transforms import EvalView, TrainView, check_crop_scale, normalize
from ..preparation import FetchSettings, check, prepare, prepare_action
from ..storage.verify import VerifyReport
from ..streaming import DEFAULT_CACHE_BYTES, open_input
from ..errors import ConfigError, setting
from .settings import DEFAULT_MASK, SHUFFLES, VIEWS_ON, check_seed, fitted_workers, plain


class JEPADataModule(LightningDataModule):
    """Masked, augmented JEPA batches for the dataset named by ``spec_name``.

    Every constructor argument is documented on ``__init__`` (``help(CIFAR10DataModule)``,
    LightningCLI's ``--data.help``).

    LitData from Hydra: ``jepa-fit data=cifar10 data.format=litdata data.input=s3://bucket/cifar10``
    ``+data.storage_options.endpoint_url=http://127.0.0.1:9000``. Everything else (views,
    masks, batch format, DDP sharding, resume) is the same in both formats.

    Distributed training: each rank reads a disjoint shard of a per-epoch permutation,
    every rank gets the same number of batches, and masks and augmentations are seeded
    per rank (see ``pipeline/sampling.py``). ``prepare_data`` runs once per node under a file lock.

    Resuming: ``state_dict()`` (saved in every Lightning checkpoint) holds the epoch and
    the next batch of the training stream, recorded when a batch reaches the model (loader
    workers run ahead). ``Trainer.fit(ckpt_path=...)`` restores it and training continues
    with exactly the batches, masks and augmentations the uninterrupted run would have
    seen: every random draw is a function of (seed, epoch, rank, batch or sample index),
    so the position is all the state there is. Same world size and batch size required: another
    is refused in one sentence naming both values.
    """

    #: The catalog dataset this DataModule reads; set by each alias.
    spec_name: str = ""
    #: The dataset's own options (CIFAR-100's ``label_type``, ...), set by an alias's ``__init__``
    #: from its extra arguments before it calls this one; its format module takes them.
    format_options: dict[str, Any] = {}

    def __init__(
        self,
        data_dir: str | Path = "data",
        batch_size: int = 128,
        num_workers: int | None = None,
        pin_memory: bool | None = None,
        persistent_workers: bool | None = None,
        prefetch_factor: int | None = None,
        drop_last: bool = True,
        image_size: int | None = None,
        patch_size: int | None = None,
        crop_scale: Sequence[float] = (0.3, 1.0),
        crop_ratio: Sequence[float] = (3 / 4, 4 / 3),
        hflip: bool = True,
        color_jitter: float = 0.0,
        eval_crop_fraction: float = 0.875,
        normalize_on_device: bool = True,
        views_on: str = "auto",
        val_fraction: float = 0.0,
        seed: int = 0,
        mask: MaskGenerator | None = DEFAULT_MASK,
        download: bool = True,
        mirrors: Sequence[str] = (),
        force: bool = False,
        keep_archives: bool = True,
        retries: int = 4,
        timeout: float = 30.0,
        progress: bool | None = None,
        global_batch_size: int | None = None,
        format: str = "files",
        input: str | None = None,
        storage_options: dict | None = None,
        stream_cache_dir: str | None = None,
        stream_cache_bytes: int | str = DEFAULT_CACHE_BYTES,
        shuffle: str = "auto",
        shuffle_window: int = 8,
    ):
        """Configure the DataModule; nothing is read or downloaded until ``prepare_data`` / ``setup``.

        Args:
            data_dir: root of all datasets; this one lives in ``<data_dir>/<name>``.
            batch_size: batch size per device (per DDP rank); the global batch is
                ``batch_size * world_size``.
            num_workers: loader processes; 0 loads in the main process; None (the default): as
                many as the CPUs this process may use, at most ``DEFAULT_MAX_WORKERS`` [8].
            pin_memory: pin batches in page-locked memory; None pins only when CUDA is present.
            persistent_workers: keep loader processes between epochs; None keeps them when
                ``num_workers > 0``.
            prefetch_factor: batches in flight per worker; None means 2 when ``num_workers > 0``.
            drop_last: drop the incomplete last training batch (val and test keep it).
            image_size: side of the output views in pixels; None takes the dataset's default
                (``jepa-datasets`` lists them). Must be a multiple of ``patch_size``.
            patch_size: ViT patch side in pixels; None takes the dataset's default. The mask
                grid is ``image_size // patch_size`` on each side.
            crop_scale: random-resized-crop area range, fractions of the image.
            crop_ratio: random-resized-crop aspect (width / height) range.
            hflip: random horizontal flips for training views.
            color_jitter: colour-jitter strength; 0 turns it off.
            eval_crop_fraction: centre-crop fraction for val / test views (short side resized to
                ``image_size / eval_crop_fraction``, then a centre crop of ``image_size``).
            normalize_on_device: with views built in the workers, the loader returns uint8
                images and the DataModule normalizes them on the training device
                (``on_after_batch_transfer``, which only Lightning calls; see
                ``adapters.to_device`` outside Lightning); False normalizes to float32 in the
                loader workers. Device-built views are always normalized on the device.
            views_on: where the views (crop, resize, flip, jitter, normalize) are built.
                ``"workers"``: in the loader workers, per sample. ``"device"``: the workers
                send native-resolution uint8 pixels (array datasets) or the encoded files (file
                datasets) plus each sample's view parameters, and ``on_after_batch_transfer``
                decodes (nvJPEG on a GPU) and builds the views of the whole batch on the
                training device (see ``pipeline/device_views.py``); same crops, same batch format.
                ``"auto"`` (default): ``"device"`` when the Trainer's device is CUDA, else
                ``"workers"`` (no Trainer: ``"workers"``); on a CPU Trainer it also normalizes
                in the workers, where it costs the main process nothing.
            val_fraction: share of train carved out as a seeded val split; 0 uses the official
                test / val split as ``val``.
            seed: an integer that drives the split, the shuffles, the augmentations and the masks.
            mask: a mask generator (``MultiBlockMaskGenerator``, ``HierarchicalMaskGenerator``,
                ``NoMaskGenerator`` or any ``MaskGenerator`` subclass); default: the I-JEPA
                multi-block recipe. None (or ``NoMaskGenerator()``): batches without masks.
            download: fetch missing archives; False never touches the network.
            mirrors: base URLs (or local folders) tried, in order, before the upstream URLs.
            force: fetch and extract again even if the dataset is verified.
            keep_archives: keep the downloaded archives after extracting them.
            retries: retries per URL after the first attempt, resuming the partial file.
            timeout: socket timeout in seconds, for connecting and for each read.
            progress: progress bars; None shows them only on a terminal.
            global_batch_size: total batch over all devices instead of ``batch_size``, split
                evenly; must be a multiple of the world size. None uses ``batch_size``.
            format: ``"files"`` reads the dataset's own files under ``data_dir``;
                ``"litdata"`` reads LitData chunks written by ``streaming.convert_to_litdata``
                (the console's ``jepa-prepare data=<name> format=litdata output=<where>``) from ``input``.
            input: the folder or URL (``s3://bucket/prefix``) given as ``output`` to that
                conversion; only with ``format="litdata"``.
            storage_options: LitData's connection options for a remote ``input`` (S3: boto3
                client arguments, e.g. ``{"endpoint_url": "http://minio:9000"}``); None uses
                boto3's defaults and the ``AWS_*`` environment variables.
            stream_cache_dir: the local folder where whole chunks of a remote ``input`` are kept
                while they are read (shared by the processes of one machine); None is
                ``$XDG_CACHE_HOME/jepa_datamodules/litdata/<input>``.
            stream_cache_bytes: the most bytes of chunks that folder holds (an int, or a size
                such as ``"4GB"``); chunks are removed least recently used first.
            shuffle: the training order. ``"full"``: a permutation of the whole split every
                epoch. ``"blocks"``: block by block, for sources whose items are cheap to read
                in groups (parquet row groups, LitData chunks): the blocks are permuted and the
                items of ``shuffle_window`` consecutive blocks mixed into batches, so each block
                is read once per window instead of once per item (see ``pipeline/sampling.py``).
                ``"auto"`` (default): ``"blocks"`` where the source has blocks, else ``"full"``.
                Both keep every guarantee (each item once per epoch, disjoint DDP ranks, the
                same order whatever the worker count, exact mid-epoch resume).
            shuffle_window: blocks whose items are mixed together with ``"blocks"`` [8]; larger
                mixes more classes into a batch (a class-sorted source) and holds more blocks
                in memory per loader worker.
        """
        check_seed(seed)
        super().__init__()
        self.save_hyperparameters(logger=False, ignore=["mask"])
        for key, value in self.hparams.items():
            # Checkpoints carry these; torch.load(weights_only=True), which Trainer.fit(ckpt_path=...)
            # uses, refuses Paths and OmegaConf containers (e.g. Hydra's crop_scale list).
            self.hparams[key] = plain(value)
        self.data: Dataset = open_dataset(self.spec_name, data_dir, seed=seed, progress=progress, **self.format_options)
        self.hparams.update(self.data.resolved_options())
        spec = self.data.spec
        image_size = image_size or spec.image_size
        patch_size = patch_size or spec.patch_size
        self.hparams.image_size, self.hparams.patch_size = image_size, patch_size
        check_positive("batch_size", batch_size)
        if global_batch_size is not None:
            check_positive("global_batch_size", global_batch_size)
        if num_workers is None:
            num_workers = self.hparams.num_workers = fitted_workers()
        if not isinstance(num_workers, int) or num_workers < 0:
            raise ConfigError(f"{setting('num_workers', num_workers)} is invalid; allowed is 0 or more (0 loads in the "
                              "main process), or None for as many as the machine has CPUs.", setting="num_workers",
                              allowed="0 or more, or None")
        check_positive("image_size", image_size)
        check_positive("patch_size", patch_size)
        if image_size % patch_size:
            raise ConfigError(f"{setting('image_size', image_size)} is not a multiple of "
                              f"{setting('patch_size', patch_size)}; allowed are sizes with image_size % patch_size == 0 "
                              "(e.g. 224/16, 96/8, 32/4).", setting="image_size", allowed="a multiple of patch_size")
        check_crop_scale(crop_scale)
        check_choice("shuffle", shuffle, SHUFFLES)
        if isinstance(shuffle_window, bool) or not isinstance(shuffle_window, int) or shuffle_window <= 0:
            raise ConfigError(f"{setting('shuffle_window', shuffle_window)} is invalid; allowed is a positive integer "
                              "(the number of blocks whose items are mixed together, e.g. 8).", setting="shuffle_window",
                              allowed="a positive integer")
        #: LitData chunks to read instead of the dataset's own files (``format="litdata"``); None: the files.
        self.stream = open_input(format, input, storage_options, stream_cache_dir, stream_cache_bytes)
        if self.stream is not None:
            self.stream.refuse_subsets(self.data.options, self.data.subset_options)
            if self.stream.facts is not None:  # the chunks say what the dataset is: no originals needed
                self.data.adopt_facts(self.stream.facts)
        val_fraction = self.hparams.val_fraction = self.data.resolve_val_fraction(val_fraction)
        if not 0 <= val_fraction < 1:
            raise ConfigError(f"{setting('val_fraction', val_fraction)} is invalid; allowed is 0 <= val_fraction < 1.",
                              setting="val_fraction", allowed="0 <= val_fraction < 1")
        check_choice("views_on", views_on, VIEWS_ON)
        self.grid = (image_size // patch_size, image_size // patch_size)
        try:
            self.mask_generator = mask.with_grid(self.grid) if mask is not None else None
        except ValueError as error:  # the default mask included: say how to go without
            name = type(mask).__name__.removeprefix("LazyInstance_")  # jsonargparse's lazy default
            raise ConfigError(f"mask={name}: {error} Or pass {setting('mask', None)} for batches without masks.",
                              setting="mask") from None
        self.train_view = TrainView(image_size, crop_scale, crop_ratio, hflip, color_jitter)
        self.eval_view = EvalView(image_size, eval_crop_fraction)
        self.device_views = DeviceViews(image_size, spec.mean, spec.std, color_jitter=color_jitter > 0)
        self.datasets: dict[str, ViewDataset] = {}
        self.train_sampler: EpochBatchSampler | None = None
        #: The training order setup() chose: "full" or "blocks" (see ``shuffle``).
        self.train_order = "full"
        self._position = {"epoch": 0, "next_batch": 0}
        self._resume: dict | None = None

    # ------------------------------------------------------------------ the dataset
    @property
    def spec(self) -> DatasetSpec:
        """The dataset's spec, as its format options shape it (STL-10's pre-training split, ...)."""
        return self.data.spec

    @property
    def folder(self) -> Path:
        return self.data.folder

    @property
    def num_classes(self) -> int:
        return self.data.num_classes

    @property
    def classes(self) -> list[str] | None:
        """Class names in label order, as torchvision's datasets have them, from the dataset's own
        files: CIFAR's label names, STL-10's ``class_names.txt``, the wnids of the ImageNet family
        (folder names, or the parquet release's list), your own folder's class folders, the
        synthetic shapes. None until the files are on disk (after ``prepare_data``), and for
        unlabeled data. With ``format="litdata"`` they come from the chunks (``Dataset.adopt_facts``)."""
        return self.data.classes or None

    @property
    def class_to_idx(self) -> dict[str, int] | None:
        """``{class name: label}``, torchvision's ``class_to_idx``; None where ``classes`` is None."""
        classes = self.classes
        return None if classes is None else {name: label for label, name in enumerate(classes)}

    @property
    def val_description(self) -> str | None:
        """How val was made, for summaries, where the dataset decides it (your own folder); else None."""
        return self.data.val_description(self.hparams.val_fraction)

    def open_split(self, split: str, whole: bool = False) -> Source:
        """One split, from the files or the LitData chunks; ``whole`` leaves out the options
        that select part of a split (STL-10's fold) and the label check (verification's own)."""
        source = self.stream.open_split(split) if self.stream is not None else self.data.open_split(split, whole)
        if not whole and self.data.label_files:  # verification reports bad labels itself, as one of its checks
            # A damaged label file says so here, not as "Target 200 is out of bounds" mid-training.
            check_labels(source, self.num_classes, f"{self.spec.name} {split}",
                         f"run {self.fix_action('verify', full=True)} to find the damaged file")
        return source

    # ------------------------------------------------------ fixes the user can run
    def fix_action(self, verb: str = "prepare", **options: Any) -> str:
        """The marked fix (``errors.action``) that runs ``verb`` (``"prepare"``, ``"verify"``) on
        this very dataset, with the settings that pick it (data_dir unless it is the default,
        mirrors, seed, the dataset's own options) and ``options`` (``force=True``, ``full=True``).
        ``str()`` of a message holding it reads ``prepare_data()`` with those arguments; the
        console scripts show ``jepa-prepare data=cifar10 paths.data_dir=/scratch/data force=true``."""
        return prepare_action(self.data, self.fetch_settings(), verb, **options)

    # -------------------------------------------------------------- prepare / verify
    def fetch_settings(self) -> FetchSettings:
        """The fetch arguments (``download``, ``mirrors``, ``force``, ...) as the pipeline takes them."""
        hp = self.hparams
        mirrors = (hp.mirrors,) if isinstance(hp.mirrors, str) else tuple(hp.mirrors)
        return FetchSettings(download=hp.download, mirrors=mirrors, force=hp.force,
                             keep_archives=hp.keep_archives, retries=hp.retries, timeout=hp.timeout, progress=hp.progress)

    def prepare_data(self) -> None:
        """Fetch (when ``download``), extract and verify under a lock; no state assigned
        (``preparation.prepare``). With ``format="litdata"`` there is nothing to fetch: the
        chunks are read where they are.

        A dataset whose stamp matches is used as it is, before any lock: nothing is written,
        so a verified copy on read-only storage trains. Otherwise, under the lock, staging
        left by killed runs is removed, the data fetched or generated, verified and stamped.
        Where the folder cannot be written, a copy that looks complete is verified without a
        stamp (a warning says so) and anything else raises :class:`StorageError`, one sentence
        naming the folder, what would have been written and the way out.
        """
        if self.stream is None:
            prepare(self.data, self.fetch_settings(), self.fix_action())

    def verify(self, full: bool = False, known_md5: dict[str, str] | None = None) -> VerifyReport:
        """Check the dataset on disk against its spec; writes nothing (``preparation.check``)."""
        return check(self.data, self.fix_action(), full=full, known_md5=known_md5)

    # ------------------------------------------------------------------------ setup
    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        hp, spec = self.hparams, self.spec
        train = self.open_split(spec.pretrain_split)
        evaluation = self.open_split(spec.eval_split)
        if hp.val_fraction > 0:
            order = np.random.default_rng(hp.seed).permutation(len(train))
            n_val = max(1, int(round(len(train) * hp.val_fraction)))
            val: Source = SubsetSource(train, np.sort(order[:n_val]))
            train = SubsetSource(train, np.sort(order[n_val:]))
            if spec.eval_split == spec.pretrain_split:  # no split of its own (a folder without val/)
                evaluation = val  # test = the carved-out val, not the whole train split
        else:
            val = evaluation
        self.check_batches({"train": len(train), "val": len(val), "test": len(evaluation)})
        self.train_order = self._train_order(train)
        self.datasets = {
            "train": ViewDataset(train, self.train_view, hp.seed),
            "val": ViewDataset(val, self.eval_view, hp.seed),
            "test": ViewDataset(evaluation, self.eval_view, hp.seed),
        }

    def order_description(self) -> str:
        """The training order in words, with what a loader worker holds, for summaries."""
        if self.train_order == "full":
            return "full permutation of the split each epoch"
        window = self.hparams.shuffle_window
        blocks = block_ids(self.datasets["train"].source)
        count = len(np.unique(blocks)) if blocks is not None else 0
        return (f"block by block: {count:,} blocks, the items of {window} mixed into batches; "
                f"a loader worker holds at most {window + 1} blocks")

    def _train_order(self, train: Source) -> str:
        """``"full"`` or ``"blocks"`` for the training split, from ``shuffle`` and what ``train`` declares."""
        hp = self.hparams
        blocks = block_ids(train)
        where = f"{self.spec.name} ({'LitData chunks at ' + self.stream.input if self.stream else 'its own files'})"
        if hp.shuffle == "blocks" and blocks is None:
            raise ConfigError(f"{setting('shuffle', 'blocks')} needs a source that declares blocks (parquet row groups, "
                              f"LitData chunks), and {where} has none; allowed here is {setting('shuffle', 'auto')} or "
                              f"{setting('shuffle', 'full')}.", setting="shuffle", allowed=["auto", "full"])
        order = "blocks" if hp.shuffle != "full" and blocks is not None else "full"
        if order == "full" and blocks is not None and getattr(train, "remote", False):
            warnings.warn(Notice(
                f"{setting('shuffle', 'full')} on {where} reads a whole chunk for every few images: a batch of "
                f"{hp.batch_size} touches up to {hp.batch_size} chunks, so each chunk is downloaded many times per "
                f"epoch unless the whole split fits in {setting('stream_cache_bytes')}; {setting('shuffle', 'auto')} "
                "reads each chunk once per window."), stacklevel=2)
        if order == "blocks":
            reserve_blocks(train, hp.shuffle_window + 1)  # the window, plus the next block at a window's edge
        return order
    def check_batches(self, sizes: dict[str, int]) -> None:
        """Refuse, in one sentence, a split that would give no batch at all (a run that trains
        0 steps, or validates on nothing): a split with no images, or a train split smaller than
        one batch per device when ``drop_last`` drops it."""
        world, _ = self._world()
        batch = self.per_device_batch_size()
        for split, size in sizes.items():
            if size == 0:
                raise ConfigError(f"The {split} split of {self.spec.name} at {self.data.shown_folder} has no images, "
                                  "so it gives no batch; add images there, or pick another dataset or folder.",
                                  path=self.data.shown_folder)
        per_device = sizes["train"] // world
        if self.hparams.drop_last and per_device < batch:
            devices = f" per device ({sizes['train']} over {world} devices)" if world > 1 else ""
            fits = max(1, per_device)
            raise ConfigError(f"{setting('batch_size', batch)} with {setting('drop_last', True)} gives no training "
                              f"batch: the train split of {self.spec.name} has {per_device} images{devices}; allowed is "
                              f"{setting('batch_size', fits)} or less (or {setting('drop_last', False)} for one smaller "
                              "batch per epoch).", setting="batch_size", allowed=f"{fits} or less")

    # ------------------------------------------------------------------ dataloaders
    def _world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 1, 0
        return trainer.world_size, trainer.global_rank

    def per_device_batch_size(self) -> int:
        world, _ = self._world()
        total = self.hparams.global_batch_size
        if total is None:
            return self.hparams.batch_size
        if total % world:
            raise ConfigError(f"{setting('global_batch_size', total)} does not divide across {world} devices; "
                              f"allowed are multiples of {world}, or set {setting('batch_size')} (per device) instead.",
                              setting="global_batch_size", allowed=f"a multiple of {world}")
        return total // world

    def _loader(self, split: str, shuffle: bool, drop_last: bool, masks: bool) -> EpochDataLoader:
        if not self.datasets:
            self.setup()
        hp = self.hparams
        world, rank = self._world()
        dataset = self.datasets[split]
        workers = hp.num_workers
        order = self.train_order if shuffle else "full"
        blocks = block_ids(dataset.source) if order == "blocks" else None
        # A remote source is told which blocks the batches in flight will need next.
        lookahead = max(1, workers) * (hp.prefetch_factor or 2) + 1 if getattr(dataset.source, "remote", False) else 0
        sampler = EpochBatchSampler(len(dataset), self.per_device_batch_size(), shuffle=shuffle, drop_last=drop_last,
                                    seed=hp.seed, num_replicas=world, rank=rank, order=order, blocks=blocks,
                                    window=hp.shuffle_window, lookahead=lookahead if blocks is not None else 0)
        views_on, normalize_in_workers = self.views_placement()
        dataset = dataset.compacted(views_on == "device")
        stats = (self.spec.mean, self.spec.std) if normalize_in_workers else None
        collate = JEPACollate(self.mask_generator if masks else None, hp.seed, stats)
        return EpochDataLoader(
            dataset,
            position=self.state_dict if split == "train" else None,
            batch_size=None,  # the sampler yields whole batches
            sampler=sampler,
            collate_fn=collate,
            num_workers=workers,
            pin_memory=torch.cuda.is_available() if hp.pin_memory is None else hp.pin_memory,
            persistent_workers=(workers > 0) if hp.persistent_workers is None else (hp.persistent_workers and workers > 0),
            prefetch_factor=(hp.prefetch_factor or 2) if workers > 0 else None,
        )

    def views_placement(self) -> tuple[str, bool]:
        """(``"workers"`` or ``"device"``, whether the workers normalize) for the loaders made now.

        ``views_on="auto"`` looks at the attached Trainer's device: CUDA -> device; the
        CPU -> workers, normalized there too; no Trainer (a plain loop) -> workers, uint8.
        """
        hp = self.hparams
        device = getattr(getattr(getattr(self, "trainer", None), "strategy", None), "root_device", None)
        device_type = getattr(device, "type", None)
        views_on = hp.views_on
        if views_on == "auto":
            views_on = "device" if device_type == "cuda" else "workers"
            if device_type == "cpu":
                return views_on, True
        return views_on, views_on == "workers" and not hp.normalize_on_device

    def train_dataloader(self) -> EpochDataLoader:
        loader = self._loader("train", shuffle=True, drop_last=self.hparams.drop_last, masks=True)
        self.train_sampler = loader.sampler
        if self._resume is not None:
            self._check_resume_world(self._resume)
            epoch, next_batch = self._resume["epoch"], self._resume["next_batch"]
            if next_batch >= loader.sampler.batches_per_epoch():  # saved after an epoch's last batch
                epoch, next_batch = epoch + 1, 0
            self._align_trainer_epoch(epoch)
            # Lightning then calls set_epoch with its own (restored) epoch before the first
            # batch is drawn; the stream position wins (EpochBatchSampler.resume_at).
            loader.load_state_dict({"epoch": epoch, "next_batch": next_batch})
            self._resume = None
        return loader

    def _align_trainer_epoch(self, epoch: int) -> None:
        """Make the resuming Trainer count ``epoch`` (the stream's) as its current epoch.

        A run that ``max_steps`` ended mid-epoch saves its checkpoint at that epoch's end, and
        Lightning counts the cut epoch as finished: resumed, it would start the next epoch
        while the stream finishes the cut one, and a ``max_epochs`` limit would then end the
        run an epoch early (13 + 19 steps instead of 13 + 51 for 32 batches per epoch and
        ``max_epochs=2``). Winding Lightning's epoch counters back to the stream's epoch makes
        the resumed run train to the uninterrupted run's total under either limit.
        """
        loop = getattr(getattr(getattr(self, "trainer", None), "fit_loop", None), "epoch_progress", None)
        behind = loop.current.processed - epoch if loop is not None else 0
        if behind <= 0:
            return
        for progress in (loop.current, loop.total):
            for field in ("ready", "started", "processed", "completed"):
                setattr(progress, field, max(0, getattr(progress, field) - behind))
            progress.completed = progress.processed  # nothing half-finished: the epoch starts anew

    def _check_resume_world(self, state: dict[str, Any]) -> None:
        """The stream position counts batches of one size on one world size: another of either
        would start at the wrong samples, so it is refused (older checkpoints carry neither)."""
        world, _ = self._world()
        for name, saved, now, how in (("batch size", state.get("batch_size"), self.per_device_batch_size(),
                                       setting("batch_size", state.get("batch_size"))),
                                      ("world size", state.get("world_size"), world, "the number of devices")):
            if saved is not None and int(saved) != now:
                raise ConfigError(f"Cannot resume with {name} {now}: the checkpoint's stream position counts batches "
                                  f"of {name} {saved}; resume with {how} as the checkpoint was made "
                                  f"({name} {saved}), or start a new run without the checkpoint.",
                                  allowed=f"{name} {saved}")

    def masked_dataloader(self, split: str) -> EpochDataLoader:
        """``split`` (``"val"`` or ``"test"``) in order with masks drawn as for training: the JEPA loss on
        held-out images (``adapters.ijepa_loader(dm, split="val")``)."""
        check_choice("split", split, ("val", "test"))
        return self._loader(split, shuffle=False, drop_last=False, masks=True)

    def val_dataloader(self) -> EpochDataLoader:
        return self._loader("val", shuffle=False, drop_last=False, masks=False)

    def test_dataloader(self) -> EpochDataLoader:
        return self._loader("test", shuffle=False, drop_last=False, masks=False)

    # -------------------------------------------------------- device side + resume
    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        trainer = getattr(self, "trainer", None)
        if trainer is not None and trainer.training and "batch_index" in batch:
            self._position = {"epoch": batch["epoch"], "next_batch": batch["batch_index"] + 1}
        if "views" in batch:  # views_on="device": build them here, the whole batch at once
            return self.device_views(batch)
        if batch["images"].dtype == torch.uint8:
            batch["images"] = normalize(batch["images"], self.spec.mean, self.spec.std)
        return batch

    def state_dict(self) -> dict[str, Any]:
        """Where the training stream stands: resuming continues with the next batch."""
        world, _ = self._world()
        return {"epoch": int(self._position["epoch"]), "next_batch": int(self._position["next_batch"]),
                "seed": int(self.hparams.seed), "batch_size": self.per_device_batch_size(), "world_size": world}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("seed", self.hparams.seed) != self.hparams.seed:
            warnings.warn(Notice(f"resuming with {setting('seed', self.hparams.seed)} but the checkpoint used "
                                 f"{setting('seed', state['seed'])}; samples and masks will differ from the original "
                                 "run."), stacklevel=2)
        self._resume = {"epoch": int(state["epoch"]), "next_batch": int(state["next_batch"]),
                        **{key: int(state[key]) for key in ("batch_size", "world_size") if key in state}}
        self._position = {"epoch": self._resume["epoch"], "next_batch": self._resume["next_batch"]}

    def describe(self) -> dict[str, Any]:
        """Splits, sizes, classes and resolution, for summaries and the notebook."""
        self.setup()
        return {
            "dataset": self.spec.name,
            "folder": str(self.folder) if self.stream is None else self.stream.input,
            "splits": {name: len(ds) for name, ds in self.datasets.items()},
            "classes": self.num_classes,
            "native_resolution": self.spec.resolution,
            "image_size": self.hparams.image_size,
            "patch_size": self.hparams.patch_size,
            "patch_grid": self.grid,
            "train_order": self.order_description(),
            **self.data.describe(self.hparams.val_fraction),
        }
