"""``JEPADataModule`` and one thin subclass per dataset.

The base class does everything; a subclass names its spec and, where the dataset has
one, its own reader option (CIFAR-100's label granularity, STL-10's split and fold, the
ImageNet-100 class list). ``prepare_data`` fetches (or generates) and verifies under an
inter-process lock and assigns no state; ``setup`` is idempotent.

Splits: ``train`` is the dataset's pre-training split (STL-10: ``train+unlabeled``).
``val`` is the official test / val split by default (``val_fraction=0``: the usual
convention for monitoring SSL runs with an online probe); with ``val_fraction > 0`` it is
a seeded carve-out of the training split and ``test`` stays the official one.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shlex
import sys
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from lightning import LightningDataModule

from .storage import download as dl
from .storage.extract import safe_extract
from .storage.locks import dataset_lock
from .pipeline.batching import JEPACollate, ViewDataset
from .catalog import DatasetSpec, dataset_folder, get_spec, parquet_spec
from .pipeline.device_views import DeviceViews
from .pipeline.masks import MaskGenerator, MultiBlockMaskGenerator
from .formats import open_split
from .formats.base import Source, SubsetSource, check_labels
from .storage.files import (
    DATA_DIR_HINT,
    StorageError,
    human_bytes,
    is_storage_error,
    remove_stale_staging,
    storage_error,
    unwritable,
)
from .pipeline.sampling import EpochBatchSampler, EpochDataLoader
from .pipeline.transforms import EvalView, TrainView, check_crop_scale, normalize
from .storage.verify import (
    VerificationError,
    VerifyReport,
    recorded_md5,
    remove_stamp,
    stamp_matches,
    verify_dataset,
    write_stamp,
)


def _default_mask() -> MaskGenerator:
    """The I-JEPA multi-block recipe, as conf/mask/multiblock.yaml. Generators are never changed
    in place (``with_grid`` returns a copy), so one shared default is safe. Where jsonargparse is
    installed it is a lazy instance, which LightningCLI can write into its config.yaml (a plain
    instance is saved as "Unable to serialize instance ...")."""
    try:
        from jsonargparse import lazy_instance
    except ImportError:
        return MultiBlockMaskGenerator()
    return lazy_instance(MultiBlockMaskGenerator)


DEFAULT_MASK = _default_mask()
VIEWS_ON = ("workers", "device", "auto")


class JEPADataModule(LightningDataModule):
    """Masked, augmented JEPA batches for the dataset named by ``spec_name``.

    Every constructor argument is documented on ``__init__`` (``help(CIFAR10DataModule)``,
    LightningCLI's ``--data.help``).

    LitData from Hydra: ``jepa-fit data=cifar10 data.format=litdata data.input=s3://bucket/cifar10``
    ``+data.storage_options.endpoint_url=http://127.0.0.1:9000``. Everything else (views,
    masks, batch format, DDP sharding, resume) is the same in both formats.

    Distributed training: each rank reads a disjoint shard of a per-epoch permutation,
    every rank gets the same number of batches, and masks and augmentations are seeded
    per rank (see ``sampling.py``). ``prepare_data`` runs once per node under a file lock.

    Resuming: ``state_dict()`` (saved in every Lightning checkpoint) holds the epoch and
    the next batch of the training stream, recorded when a batch reaches the model (loader
    workers run ahead). ``Trainer.fit(ckpt_path=...)`` restores it and training continues
    with exactly the batches, masks and augmentations the uninterrupted run would have
    seen: every random draw is a function of (seed, epoch, rank, batch or sample index),
    so the position is all the state there is. Same world size and batch size required.
    """

    spec_name: str = ""
    # The spec's variant (Imagenette's image size); None = the spec's default. Set by aliases.
    variant: str | None = None

    def __init__(
        self,
        data_dir: str | Path = "data",
        batch_size: int = 128,
        num_workers: int = 4,
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
    ):
        """Configure the DataModule; nothing is read or downloaded until ``prepare_data`` / ``setup``.

        Args:
            data_dir: root of all datasets; this one lives in ``<data_dir>/<name>``.
            batch_size: batch size per device (per DDP rank); the global batch is
                ``batch_size * world_size``.
            num_workers: loader processes; 0 loads in the main process.
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
                training device (see ``device_views.py``); same crops, same batch format.
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
                ``"litdata"`` reads LitData chunks written by
                ``jepa-prepare data=<name> format=litdata output=<where>`` from ``input``.
            input: the folder or URL (``s3://bucket/prefix``) given as ``output`` to that
                conversion; only with ``format="litdata"``.
            storage_options: LitData's connection options for a remote ``input`` (S3: boto3
                client arguments, e.g. ``{"endpoint_url": "http://minio:9000"}``); None uses
                boto3's defaults and the ``AWS_*`` environment variables.
            stream_cache_dir: LitData's local cache for a remote ``input``; None is LitData's default.
        """
        _check_seed(seed)
        super().__init__()
        self.save_hyperparameters(logger=False, ignore=["mask"])
        for key, value in self.hparams.items():
            # Checkpoints carry these; torch.load(weights_only=True), which Trainer.fit(ckpt_path=...)
            # uses, refuses Paths and OmegaConf containers (e.g. Hydra's crop_scale list).
            self.hparams[key] = _plain(value)
        spec = self.build_spec()
        image_size = image_size or spec.image_size
        patch_size = patch_size or spec.patch_size
        self.hparams.image_size, self.hparams.patch_size = image_size, patch_size
        _check_positive("batch_size", batch_size)
        if global_batch_size is not None:
            _check_positive("global_batch_size", global_batch_size)
        if num_workers < 0:
            raise ValueError(f"num_workers={num_workers} is invalid; allowed is 0 or more (0 loads in the main process).")
        _check_positive("image_size", image_size)
        _check_positive("patch_size", patch_size)
        if image_size % patch_size:
            raise ValueError(f"image_size={image_size} is not a multiple of patch_size={patch_size}; "
                             f"allowed are sizes with image_size % patch_size == 0 (e.g. 224/16, 96/8, 32/4).")
        check_crop_scale(crop_scale)
        if not 0 <= val_fraction < 1:
            raise ValueError(f"val_fraction={val_fraction} is invalid; allowed is 0 <= val_fraction < 1.")
        _check_format(format, input)
        if views_on not in VIEWS_ON:
            raise ValueError(f"Unknown value '{views_on}' for argument views_on. Valid values are {{{', '.join(VIEWS_ON)}}}.")
        self.spec: DatasetSpec = spec
        self.grid = (image_size // patch_size, image_size // patch_size)
        try:
            self.mask_generator = mask.with_grid(self.grid) if mask is not None else None
        except ValueError as error:  # the default mask included: say how to go without
            name = type(mask).__name__.removeprefix("LazyInstance_")  # jsonargparse's lazy default
            raise ValueError(f"mask={name}: {error} Or pass mask=None for batches without masks.") from None
        self.train_view = TrainView(image_size, crop_scale, crop_ratio, hflip, color_jitter)
        self.eval_view = EvalView(image_size, eval_crop_fraction)
        self.device_views = DeviceViews(image_size, spec.mean, spec.std, color_jitter=color_jitter > 0)
        self.datasets: dict[str, ViewDataset] = {}
        self.train_sampler: EpochBatchSampler | None = None
        self._position = {"epoch": 0, "next_batch": 0}
        self._resume: dict | None = None

    # ------------------------------------------------------------------ the dataset
    def build_spec(self) -> DatasetSpec:
        """The spec this DataModule reads (in its ``variant``); subclasses with options adjust it here."""
        return get_spec(self.spec_name, self.variant)

    @property
    def folder(self) -> Path:
        return dataset_folder(self.hparams.data_dir, self.spec)

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    def reader_options(self) -> dict[str, Any]:
        return {}

    # Reader options that select part of a split (STL-10's fold); verification reads whole splits.
    subset_options: tuple[str, ...] = ()

    def open_split(self, split: str, whole: bool = False) -> Source:
        hp = self.hparams
        if hp.format == "litdata":
            from .streaming import LitDataSource, split_url

            source: Source = LitDataSource(split_url(hp.input, split), storage_options=hp.storage_options,
                                           cache_dir=hp.stream_cache_dir)
        else:
            options = self.reader_options()
            if whole:
                options = {key: value for key, value in options.items() if key not in self.subset_options}
            source = open_split(self.spec, self.folder, split, **options)
        if not whole:  # verification reports bad labels itself, as one of its checks
            # A damaged label file says so here, not as "Target 200 is out of bounds" mid-training.
            check_labels(source, self.num_classes, f"{self.spec.name} {split}",
                         f"run `{self.command('jepa-verify', 'full=true')}` to find the damaged file")
        return source

    # ------------------------------------------------------ the user's own command
    # Set by the console scripts: the overrides the user typed that pick this dataset and its
    # folder (data=..., paths.data_dir=..., data.*), so every fix hint repeats them.
    cli_overrides: list[str] | None = None

    def command(self, script: str = "jepa-prepare", *extra: str) -> str:
        """The console command acting on this very dataset, e.g. for fix hints:
        ``jepa-prepare data=cifar10 paths.data_dir=/scratch/data force=true``.

        From a console script: the user's own overrides (``cli_overrides``). From Python: the
        settings that pick the dataset's folder and sources (data_dir unless it is the
        default, mirrors, seed, the synthetic set's size)."""
        words = self.cli_overrides if self.cli_overrides is not None else self.setting_overrides()
        return " ".join([script, *(shlex.quote(word) for word in words), *extra])

    def setting_overrides(self) -> list[str]:
        """This DataModule's settings as the overrides ``command`` prints (outside the console scripts)."""
        hp = self.hparams
        words = [f"data={self.spec_name}"]
        if self.variant is not None and self.variant != self.spec.options.get("default_variant"):
            words.append(f"data.variant={self.variant}")
        default_dir = Path(os.environ.get("JEPA_DATA_DIR") or "data").expanduser().absolute()
        if Path(hp.data_dir).expanduser().absolute() != default_dir:
            words.append(f"paths.data_dir={Path(hp.data_dir).expanduser().absolute()}")
        if hp.mirrors:
            words.append(f"data.mirrors=[{','.join(hp.mirrors)}]")
        if hp.seed != 0:
            words.append(f"seed={hp.seed}")
        return words

    # -------------------------------------------------------------- prepare / verify
    def prepare_data(self) -> None:
        """Fetch (when ``download``), extract and verify under a lock; no state assigned.
        With ``format="litdata"`` there is nothing to fetch: the chunks are read where they are.

        A dataset whose stamp matches is used as it is, before any lock: nothing is written,
        so a verified copy on read-only storage trains. Otherwise, under the lock, staging
        left by killed runs is removed, the data fetched or generated, verified and stamped.
        Where the folder cannot be written, a copy that looks complete is verified without a
        stamp (a warning says so) and anything else raises :class:`StorageError`, one sentence
        naming the folder, what would have been written and the way out.
        """
        if self.hparams.format == "litdata":
            return
        folder = self.folder
        if not self.hparams.force and stamp_matches(folder, self.spec):
            return
        self.check_data_dir()
        problem = unwritable(folder.parent) or (unwritable(folder) if folder.is_dir() else None)
        if problem is not None:
            self._prepare_unwritable(folder, problem)
            return
        try:
            with dataset_lock(folder):
                if not self.hparams.force and stamp_matches(folder, self.spec):
                    return  # another process prepared it while this one waited
                remove_stale_staging(folder)
                # Archives the last verification hashed and that are unchanged need no second hash.
                remembered = {} if self.hparams.force else recorded_md5(folder)
                self._remembered_md5 = remembered  # acquire's check of hand-placed archives reuses them
                remove_stamp(folder)
                known_md5 = {**remembered, **self.acquire(folder)}
                report = self.verify(known_md5=known_md5)
                if not report.ok:
                    raise VerificationError(report)  # no stamp: the next run checks again
                write_stamp(folder, self.spec, report, self.tracked_files())
        except OSError as error:
            if not is_storage_error(error):
                raise
            raise storage_error(error, folder, self.pending_writes() or "the verification stamp",
                                fix=self.way_out(folder)) from error

    def check_data_dir(self) -> None:
        """Raise :class:`StorageError` when ``data_dir`` is a file or cannot be created."""
        data_dir = Path(self.hparams.data_dir).expanduser().absolute()
        problem = unwritable(data_dir) if not data_dir.is_dir() else None
        if problem is not None and "read-only" not in problem and "not writable" not in problem:
            raise StorageError(f"data_dir {data_dir} {problem}; {DATA_DIR_HINT} a folder you can write.")

    def way_out(self, folder: Path) -> str:
        """The end of a sentence: how to get going when ``folder`` cannot be written."""
        return (f"{DATA_DIR_HINT} a writable folder, or run `{self.command()}` once from an account "
                f"or machine that can write in {folder}")

    def _prepare_unwritable(self, folder: Path, problem: str) -> None:
        where = folder.parent if unwritable(folder.parent) else folder
        pending = "the files it fetches and extracts again" if self.hparams.force else self.pending_writes()
        if pending is not None:
            raise StorageError(f"{where} {problem}, so {pending} cannot be written there "
                               f"(to prepare {self.spec.name}); {self.way_out(folder)}.")
        report = self.verify()
        if not report.ok:
            raise VerificationError(report)
        warnings.warn(f"{where} {problem}: {self.spec.name} at {folder} passed verification, but the stamp that "
                      f"lets later runs skip the check cannot be written there, so it runs again each time; run "
                      f"`{self.command()}` once where it is writable to record it.", stacklevel=3)

    def pending_writes(self) -> str | None:
        """What ``prepare_data`` would write besides the stamp, as a phrase; None when the
        data looks complete (then only verifying and stamping are left)."""
        folder, spec = self.folder, self.spec
        if all((folder / rel).is_file() for rel in spec.files) and (spec.files or not spec.archives):
            return None
        missing = [a for a in spec.archives if not (folder / a.filename).is_file()]
        if not spec.archives:
            return f"the files of {spec.name}"
        parts = [f"the download of {a.filename} ({human_bytes(a.size)})" for a in missing]
        extracted = sum(a.extracted_size for a in spec.archives)
        parts.append(f"the extracted files ({human_bytes(extracted)})" if extracted else "the extracted files")
        return " and ".join(parts)

    def acquire(self, folder: Path) -> dict[str, str]:
        """Put the raw data in place; returns md5s already computed while doing so."""
        spec, hp = self.spec, self.hparams
        if not spec.archives:
            return {}
        if not spec.auto_download:
            raise dl.DownloadError(f"{spec.title} cannot be downloaded automatically; place its files under {folder}.")
        known: dict[str, str] = {}
        for archive in spec.archives:
            target = folder / archive.extract_to if archive.extract_to else None
            path = folder / archive.filename
            if target is not None and target.exists() and not hp.force and not path.exists():
                continue  # extracted earlier and the archive was deleted on purpose
            if (hp.force and hp.download) or not path.exists():
                if not hp.download:
                    raise dl.DownloadError(
                        f"{path} is missing and download=False; place {archive.filename} there by hand "
                        f"(md5 {archive.md5}) or allow downloading.")
                needed = archive.size + archive.extracted_size
                dl.check_free_space(folder, needed, f"download and extract {archive.filename}")
                urls = dl.candidate_urls(archive.filename, archive.urls, hp.mirrors)
                # force fetches again beside the archive and swaps it in only once its md5
                # matches, so a failed re-download (no network) keeps the archive there was.
                landing = path.with_name(f".{archive.filename}.refetch") if path.exists() else path
                landing.unlink(missing_ok=True)
                dl.fetch(urls, landing, md5=archive.md5, size=archive.size if archive.size_known else None,
                         retries=hp.retries, timeout=hp.timeout, progress=hp.progress)
                os.replace(landing, path)
                known[archive.filename] = archive.md5
            else:  # placed by hand (or left by an earlier run): the right file, whole, before extracting it
                known[archive.filename] = check_placed_archive(path, archive, self.command(), hp.progress,
                                                               getattr(self, "_remembered_md5", {}))
            if target is not None:
                safe_extract(path, target, progress=hp.progress)
                if not hp.keep_archives:
                    path.unlink()
        return known

    def verify(self, full: bool = False, known_md5: dict[str, str] | None = None) -> VerifyReport:
        """Check the dataset on disk against its spec (see ``verify.verify_dataset``)."""
        report = verify_dataset(self.spec, self.folder, functools.partial(self.open_split, whole=True), full=full,
                                known_md5=known_md5,
                                md5=lambda p: dl.file_md5(p, progress=self.hparams.progress),
                                num_classes=self.num_classes, seed=self.hparams.seed)
        report.prepare_command = self.command()
        return report

    def tracked_files(self) -> list[str]:
        """Files whose size and mtime the stamp records."""
        present = [a.filename for a in self.spec.archives if (self.folder / a.filename).exists()]
        return list(self.spec.files) + present

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
        else:
            val = evaluation
        self.datasets = {
            "train": ViewDataset(train, self.train_view, hp.seed),
            "val": ViewDataset(val, self.eval_view, hp.seed),
            "test": ViewDataset(evaluation, self.eval_view, hp.seed),
        }

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
            raise ValueError(f"global_batch_size={total} does not divide across {world} devices; "
                             f"allowed are multiples of {world}, or set batch_size (per device) instead.")
        return total // world

    def _loader(self, split: str, shuffle: bool, drop_last: bool, masks: bool) -> EpochDataLoader:
        if not self.datasets:
            self.setup()
        hp = self.hparams
        world, rank = self._world()
        dataset = self.datasets[split]
        sampler = EpochBatchSampler(len(dataset), self.per_device_batch_size(), shuffle=shuffle, drop_last=drop_last,
                                    seed=hp.seed, num_replicas=world, rank=rank)
        views_on, normalize_in_workers = self.views_placement()
        dataset = dataset.compacted(views_on == "device")
        stats = (self.spec.mean, self.spec.std) if normalize_in_workers else None
        collate = JEPACollate(self.mask_generator if masks else None, hp.seed, stats)
        workers = hp.num_workers
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
            # Lightning then calls set_epoch with its own (restored) epoch before the first
            # batch is drawn; the stream position wins (EpochBatchSampler.resume_at), also when
            # Lightning counted an epoch that max_steps cut short as finished.
            loader.load_state_dict(self._resume)
            self._resume = None
        return loader

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
        return {"epoch": int(self._position["epoch"]), "next_batch": int(self._position["next_batch"]),
                "seed": int(self.hparams.seed)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("seed", self.hparams.seed) != self.hparams.seed:
            print(f"warning: resuming with seed={self.hparams.seed} but the checkpoint used seed={state['seed']}; "
                  "samples and masks will differ from the original run.", file=sys.stderr)
        self._resume = {"epoch": int(state["epoch"]), "next_batch": int(state["next_batch"])}
        self._position = dict(self._resume)

    def describe(self) -> dict[str, Any]:
        """Splits, sizes, classes and resolution, for summaries and the notebook."""
        self.setup()
        return {
            "dataset": self.spec.name,
            "folder": str(self.folder) if self.hparams.format == "files" else self.hparams.input,
            "splits": {name: len(ds) for name, ds in self.datasets.items()},
            "classes": self.num_classes,
            "native_resolution": self.spec.resolution,
            "image_size": self.hparams.image_size,
            "patch_size": self.hparams.patch_size,
            "patch_grid": self.grid,
        }


def check_placed_archive(path: Path, archive: Any, command: str, progress: bool | None,
                         remembered: Mapping[str, str] | None = None) -> str:
    """Return the md5 of an archive found at ``path``, or raise naming how it differs from
    the official file (size first: a truncated 138 GB tar is not hashed). ``remembered``:
    md5s a stamp recorded for files that have not changed since (no second hash)."""
    size = path.stat().st_size
    expected = f"expected {archive.size:,} bytes with md5 {archive.md5}"
    if size != archive.size:
        raise dl.DownloadError(
            f"{path} is not the official {archive.filename}: it has {size:,} bytes, {expected}; it is truncated "
            f"or another file, so nothing was extracted: replace it with the official file, or delete it and "
            f"run `{command}` to download it.")
    digest = (remembered or {}).get(archive.filename) or dl.file_md5(path, progress=progress)
    if digest != archive.md5:
        raise dl.DownloadError(
            f"{path} is not the official {archive.filename}: it has the expected {size:,} bytes but md5 {digest}, "
            f"{expected}; the file is damaged or another one, so nothing was extracted: replace it with the "
            f"official file, or delete it and run `{command}` to download it.")
    return digest


def _plain(value: Any) -> Any:
    """``value`` as built-in types only: str for paths, dict/list for OmegaConf containers."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping) or type(value).__name__ == "DictConfig":
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if isinstance(value, list) or type(value).__name__ == "ListConfig":
        return [_plain(v) for v in value]
    return value


def _check_format(format: str, input: str | None) -> None:
    if format not in ("files", "litdata"):
        raise ValueError(f"Unknown value '{format}' for argument format. Valid values are {{files, litdata}}.")
    if format == "litdata" and not input:
        raise ValueError(f"input={input!r} is invalid with format=litdata; allowed is the folder or URL "
                         "(s3://bucket/prefix) that jepa-prepare ... format=litdata output=<where> wrote.")
    if format == "files" and input is not None:
        raise ValueError(f"input={input!r} is only read with format=litdata; set format=litdata "
                         "or leave input unset to read the dataset's own files.")


def _check_seed(seed: Any) -> None:
    # lightning-hydra-template's `seed: null` would otherwise fail much later, in a loader worker.
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed={seed!r} is invalid; allowed is an integer (e.g. seed=0): it seeds the split, "
                         "the shuffles, the augmentations and the masks.")


def _check_positive(name: str, value: int) -> None:
    if not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name}={value} is invalid; allowed is a positive integer.")


# ----------------------------------------------------------------------- datasets
class SyntheticDataModule(JEPADataModule):
    """The embedded, offline dataset (see ``synthetic.py``), generated once per setting.

    Extra args: ``num_train`` [4096], ``num_test`` [1024], ``resolution`` (native side,
    pixels) [32], ``num_classes`` [10]. Lives in ``<data_dir>/synthetic/<setting>``.
    """

    spec_name = "synthetic"

    def __init__(self, *args: Any, num_train: int = 4096, num_test: int = 1024, resolution: int = 32,
                 num_classes: int = 10, **kwargs: Any):
        """The generated dataset's size and look, then the arguments of ``JEPADataModule``.

        Args:
            num_train: images in the generated train split.
            num_test: images in the generated test split.
            resolution: native side of the generated images, pixels.
            num_classes: number of shape / texture classes (at most the ten that exist).
            *args: passed on to ``JEPADataModule``.
            **kwargs: passed on to ``JEPADataModule`` (``data_dir``, ``batch_size``, ``mask``, ...).
        """
        self._synthetic = {"num_train": num_train, "num_test": num_test, "resolution": resolution, "num_classes": num_classes}
        super().__init__(*args, **kwargs)

    def build_spec(self) -> DatasetSpec:
        s = self._synthetic
        for key in ("num_train", "num_test", "resolution", "num_classes"):
            _check_positive(key, s[key])
        return get_spec("synthetic").replace(
            splits={"train": s["num_train"], "test": s["num_test"]}, num_classes=s["num_classes"], resolution=s["resolution"])

    @property
    def folder(self) -> Path:
        s = self._synthetic
        setting = f"{s['resolution']}px-{s['num_classes']}c-{s['num_train']}-{s['num_test']}-seed{self.hparams.seed}"
        return dataset_folder(self.hparams.data_dir, self.spec) / setting

    def acquire(self, folder: Path) -> dict[str, str]:
        from .formats.synthetic import generate

        if self.hparams.force or self.pending_writes() is not None:
            generate(folder, seed=self.hparams.seed, progress=self.hparams.progress, **self._synthetic)
        return {}

    def pending_writes(self) -> str | None:
        from .formats.synthetic import is_complete

        s = self._synthetic
        if is_complete(self.folder, num_train=s["num_train"], num_test=s["num_test"], resolution=s["resolution"]):
            return None
        # A truncated file is regenerated like a missing one: nothing of it is the user's.
        return f"the generated synthetic images and labels ({s['num_train']} + {s['num_test']} images)"

    def setting_overrides(self) -> list[str]:
        defaults = {"num_train": 4096, "num_test": 1024, "resolution": 32, "num_classes": 10}
        return super().setting_overrides() + [f"data.{key}={value}" for key, value in self._synthetic.items()
                                              if value != defaults[key]]


class CIFAR10DataModule(JEPADataModule):
    """CIFAR-10: 50,000 train / 10,000 test images, 32x32, 10 classes; auto-download."""

    spec_name = "cifar10"


class CIFAR100DataModule(JEPADataModule):
    """CIFAR-100: as CIFAR-10 with 100 fine classes; ``label_type="coarse"`` gives the 20 superclasses."""

    spec_name = "cifar100"

    def __init__(self, *args: Any, label_type: str = "fine", **kwargs: Any):
        """CIFAR-100's label granularity, then the arguments of ``JEPADataModule``.

        Args:
            label_type: ``"fine"`` (100 classes) or ``"coarse"`` (20 superclasses).
            *args: passed on to ``JEPADataModule``.
            **kwargs: passed on to ``JEPADataModule`` (``data_dir``, ``batch_size``, ``mask``, ...).
        """
        if label_type not in ("fine", "coarse"):
            raise ValueError(f"Unknown value '{label_type}' for argument label_type. Valid values are {{fine, coarse}}.")
        self.label_type = label_type
        super().__init__(*args, **kwargs)

    @property
    def num_classes(self) -> int:
        return self.spec.options["num_classes"][self.label_type]

    def reader_options(self) -> dict[str, Any]:
        return {"label_type": self.label_type}


class STL10DataModule(JEPADataModule):
    """STL-10: 5,000 labeled train, 8,000 test, 100,000 unlabeled images, 96x96; auto-download.

    ``train_split`` [``"train+unlabeled"``]: the split pre-training reads (``train``,
    ``unlabeled`` or ``train+unlabeled``; unlabeled items carry label -1). ``fold``
    [None]: one of the 10 predefined folds of the labeled train split (0..9).
    The binaries are read one image at a time (``os.pread``), never loaded whole.
    """

    spec_name = "stl10"

    def __init__(self, *args: Any, train_split: str = "train+unlabeled", fold: int | None = None, **kwargs: Any):
        """STL-10's pre-training split and fold, then the arguments of ``JEPADataModule``.

        Args:
            train_split: the split pre-training reads: ``"train"``, ``"unlabeled"`` or
                ``"train+unlabeled"`` (unlabeled items carry label -1).
            fold: one of the 10 predefined folds (0..9) of the labeled train split; None reads it all.
            *args: passed on to ``JEPADataModule``.
            **kwargs: passed on to ``JEPADataModule`` (``data_dir``, ``batch_size``, ``mask``, ...).
        """
        allowed = ("train", "unlabeled", "train+unlabeled")
        if train_split not in allowed:
            raise ValueError(f"Unknown value '{train_split}' for argument train_split. Valid values are {{{', '.join(allowed)}}}.")
        if fold is not None and not 0 <= fold <= 9:
            raise ValueError(f"fold={fold} is invalid; allowed is None or 0..9 (STL-10's predefined folds).")
        if fold is not None and kwargs.get("format") == "litdata":
            raise ValueError(f"fold={fold} is not available with format=litdata (the chunks hold whole splits); "
                             "allowed is fold=None, or format=files.")
        self.train_split, self.fold = train_split, fold
        super().__init__(*args, **kwargs)

    def build_spec(self) -> DatasetSpec:
        return get_spec(self.spec_name).replace(pretrain_split=self.train_split)

    subset_options = ("fold",)

    def reader_options(self) -> dict[str, Any]:
        return {"fold": self.fold}


class ImagenetteDataModule(JEPADataModule):
    """Imagenette: fast.ai's 10-class ImageNet subset, 9,469 train / 3,925 val images; auto-download.

    Read as an ImageFolder (``train/<wnid>/``, ``val/<wnid>/``), labels in sorted wnid order.
    """

    spec_name = "imagenette"

    def __init__(self, *args: Any, variant: str = "320", **kwargs: Any):
        """Which Imagenette archive, then the arguments of ``JEPADataModule``.

        Args:
            variant: ``"320"`` (shorter side 320 px, 341 MB), ``"160"`` (160 px, 99 MB) or
                ``"full"`` (full-size images, 1.6 GB).
            *args: passed on to ``JEPADataModule``.
            **kwargs: passed on to ``JEPADataModule`` (``data_dir``, ``batch_size``, ``mask``, ...).
        """
        self.variant = str(variant)
        super().__init__(*args, **kwargs)


class TinyImageNetDataModule(JEPADataModule):
    """Tiny-ImageNet-200: 100,000 train / 10,000 val / 10,000 unlabeled test images, 64x64, 200 classes; auto-download."""

    spec_name = "tinyimagenet"


IMAGENET_SOURCES = ("auto", "folders", "parquet")


class RelabeledSubset(SubsetSource):
    """``indices`` of another source with new ``labels`` (ImageNet-100 over the parquet shards)."""

    def __init__(self, base: Source, indices: np.ndarray, labels: np.ndarray):
        super().__init__(base, indices)
        self.labels = np.asarray(labels, dtype=np.int64)

    def name(self, index: int) -> str:
        return self.base.name(int(self.indices[index]))


class ImageNetDataModule(JEPADataModule):
    """ImageNet-1k (ILSVRC2012): 1,281,167 train / 50,000 val JPEGs, 1,000 classes.

    Cannot be downloaded automatically. ``prepare_data`` accepts, in this order: the
    ``train/<wnid>/`` + ``val/<wnid>/`` layout under ``<data_dir>/imagenet``; the three
    official files there (checked against their md5s, then unpacked into that layout,
    per-class tars in parallel and resumable); or an unpacked train layout plus the flat
    validation folder and the devkit. Otherwise it stops with the manual steps. Labels
    follow sorted wnid order (torchvision's ImageFolder convention). The file list is read
    once and cached next to the data (``.index-<split>.npz``), or, where the data folder
    cannot be written (a read-only mount), in ``$XDG_CACHE_HOME/jepa_datamodules/index``.

    The Hugging Face release (``source="parquet"``) is read in place: see ``__init__``.
    """

    spec_name = "imagenet"

    def __init__(self, *args: Any, source: str = "auto", **kwargs: Any):
        """Where the images come from, then the arguments of ``JEPADataModule``.

        Args:
            source: ``"parquet"`` reads the Hugging Face release
                (``<data_dir>/imagenet/data/{train,validation,test}-*.parquet``, see
                ``hfparquet.py``) in place, with the same label ids (sorted-wnid order) and a
                ``test`` split of 100,000 unlabelled rows; ``"folders"`` the layout above;
                ``"auto"`` the shards when they are there and neither a ``train/`` folder nor
                the official train archive is ["auto"].
            *args: passed on to ``JEPADataModule``.
            **kwargs: passed on to ``JEPADataModule`` (``data_dir``, ``batch_size``, ``mask``, ...).
        """
        if source not in IMAGENET_SOURCES:
            raise ValueError(f"Unknown value '{source}' for argument source. Valid values are {{{', '.join(IMAGENET_SOURCES)}}}.")
        self.source = source
        super().__init__(*args, **kwargs)

    def build_spec(self) -> DatasetSpec:
        spec = get_spec(self.spec_name)
        return parquet_spec(spec) if self._reads_parquet(dataset_folder(self.hparams.data_dir, spec)) else spec

    def _reads_parquet(self, folder: Path) -> bool:
        """``source="auto"``: the Hugging Face shards when ``data/train-*.parquet`` is there and
        no ``train/`` folder (or the official archives) are."""
        if self.source != "auto":
            return self.source == "parquet"
        from .formats.hfparquet import has_parquet
        from .formats.imagenet import TRAIN_TAR

        return has_parquet(folder) and not (folder / "train").is_dir() and not (folder / TRAIN_TAR).exists()

    @property
    def parquet(self) -> bool:
        """True when this DataModule reads the Hugging Face parquet shards."""
        return self.spec.reader == "hfparquet"

    def open_split(self, split: str, whole: bool = False) -> Source:
        if self.hparams.format == "files" and self.parquet:
            from .formats.hfparquet import ParquetSource, parquet_shards

            prefixes = self.spec.options["parquet"]["prefixes"]
            if split not in prefixes:
                raise ValueError(f"Unknown value '{split}' for argument split of {self.spec.name}. "
                                 f"Valid values are {{{', '.join(prefixes)}}}.")
            shards = parquet_shards(self.folder, prefixes[split])
            if not shards:
                raise FileNotFoundError(f"{self.folder}/data holds no {prefixes[split]}-*.parquet shards; "
                                        "download them as `jepa-prepare data=imagenet instructions=true` shows.")
            return ParquetSource(shards)
        return super().open_split(split, whole)

    def acquire(self, folder: Path) -> dict[str, str]:
        from .formats.imagenet import prepare_imagenet

        if self.parquet:
            return {}  # read in place: nothing to unpack; verify() checks shards, rows and a sample
        known: dict[str, str] = {}
        for archive in self.spec.archives:
            path = folder / archive.filename
            if path.exists():
                known[archive.filename] = check_placed_archive(path, archive, self.command(), self.hparams.progress,
                                                               getattr(self, "_remembered_md5", {}))
        prepare_imagenet(folder, progress=self.hparams.progress)
        return known

    def reader_options(self) -> dict[str, Any]:
        return {"cache_key": self._listing_key}

    def verify(self, full: bool = False, known_md5: dict[str, str] | None = None) -> VerifyReport:
        if not self.parquet:
            return super().verify(full=full, known_md5=known_md5)
        return self._verify_parquet(full)

    def _verify_parquet(self, full: bool) -> VerifyReport:
        """Shards per split (as their names count them and as the release has them), rows per
        split, label range, and a seeded sample of images that must decode (all with ``full``)."""
        from .formats.hfparquet import parquet_shards, shard_problems

        facts, report = self.spec.options["parquet"], VerifyReport(self.spec.name, self.folder)
        rng = np.random.default_rng(self.hparams.seed)
        for split, prefix in facts["prefixes"].items():
            shards = parquet_shards(self.folder, prefix)
            problem = shard_problems(shards, facts["shards"].get(split))
            report.add(f"shards {prefix}", f"{facts['shards'].get(split)} files", problem or f"{len(shards)} files", problem is None)
            if problem is not None:
                report.blame(f"data/{prefix}-*.parquet")
                continue
            try:
                source = self.open_split(split)
            except ValueError as error:
                report.add(f"read {split}", "readable", str(error), False)
                continue
            expected = self.spec.splits[split]
            report.add(f"rows {split}", expected, len(source), len(source) == expected)
            labels = source.labels
            if split == "test":
                report.add("labels test", "all -1 (unpublished)", f"{int((labels >= 0).sum())} labelled", bool((labels < 0).all()))
            else:
                classes = self.num_classes
                in_range = bool(((labels >= 0) & (labels < classes)).all())
                found = len(np.unique(labels))
                report.add(f"classes {split}", classes, found if in_range else f"labels outside 0..{classes - 1}",
                           in_range and found == classes)
            count = len(source) if full else min(16, len(source))
            picks = sorted(rng.choice(len(source), size=count, replace=False).tolist()) if len(source) else []
            bad = [(i, why) for i in picks if (why := source.problem(i)) is not None]
            names = ", ".join(f"{source.name(i)} ({why})" for i, why in bad[:5])
            report.add(f"decode {split}", f"{count} of {count} decode", names or "all decode", not bad)
        return report

    def pending_writes(self) -> str | None:
        from .formats.imagenet import detect_source

        if self.parquet:
            return None  # the shards are read where they are: nothing to unpack
        if detect_source(self.folder) == "layout" and not any((self.folder / a.filename).exists() for a in self.spec.archives):
            return None
        return "the unpacked train/<wnid>/ and val/<wnid>/ class folders"

    def _listing_key(self, split_dir: Path) -> str:
        """Changes whenever a class folder gains or loses a file (its mtime changes)."""
        entries = sorted((e.name, e.stat().st_mtime_ns) for e in os.scandir(split_dir) if e.is_dir())
        return hashlib.sha1(repr(entries).encode()).hexdigest()

    def tracked_files(self) -> list[str]:
        if self.parquet:
            from .formats.hfparquet import SHARD_FOLDER, parquet_shards

            return [f"{SHARD_FOLDER}/{p.name}" for prefix in self.spec.options["parquet"]["prefixes"].values()
                    for p in parquet_shards(self.folder, prefix)]
        tracked = [a.filename for a in self.spec.archives if (self.folder / a.filename).exists()]
        for split in self.spec.splits:
            split_dir = self.folder / split
            tracked.append(split)
            tracked += sorted(f"{split}/{e.name}" for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith("."))
        return tracked


class ImageNet100DataModule(ImageNetDataModule):
    """ImageNet-100: the 100-class subset of CMC (Tian et al.), read from a prepared ImageNet-1k.

    No image is copied or linked: the subset is an index (file list + labels 0..99 in
    sorted-wnid order) over ``<data_dir>/imagenet``, cached in ``<data_dir>/imagenet100``.
    An index needs no extra inodes, works where symlinks do not (object-store mounts,
    some Windows shares) and is what the loader reads anyway. ``class_list``: a file with
    one wnid per line to use another subset [None = the packaged CMC list, sha256-checked].
    Over the Hugging Face parquet shards (``source``, as for ImageNet-1k) the subset is the
    rows whose label is one of these classes' ids.
    """

    spec_name = "imagenet100"

    def __init__(self, *args: Any, class_list: str | Path | None = None, **kwargs: Any):
        """The class subset, then the arguments of ``JEPADataModule``.

        Args:
            class_list: a text file with one wnid per line; None uses the packaged CMC list
                (sha256-checked).
            *args: passed on to ``JEPADataModule``.
            **kwargs: passed on to ``JEPADataModule`` (``data_dir``, ``batch_size``, ``mask``, ...).
        """
        from .formats.imagenet import load_class_list

        self.classes = load_class_list(Path(class_list) if class_list else None)
        super().__init__(*args, **kwargs)

    def build_spec(self) -> DatasetSpec:  # the parent detects the parquet shards, not this spec
        return get_spec(self.spec_name).replace(num_classes=len(self.classes))

    @functools.cached_property
    def parent(self) -> ImageNetDataModule:
        hp = self.hparams
        return ImageNetDataModule(data_dir=hp.data_dir, progress=hp.progress, download=False, force=False,
                                  source=self.source)

    def open_split(self, split: str, whole: bool = False) -> Source:
        if self.hparams.format == "files" and self.parent.parquet:
            return self._parquet_subset(split)
        return super().open_split(split, whole)

    def _parquet_subset(self, split: str) -> Source:
        """The rows of the parent's parquet split whose label is one of these classes, relabelled
        0..99 in sorted-wnid order (parquet label ids are sorted-wnid positions too)."""
        from .formats.hfparquet import imagenet1k_wnids

        if split not in self.spec.splits:
            raise ValueError(f"Unknown value '{split}' for argument split of {self.spec.name}. "
                             f"Valid values are {{{', '.join(self.spec.splits)}}}.")
        position = {wnid: i for i, wnid in enumerate(imagenet1k_wnids())}
        unknown = [w for w in self.classes if w not in position]
        if unknown:
            raise ValueError(f"Class {', '.join(unknown[:5])} is not one of the 1,000 ImageNet-1k classes; fix the class list.")
        ids = np.array(sorted(position[w] for w in self.classes), dtype=np.int64)
        base = self.parent.open_split(split)
        keep = np.flatnonzero(np.isin(base.labels, ids))
        return RelabeledSubset(base, keep, np.searchsorted(ids, base.labels[keep]))

    def acquire(self, folder: Path) -> dict[str, str]:
        self.parent.prepare_data()
        folder.mkdir(parents=True, exist_ok=True)
        return {}

    def pending_writes(self) -> str | None:
        return self.parent.pending_writes()

    def reader_options(self) -> dict[str, Any]:
        return {"root": self.parent.folder, "classes": self.classes, "cache_dir": self.folder,
                "cache_key": self._listing_key}

    def verify(self, full: bool = False, known_md5: dict[str, str] | None = None) -> VerifyReport:
        # Counts come from the parent: whatever ImageNet-1k holds for these classes.
        counts = {split: len(self.open_split(split)) for split in self.spec.splits}
        report = verify_dataset(self.spec.replace(archives=()), self.folder, self.open_split, splits=counts, full=full,
                                num_classes=self.num_classes, seed=self.hparams.seed)
        for split, count in counts.items():
            report.add(f"images {split}", "> 0", count, count > 0)
        report.prepare_command = self.command()
        return report

    def tracked_files(self) -> list[str]:
        parent = self.parent.folder
        return [str(parent / rel) for rel in self.parent.tracked_files() if not rel.endswith(".tar") and not rel.endswith(".gz")]


#: The share of train carved out as val when an image folder has no ``val/`` folder.
DEFAULT_VAL_FRACTION = 0.01


class ImageFolderDataModule(JEPADataModule):
    """Your own images: ``root/train/<class>/...`` (+ ``root/val/<class>/...``), or any folder.

    Images: .jpg .jpeg .png .webp .bmp in any case; hidden files and folders and other
    files are ignored; every image is converted to RGB; undecodable files are skipped
    (see ``ownfolder.py``) and listed by ``jepa-verify data=imagefolder``. Nothing is
    downloaded; ``prepare_data`` writes only the file index (``.index-<split>.npz``) and
    the verification stamp, into ``root``, or into a user cache folder when ``root`` is
    read-only (``ownfolder.state_folder``).
    """

    spec_name = "imagefolder"

    def __init__(self, *args: Any, root: str | Path | None = None, labels: str = "auto",
                 val_fraction: float | None = None, **kwargs: Any):
        """The folder and how to read it, then the arguments of ``JEPADataModule``.

        Args:
            root: the folder of images [None = ``<data_dir>/imagefolder``]. With a ``train/``
                sub-folder, that is the training split and ``val/`` (if present) the val split;
                otherwise every image under ``root`` is a training image.
            labels: ``"folders"`` (first folder level under the split = class, sorted names ->
                0..C-1, nested sub-folders allowed), ``"none"`` (every label -1, no probe) or
                ``"auto"`` (folders when every image of ``root/train`` is inside a class folder,
                or, without ``train/``, directly inside a first-level folder) ["auto"].
            val_fraction: [None = 0.01 (a seeded 1 % of train) when there is no ``val/``
                folder, 0 (the ``val/`` folder) when there is]; as for every dataset otherwise.
            *args: passed on to ``JEPADataModule``.
            **kwargs: passed on to ``JEPADataModule`` (``data_dir``, ``batch_size``, ``mask``, ...).
        """
        from .formats.ownfolder import LABEL_MODES

        if labels not in LABEL_MODES:
            raise ValueError(f"Unknown value '{labels}' for argument labels. Valid values are {{{', '.join(LABEL_MODES)}}}.")
        data_dir = kwargs.get("data_dir", args[0] if args else "data")
        self.root = Path(root if root is not None else Path(data_dir) / "imagefolder").expanduser()
        self.labels_mode = labels
        self.has_val_folder = (self.root / "train").is_dir() and (self.root / "val").is_dir()
        if val_fraction is None:
            val_fraction = 0.0 if self.has_val_folder else DEFAULT_VAL_FRACTION
        if not self.has_val_folder and val_fraction == 0:
            raise ValueError(f"val_fraction=0 leaves no validation images: {self.root} has no train/ + val/ folders; "
                             "allowed is 0 < val_fraction < 1 (a seeded share of the images), or add a val/ folder.")
        super().__init__(*args, val_fraction=val_fraction, **kwargs)
        self.hparams.root, self.hparams.labels = str(self.root), labels

    def build_spec(self) -> DatasetSpec:
        # Without a val/ folder the only split is train; setup carves val (and test) out of it.
        return get_spec(self.spec_name).replace(eval_split="val" if self.has_val_folder else "train")

    @property
    def folder(self) -> Path:
        from .formats.ownfolder import state_folder

        return state_folder(self.root)

    @property
    def split_dirs(self) -> dict[str, Path]:
        train = self.root / "train"
        if not train.is_dir():
            return {"train": self.root}
        return {"train": train, "val": self.root / "val"} if self.has_val_folder else {"train": train}

    @functools.cached_property
    def classes(self) -> list[str]:
        """Class names in label order (empty when unlabeled), from the training split."""
        return self._listing("train")[2]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def _listing(self, split: str) -> tuple[Path, list[str], list[str], np.ndarray]:
        """``(split folder, paths, classes, labels)`` of one split, through the index cache."""
        from .formats.ownfolder import folder_labels, list_images, listing_key

        dirs = self.split_dirs
        if split not in dirs:
            raise ValueError(f"Unknown value '{split}' for argument split of imagefolder. Valid values are {{{', '.join(dirs)}}}.")
        top = dirs[split]
        if not top.is_dir():
            raise FileNotFoundError(f"Image folder {top} does not exist; point data.root at the folder that holds your images.")
        paths = list_images(top, cache=self.folder / f".index-{split}.npz", cache_key=listing_key(top))
        if not paths:
            raise FileNotFoundError(f"{top} holds no images (looked for .jpg .jpeg .png .webp .bmp files, "
                                    "hidden ones excluded); point data.root at the folder that holds your images.")
        train_classes = None if split == "train" else self.classes
        mode = self.labels_mode if split == "train" else ("folders" if train_classes else "none")
        labels, classes = folder_labels(paths, mode, top, train_classes, nested=top != self.root)
        return top, paths, classes, labels

    def open_split(self, split: str, whole: bool = False) -> Source:
        if self.hparams.format != "files":
            return super().open_split(split, whole)
        from .formats.ownfolder import OwnFolderSource

        top, paths, _, labels = self._listing(split)
        return OwnFolderSource(top, paths, labels)

    #: Files per split that ``prepare_data`` decodes (a seeded sample); ``verify`` alone reads every file.
    PREPARE_SAMPLE = 64

    def prepare_data(self) -> None:
        if self.hparams.format == "files" and not self.root.is_dir():
            raise FileNotFoundError(f"Image folder {self.root} does not exist; point data.root at the folder that "
                                    "holds your images (nothing is downloaded for data=imagefolder).")
        # A large folder is not read whole before every first training run: the files not
        # sampled are checked as they are loaded (and skipped if damaged); jepa-verify lists them all.
        self._verify_sample = self.PREPARE_SAMPLE
        try:
            super().prepare_data()
        finally:
            self._verify_sample = None

    def acquire(self, folder: Path) -> dict[str, str]:
        folder.mkdir(parents=True, exist_ok=True)  # the index cache and the stamp; the images stay as they are
        return {}

    def verify(self, full: bool = False, known_md5: dict[str, str] | None = None) -> VerifyReport:
        """Images and classes per split, and every file checked: undecodable ones are listed
        (they are skipped in training). ``full`` also decodes every JPEG completely. Inside
        ``prepare_data`` only a seeded sample of ``PREPARE_SAMPLE`` files per split is checked."""
        report = VerifyReport(self.spec.name, self.folder)
        sample = getattr(self, "_verify_sample", None)
        for split in self.split_dirs:
            try:
                source = self.open_split(split)
            except (FileNotFoundError, ValueError) as error:
                report.add(f"read {split}", "readable", str(error), False)
                continue
            report.add(f"images {split}", "> 0", len(source), len(source) > 0)
            report.add(f"labels {split}", self.labels_mode, f"{len(self.classes)} class folders" if self.classes else "none (-1)", True)
            picks = range(len(source))
            if sample is not None and sample < len(source):
                picks = sorted(np.random.default_rng(self.hparams.seed).choice(len(source), sample, replace=False).tolist())
            bad = [(i, why) for i in picks if (why := source.problem(i, full=full)) is not None]
            report.add(f"decodable {split}", f"{len(picks)} of {len(picks)} checked",
                       f"{len(picks) - len(bad)} ({len(bad)} skipped)", len(bad) < len(picks))
            # Each undecodable file by name: training skips it (the next image of its class
            # stands in), so these rows do not fail the verification.
            for i, why in bad:
                report.add(f"skipped {split}/{source.paths[i]}", "decodes", why, True)
        return report

    def tracked_files(self) -> list[str]:
        """The split folders and their sub-folders two levels down (absolute paths): what ``listing_key`` watches."""
        tracked = []
        for top in self.split_dirs.values():
            tracked.append(str(top))
            for first in sorted(p for p in top.iterdir() if p.is_dir() and not p.name.startswith(".")):
                tracked.append(str(first))
                tracked += sorted(str(p) for p in first.iterdir() if p.is_dir() and not p.name.startswith("."))
        return tracked

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        if not self.has_val_folder:  # test = the carved-out val, not the whole train split
            self.datasets["test"] = self.datasets["val"]

    @property
    def val_description(self) -> str:
        """How val was made, for summaries."""
        if self.has_val_folder and not self.hparams.val_fraction:
            return f"the val/ folder of {self.root}"
        where = "the val/ folder is the test split" if self.has_val_folder else "no val/ folder used"
        return f"{self.hparams.val_fraction:.0%} of train, seeded (seed {self.hparams.seed}), {where}"

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "root": str(self.root), "labels": "folders" if self.classes else "none",
                "val": self.val_description}
