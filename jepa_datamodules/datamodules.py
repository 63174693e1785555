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
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from lightning import LightningDataModule

from . import download as dl
from .batching import JEPACollate, ViewDataset
from .catalog import DatasetSpec, dataset_folder, get_spec
from .readers import Source, SubsetSource, open_split
from .sampling import EpochBatchSampler, EpochDataLoader
from .transforms import EvalView, TrainView, check_crop_scale, normalize
from .verify import (
    VerificationError,
    VerifyReport,
    recorded_md5,
    remove_stamp,
    stamp_matches,
    verify_dataset,
    write_stamp,
)


class JEPADataModule(LightningDataModule):
    """Masked, augmented JEPA batches for the dataset named by ``spec_name``.

    Args (defaults in brackets):
        data_dir: root of all datasets; this one lives in ``<data_dir>/<name>`` ["data"].
        batch_size: batch size *per device* (per DDP rank) [128]; the global batch is
            ``batch_size * world_size``. global_batch_size: the total over all devices
            instead, split evenly; it must be a multiple of the world size [None].
        num_workers: loader processes [4]. pin_memory: [None = only when CUDA is present].
        persistent_workers: [None = only when num_workers > 0]. prefetch_factor: batches
            per worker in flight [None = 2 when num_workers > 0]. drop_last: train only [True].
        image_size / patch_size: output side and ViT patch, pixels [spec defaults];
            image_size must be a multiple of patch_size.
        crop_scale: random-resized-crop area range [(0.3, 1.0)]; crop_ratio [(3/4, 4/3)];
            hflip [True]; color_jitter: strength, 0 = off [0.0]; eval_crop_fraction [0.875].
        normalize_on_device: uint8 batches from the loader, normalized on the training
            device in ``on_after_batch_transfer`` [True]; False normalizes in the workers.
        val_fraction: carve val out of train with a seeded split [0.0 = official split].
        seed: drives the split, the shuffles, the augmentations and the masks [0].
        mask: a mask generator from ``jepa_datamodules.masks`` (or None for no masks).
        download: fetch missing archives [True]. mirrors: base URLs tried before upstream [()].
        force: fetch and extract again even if verified [False]. keep_archives [True].
        retries / timeout: per URL, seconds [4 / 30.0]. progress: bars [None = when a TTY].
        format: where items come from: ``"files"``, the dataset's own files under
            ``data_dir`` ["files"], or ``"litdata"``, LitData optimized chunks written by
            ``jepa-prepare data=<name> format=litdata output=<where>``, read from ``input``.
        input: the folder or URL (``s3://bucket/prefix``) given as ``output`` to that
            conversion; only with ``format="litdata"`` [None].
        storage_options: LitData's connection options for remote ``input`` / ``output``
            (S3: boto3 client arguments, e.g. ``{"endpoint_url": "http://minio:9000"}``)
            [None = boto3's defaults and ``AWS_*`` environment variables].
        stream_cache_dir: LitData's local cache for remote ``input`` [None = LitData's default].

    The Hydra data configs leave the LitData keys out to stay short; add them with ``+``:
    ``jepa-fit data=cifar10 +data.format=litdata +data.input=s3://bucket/cifar10``
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
        val_fraction: float = 0.0,
        seed: int = 0,
        mask: Any = None,
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
        self.spec: DatasetSpec = spec
        self.grid = (image_size // patch_size, image_size // patch_size)
        self.mask_generator = mask.with_grid(self.grid) if mask is not None else None
        self.train_view = TrainView(image_size, crop_scale, crop_ratio, hflip, color_jitter)
        self.eval_view = EvalView(image_size, eval_crop_fraction)
        self.datasets: dict[str, ViewDataset] = {}
        self.train_sampler: EpochBatchSampler | None = None
        self._position = {"epoch": 0, "next_batch": 0}
        self._resume: dict | None = None

    # ------------------------------------------------------------------ the dataset
    def build_spec(self) -> DatasetSpec:
        """The spec this DataModule reads; subclasses with options adjust it here."""
        return get_spec(self.spec_name)

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

            return LitDataSource(split_url(hp.input, split), storage_options=hp.storage_options,
                                 cache_dir=hp.stream_cache_dir)
        options = self.reader_options()
        if whole:
            options = {key: value for key, value in options.items() if key not in self.subset_options}
        return open_split(self.spec, self.folder, split, **options)

    # -------------------------------------------------------------- prepare / verify
    def prepare_data(self) -> None:
        """Fetch (when ``download``), extract and verify under a lock; no state assigned.
        With ``format="litdata"`` there is nothing to fetch: the chunks are read where they are."""
        if self.hparams.format == "litdata":
            return
        folder = self.folder
        with dl.dataset_lock(folder):
            if not self.hparams.force and stamp_matches(folder, self.spec):
                return
            # Archives the last verification hashed and that are unchanged need no second hash.
            remembered = {} if self.hparams.force else recorded_md5(folder)
            remove_stamp(folder)
            known_md5 = {**remembered, **self.acquire(folder)}
            report = self.verify(known_md5=known_md5)
            if not report.ok:
                raise VerificationError(report)
            write_stamp(folder, self.spec, report, self.tracked_files())

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
                dl.fetch(urls, landing, md5=archive.md5, size=archive.size, retries=hp.retries,
                         timeout=hp.timeout, progress=hp.progress)
                os.replace(landing, path)
                known[archive.filename] = archive.md5
            if target is not None:
                dl.safe_extract(path, target, progress=hp.progress)
                if not hp.keep_archives:
                    path.unlink()
        return known

    def verify(self, full: bool = False, known_md5: dict[str, str] | None = None) -> VerifyReport:
        """Check the dataset on disk against its spec (see ``verify.verify_dataset``)."""
        return verify_dataset(self.spec, self.folder, functools.partial(self.open_split, whole=True), full=full,
                              known_md5=known_md5,
                              md5=lambda p: dl.file_md5(p, progress=self.hparams.progress),
                              num_classes=self.num_classes, seed=self.hparams.seed)

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
        stats = None if hp.normalize_on_device else (self.spec.mean, self.spec.std)
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

    def train_dataloader(self) -> EpochDataLoader:
        loader = self._loader("train", shuffle=True, drop_last=self.hparams.drop_last, masks=True)
        self.train_sampler = loader.sampler
        if self._resume is not None:
            # Lightning then calls set_epoch with its own (restored) epoch before the first
            # batch is drawn; if that is a later epoch, the sampler starts it from batch 0.
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
        from .synthetic import generate

        if self.hparams.force or not all((folder / f).exists() for f in self.spec.files):
            generate(folder, seed=self.hparams.seed, progress=self.hparams.progress, **self._synthetic)
        return {}


class CIFAR10DataModule(JEPADataModule):
    """CIFAR-10: 50,000 train / 10,000 test images, 32x32, 10 classes; auto-download."""

    spec_name = "cifar10"


class CIFAR100DataModule(JEPADataModule):
    """CIFAR-100: as CIFAR-10 with 100 fine classes; ``label_type="coarse"`` gives the 20 superclasses."""

    spec_name = "cifar100"

    def __init__(self, *args: Any, label_type: str = "fine", **kwargs: Any):
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


class ImageNetDataModule(JEPADataModule):
    """ImageNet-1k (ILSVRC2012): 1,281,167 train / 50,000 val JPEGs, 1,000 classes.

    Cannot be downloaded automatically. ``prepare_data`` accepts, in this order: the
    ``train/<wnid>/`` + ``val/<wnid>/`` layout under ``<data_dir>/imagenet``; the three
    official files there (checked against their md5s, then unpacked into that layout,
    per-class tars in parallel and resumable); or an unpacked train layout plus the flat
    validation folder and the devkit. Otherwise it stops with the manual steps. Labels
    follow sorted wnid order (torchvision's ImageFolder convention). The file list is read
    once and cached next to the data (``.index-<split>.npz``).
    """

    spec_name = "imagenet"

    def acquire(self, folder: Path) -> dict[str, str]:
        from .imagenet import prepare_imagenet

        known: dict[str, str] = {}
        for archive in self.spec.archives:
            path = folder / archive.filename
            if path.exists():
                digest = dl.file_md5(path, progress=self.hparams.progress)
                if digest != archive.md5:
                    raise dl.DownloadError(f"{path} has md5 {digest}, expected {archive.md5}; the file is damaged or "
                                           f"is not the official {archive.filename}: download it again.")
                known[archive.filename] = digest
        prepare_imagenet(folder, progress=self.hparams.progress)
        return known

    def reader_options(self) -> dict[str, Any]:
        return {"cache_key": self._listing_key}

    def _listing_key(self, split_dir: Path) -> str:
        """Changes whenever a class folder gains or loses a file (its mtime changes)."""
        entries = sorted((e.name, e.stat().st_mtime_ns) for e in os.scandir(split_dir) if e.is_dir())
        return hashlib.sha1(repr(entries).encode()).hexdigest()

    def tracked_files(self) -> list[str]:
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
    """

    spec_name = "imagenet100"

    def __init__(self, *args: Any, class_list: str | Path | None = None, **kwargs: Any):
        from .imagenet import load_class_list

        self.classes = load_class_list(Path(class_list) if class_list else None)
        super().__init__(*args, **kwargs)

    def build_spec(self) -> DatasetSpec:
        return get_spec(self.spec_name).replace(num_classes=len(self.classes))

    @functools.cached_property
    def parent(self) -> ImageNetDataModule:
        hp = self.hparams
        return ImageNetDataModule(data_dir=hp.data_dir, progress=hp.progress, download=False, force=False)

    def acquire(self, folder: Path) -> dict[str, str]:
        self.parent.prepare_data()
        folder.mkdir(parents=True, exist_ok=True)
        return {}

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
        return report

    def tracked_files(self) -> list[str]:
        parent = self.parent.folder
        return [str(parent / rel) for rel in self.parent.tracked_files() if not rel.endswith(".tar") and not rel.endswith(".gz")]
