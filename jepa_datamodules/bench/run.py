"""``jepa-bench``: this package's loader against a plain torchvision pipeline, side by side.

One invocation runs both pipelines on the same images, batch size, image size and worker
count, one after the other in the same process:

* **baseline**: what a straightforward training script does (the pipeline the design
  notes start from): a torch ``Dataset`` that yields a PIL image per item from the same
  source, torchvision's PIL transforms per sample (``RandomResizedCrop`` -> flip ->
  ``ColorJitter`` when jitter is on -> ``ToTensor`` -> ``Normalize``, with the DataModule's
  crop, flip and jitter settings), the default collate function, ``shuffle=True``;
* **ours (views in workers)**: the DataModule's ``train_dataloader()`` with
  ``views_on="workers"``, masks included: uint8 views at the output size;
* **ours (views on device)**: the same with ``views_on="device"``: the workers send native
  pixels or the encoded files plus each sample's view parameters. The device stage that
  then builds the views (``on_after_batch_transfer``: transfer, decode, crop/resize, flip,
  jitter, normalize) is timed separately on the batches this loader delivered, on CUDA
  when there is one, else on this CPU (where a real run would choose the workers path).

Ours runs first (both modes), so whatever that leaves in the page cache helps the baseline.
Reported per pipeline: images/s over ``bench.batches`` batches after ``bench.warmup``
more, time to the first batch, and peak memory of the loader processes (main + workers)
as PSS from ``/proc/<pid>/smaps_rollup``, so pages the workers share with the main process
are counted once. Also: the mask collator's ms/batch (ours and the per-sample baseline of
``bench_masks``), device-side normalization ms/batch, a second ``prepare_data()`` on the
verified dataset (a stamp hit), and per-image CPU costs measured in isolation (1 thread),
including each JPEG decoder's for file datasets -- what bounds the ratio there.

Data: the real dataset when it is already prepared; otherwise (or with
``bench.synthetic_like=<name>``) a generated stand-in in the dataset's own on-disk format
(CIFAR pickles, STL-10 binaries, an ImageNet ``train/<wnid>/`` JPEG folder with
ImageNet-like sizes), cached under ``<data_dir>/bench-standins``. The bench never
downloads: run ``jepa-prepare data=<name>`` first to measure the real thing. A stand-in's
image counts differ from the catalog's, so its DataModule gets those counts as a catalog
override (announced on stdout and recorded in the JSON); every other check of
``prepare_data`` applies unchanged.
"""

from __future__ import annotations

import contextlib
import gc
import io
import itertools
import json
import math
import os
import platform
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from omegaconf import DictConfig
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..catalog import DatasetSpec
from ..choices import choice_message
from ..progress import progress_bar
from ..formats.base import Source
from ..formats.writing import balanced_labels, photo_like, texture_bank
from ..storage.files import atomic_write_text, staging_folder
from .masks import median_ms
from ..errors import ConfigError

# Which stand-ins exist: the dataset name -> the writer of its on-disk format.
STANDIN_KINDS = ("cifar10", "cifar100", "stl10", "imagenet")
# Bumped whenever a writer's output changes, so an old cached stand-in is not reused.
_STANDIN_VERSION = 2
# A stand-in holds enough training images that one epoch covers the first batch, the
# warm-up and the timed batches (no epoch boundary, hence no pipeline drain, inside the
# timed window), and at least these (a few seconds of writing at most).
_STANDIN_MIN_TRAIN = {"cifar10": 5000, "cifar100": 5000, "stl10": 2000, "imagenet": 320}
# ImageNet-1k's most common sizes (width, height): 500x375 landscape dominates, then
# portrait and 500x333 (3:2) and squares; weights are round figures, not measured shares.
_IMAGENET_SIZES = ((500, 375), (375, 500), (500, 333), (333, 500), (500, 500))
_IMAGENET_SIZE_WEIGHTS = (0.5, 0.15, 0.15, 0.1, 0.1)
_IMAGENET_STANDIN_CLASSES = 10
# The parquet stand-in: at most this many rows per shard (the release's train shards hold
# ~4,360: 1,281,167 rows in 294 shards); row groups of 100 rows, as the release's writer.
_PARQUET_SHARD_ROWS = 1000
# Quality 90 with 4:2:0 chroma subsampling (Pillow's default) gives ~105 KB for a 500x375
# stand-in image; ImageNet-1k's train JPEGs average ~110 KB (138 GB / 1.28 M files).
_JPEG_QUALITY = 90
# Memory is sampled this often (seconds), and at the start and end of the timed window.
# Reading smaps_rollup walks the page tables: ~20 ms of CPU per loader process here, so
# sampling much faster would itself load the 2-core machines this runs on.
_PSS_INTERVAL_S = 1.0


# ============================================================== the entry point
def run_bench(cfg: DictConfig, output_dir: str | Path | None = None) -> dict[str, Any]:
    """Run both pipelines as configured by ``cfg`` (the composed ``jepa-bench`` config).

    ``cfg.bench``: ``batches`` [30] timed batches per pipeline, ``warmup`` [3] batches
    received (after the first) before timing starts, ``synthetic_like`` [null = real data
    when prepared, else a stand-in], ``standin_images`` [null = enough for one epoch],
    ``mask_repeats`` [20] timed calls per mask generator, ``isolated_samples`` [32] images
    timed one by one. ``output_dir`` [None = Hydra's run directory, else the current
    directory] receives ``bench.json``. Returns what the JSON holds.
    """
    if cfg.bench.get("mode", "pipelines") != "pipelines":
        raise ConfigError(f"bench.mode={cfg.bench.mode} is not run by run_bench, which compares pipelines (bench=default); "
                         "bench=sources runs through jepa_datamodules.bench.sources.run_sources (jepa-bench picks it).")
    settings = _check_settings(cfg.bench)
    load_before = os.getloadavg()
    dm, data = build_bench_datamodule(cfg, settings)
    start = time.perf_counter()
    dm.prepare_data()
    first_prepare = time.perf_counter() - start
    start = time.perf_counter()
    dm.prepare_data()  # verified a moment ago: this one should only find the stamp
    second_prepare = time.perf_counter() - start
    dm.setup("fit")
    source = dm.datasets["train"].source
    data["train_images"] = len(source)
    hp = dm.hparams
    batch_size = dm.per_device_batch_size()
    workers = int(hp.num_workers)
    needed = (1 + settings["warmup"] + settings["batches"]) * batch_size
    if len(source) < needed:
        print(f"note: {len(source)} training images are fewer than the {needed} the bench reads; both pipelines "
              "wrap around into a new epoch (each boundary drains the loader once).")

    report: dict[str, Any] = {
        "dataset": dm.spec.name,
        "data": data,
        "settings": {
            "batch_size": batch_size, "num_workers": workers, "image_size": int(hp.image_size),
            "patch_size": int(hp.patch_size), "grid": list(dm.grid), "masks": _mask_name(dm.mask_generator),
            "crop_scale": list(dm.train_view.crop_scale), "crop_ratio": list(dm.train_view.crop_ratio),
            "hflip": dm.train_view.hflip, "color_jitter": dm.train_view.color_jitter,
            "batches": settings["batches"], "warmup": settings["warmup"], "order": ["ours", "ours_device", "baseline"],
        },
        "machine": _machine(),
        "prepare_data_s": {"first": first_prepare, "again": second_prepare},
    }
    report["isolated_cpu_ms_per_image"] = isolated_costs(source, dm, settings["isolated_samples"])
    report["masks_ms_per_batch"] = _mask_timings(dm, batch_size, settings["mask_repeats"])

    held: list[dict[str, Any]] = []
    with _views_on(dm, "workers"):
        ours = measure_loader("ours", dm.train_dataloader, settings, keep=held)
    report["settings"]["loader"] = ours.pop("loader_settings")
    report["normalize_ms_per_batch"] = _normalize_timing(dm, held[0]["images"]) if held else None
    held.clear()
    with _views_on(dm, "device"):
        ours_device = measure_loader("ours, views on device", dm.train_dataloader, settings, keep=held)
    ours_device.pop("loader_settings")
    report["device_stage_ms_per_batch"] = _device_stage_timing(dm, held[0]) if held else None
    held.clear()
    baseline = measure_loader("baseline", lambda: baseline_loader(source, dm, batch_size, workers), settings)
    baseline.pop("loader_settings")
    report["ours"], report["ours_device"], report["baseline"] = ours, ours_device, baseline
    rate = baseline["images_per_s"]
    report["ratio"] = ours["images_per_s"] / rate if rate else None
    report["ratio_device"] = ours_device["images_per_s"] / rate if rate else None
    report["machine"]["load_average"] = {"before": list(load_before), "after": list(os.getloadavg())}
    return write_report(report, output_dir, format_report)


def write_report(report: dict[str, Any], output_dir: str | Path | None,
                 format: Callable[[dict[str, Any]], str]) -> dict[str, Any]:
    """``report`` written atomically as ``bench.json`` into the run directory, then printed by ``format``."""
    path = _output_dir(output_dir) / "bench.json"
    atomic_write_text(path, json.dumps(report, indent=1))
    report["json"] = str(path)
    print(format(report))
    return report


def setting_count(bench: DictConfig, name: str, low: int) -> int:
    """``bench.<name>``, an integer >= ``low``, or one sentence saying so."""
    value = bench.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(f"bench.{name}={value} is invalid; allowed is an integer >= {low}.")
    return value


def _check_settings(bench: DictConfig) -> dict[str, Any]:
    def count(name: str, low: int) -> int:
        return setting_count(bench, name, low)

    kind = bench.get("synthetic_like")
    if kind is not None and kind not in STANDIN_KINDS:
        raise ConfigError(choice_message(kind, STANDIN_KINDS, "bench.synthetic_like",
                                        note=" (or null: the real data when prepared, else a stand-in)"))
    standin_images = bench.get("standin_images")
    if standin_images is not None:
        standin_images = count("standin_images", 1)
    return {"batches": count("batches", 1), "warmup": count("warmup", 0), "synthetic_like": kind,
            "standin_images": standin_images, "mask_repeats": count("mask_repeats", 1),
            "isolated_samples": count("isolated_samples", 1)}


def _output_dir(output_dir: str | Path | None) -> Path:
    if output_dir is None:
        try:
            from hydra.core.hydra_config import HydraConfig

            output_dir = HydraConfig.get().runtime.output_dir
        except ValueError:  # not running under Hydra
            output_dir = Path.cwd()
    path = Path(output_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _mask_name(mask_generator: Any) -> str:
    return "none" if mask_generator is None else type(mask_generator).__name__


def _machine() -> dict[str, Any]:
    try:
        import simplejpeg

        simplejpeg_version = simplejpeg.__version__
    except ImportError:
        simplejpeg_version = None
    import torchvision

    cuda = torch.cuda.is_available()
    return {
        "cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
        "pillow": Image.__version__, "simplejpeg": simplejpeg_version,
        "cuda_device": torch.cuda.get_device_name(0) if cuda else None,
    }


# ================================================================== the data
def build_bench_datamodule(cfg: DictConfig, settings: dict[str, Any]):
    """The DataModule to measure and a description of its data (real, or which stand-in).

    Real data when ``synthetic_like`` is null and the dataset is already verified on disk
    (or is the synthetic dataset, which ``prepare_data`` generates); otherwise a stand-in
    written under ``<data_dir>/bench-standins`` whose counts replace the spec's.
    """
    import hydra

    from ..preparation import is_prepared

    dm = hydra.utils.instantiate(cfg.data)
    name = dm.spec.name
    kind = settings["synthetic_like"]
    if kind is not None and kind != name:
        raise ConfigError(f"bench.synthetic_like={kind} does not match data={name}; a stand-in imitates the dataset "
                         f"being benchmarked, so use data={kind} bench.synthetic_like={kind}.")
    if kind is None and (name == "synthetic" or is_prepared(dm.data)):
        return dm, {"kind": "real", "folder": str(dm.folder)}
    if name not in STANDIN_KINDS:
        raise ConfigError(f"{name} is not prepared at {dm.folder} and has no stand-in (stand-ins exist for "
                         f"{', '.join(STANDIN_KINDS)}); run `jepa-prepare data={name}` first.")
    if kind is None:
        print(f"note: {dm.spec.title} is not prepared at {dm.folder}; benchmarking a generated stand-in in its format "
              f"(run `jepa-prepare data={name}` first to measure the real data).")
    batch_size = dm.per_device_batch_size()
    needed = (1 + settings["warmup"] + settings["batches"]) * batch_size
    train = settings["standin_images"] or max(_STANDIN_MIN_TRAIN[name], needed)
    layout = "-parquet" if dm.spec.reader == "hfparquet" else ""  # data.source=parquet: the Hugging Face shards
    root = Path(cfg.data.data_dir).expanduser() / "bench-standins" / f"{name}{layout}-{train}-v{_STANDIN_VERSION}"
    standin = hydra.utils.instantiate(cfg.data, data_dir=str(root))
    counts = write_standin(standin.spec, standin.folder, train, seed=int(cfg.seed))
    splits, num_classes = apply_standin_counts(standin, counts)
    print(f"note: stand-in {name} at {standin.folder}: catalog override splits={splits}, classes={num_classes}.")
    return standin, {"kind": "stand-in", "folder": str(standin.folder), "catalog_override":
                     {"splits": splits, "num_classes": num_classes}}


def apply_standin_counts(standin, counts: dict[str, Any]) -> tuple[dict[str, int], int]:
    """The catalog override: ``standin``'s spec takes the stand-in's own counts (``write_standin``'s);
    checksums, files and decoding checks stay unchanged. Returns the splits and class count."""
    splits = {split: counts[split] for split in standin.spec.splits}
    num_classes = counts.get("num_classes", standin.spec.num_classes)
    standin.data.spec = standin.spec.replace(splits=splits, num_classes=num_classes)
    if standin.spec.reader == "hfparquet":  # the shard counts the verification expects are the stand-in's too
        facts = {**standin.spec.options["parquet"], "splits": splits, "shards": counts["shards"]}
        standin.data.spec = standin.spec.replace(options={**standin.spec.options, "parquet": facts})
    return splits, num_classes


def write_standin(spec: DatasetSpec, folder: Path, train_images: int, seed: int = 0) -> dict[str, int]:
    """Write a stand-in for ``spec`` into ``folder`` (once; reused while it exists); returns its counts.

    The folder appears complete or not at all (written beside it, then renamed).
    ``train_images`` is the pre-training split's size; other splits are sized from it.
    """
    counts = _standin_counts(spec, train_images)
    folder = Path(folder)
    if folder.is_dir():
        return counts
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_folder(folder)  # not mkdtemp: its 0700 would stick to the stand-in
    try:
        rng = np.random.default_rng(seed)
        writer = {"cifar": _write_cifar, "stl10": _write_stl10, "imagefolder": _write_imagenet,
                  "hfparquet": _write_imagenet_parquet}[spec.reader]
        writer(spec, staging, counts, rng)
        os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return counts


def _standin_counts(spec: DatasetSpec, train_images: int) -> dict[str, int]:
    if spec.reader == "cifar":
        # Every class in every split (the verifier counts classes), and a whole number per batch file.
        per_file = len(spec.options["train_files"])
        classes = spec.options.get("num_classes", {}).get("fine", spec.num_classes)
        train = max(train_images, classes * per_file)
        train = math.ceil(train / per_file) * per_file
        return {"train": train, "test": max(classes, min(10_000, train // 5))}
    if spec.reader == "stl10":
        # Real STL-10 has 20 unlabeled images per labeled one (100,000 / 5,000).
        labeled = max(spec.num_classes, min(5000, train_images // 21))
        unlabeled = max(1, train_images - labeled)
        return {"train": labeled, "unlabeled": unlabeled, "train+unlabeled": labeled + unlabeled,
                "test": max(spec.num_classes, min(8000, labeled * 8 // 5))}  # real: 8,000 test per 5,000 train
    classes = _IMAGENET_STANDIN_CLASSES
    train = max(train_images, classes)
    counts = {"train": train, "val": max(classes, train // 8), "num_classes": classes}
    if spec.reader == "hfparquet":
        counts["test"] = classes
        counts["shards"] = {split: math.ceil(counts[split] / _PARQUET_SHARD_ROWS) for split in ("train", "val", "test")}
    return counts


def _shapes(labels: np.ndarray, side: int, rng: np.random.Generator) -> np.ndarray:
    """Images with spatial structure (the synthetic dataset's shapes), in chunks to bound memory."""
    from ..formats.synthetic import CLASS_NAMES, render

    kinds = labels % len(CLASS_NAMES)
    chunk = max(1, 2_000_000 // (side * side))  # render holds float64 planes: ~50 MB per chunk
    return np.concatenate([render(kinds[i:i + chunk], side, rng) for i in range(0, len(kinds), chunk)])


def _write_cifar(spec: DatasetSpec, folder: Path, counts: dict[str, int], rng: np.random.Generator) -> None:
    """CIFAR's pickled batches (formats/cifar.py's writer), images of shapes."""
    from ..formats.cifar import write_cifar

    fine_classes = spec.options.get("num_classes", {}).get("fine", spec.num_classes)
    labels = {split: balanced_labels(counts[split], fine_classes, rng) for split in ("train", "test")}
    write_cifar(spec, folder, {split: _shapes(values, 32, rng) for split, values in labels.items()}, labels)


def _write_stl10(spec: DatasetSpec, folder: Path, counts: dict[str, int], rng: np.random.Generator) -> None:
    """STL-10's binaries (formats/stl10.py's writer), images of shapes written in chunks of
    2,000, so a full-size unlabeled split never sits in memory."""
    from ..formats.stl10 import write_stl10

    labels = {split: balanced_labels(counts[split], spec.num_classes, rng) for split in ("train", "test", "unlabeled")}
    def chunks(values: np.ndarray) -> Iterator[np.ndarray]:
        for start in range(0, len(values), 2000):
            yield _shapes(values[start:start + 2000], 96, rng)

    train = counts["train"]
    folds = [np.sort(rng.choice(train, size=max(1, train // 5), replace=False)) for _ in range(10)]
    write_stl10(spec, folder, {split: chunks(values) for split, values in labels.items()}, {"train": labels["train"], "test": labels["test"]}, folds)


def _photo_jpeg(rng: np.random.Generator, bank: list[np.ndarray], bar: Any) -> bytes:
    """A photo-like JPEG of an ImageNet-like size, counted on ``bar``."""
    width, height = _IMAGENET_SIZES[rng.choice(len(_IMAGENET_SIZES), p=_IMAGENET_SIZE_WEIGHTS)]
    buffer = io.BytesIO()
    photo_like(rng, bank, width, height).save(buffer, format="JPEG", quality=_JPEG_QUALITY)
    bar.update()
    return buffer.getvalue()


def _write_imagenet(spec: DatasetSpec, folder: Path, counts: dict[str, int], rng: np.random.Generator) -> None:
    """The prepared ``train/<wnid>/`` + ``val/<wnid>/`` layout (formats/imagenet.py's writer) of
    photo-like JPEGs with ImageNet-like sizes, in the first classes of the packaged ImageNet-100 list."""
    from ..formats.imagenet import load_class_list, write_imagenet_layout

    wnids = load_class_list()[:counts["num_classes"]]
    labels = {split: [wnids[i] for i in np.sort(balanced_labels(counts[split], len(wnids), rng))] for split in ("train", "val")}
    bank = texture_bank(rng)
    with progress_bar(counts["train"] + counts["val"], "writing ImageNet stand-in", unit="images") as bar:
        write_imagenet_layout(folder, labels, lambda: _photo_jpeg(rng, bank, bar))


def _write_imagenet_parquet(spec: DatasetSpec, folder: Path, counts: dict[str, int], rng: np.random.Generator) -> None:
    """The Hugging Face release's shards (formats/hfparquet.py's writer) of photo-like JPEGs,
    at most 1,000 rows a shard, labels shuffled across shards."""
    from ..formats.hfparquet import write_hf_parquet

    labels = {split: (np.full(counts[split], -1) if split == "test" else balanced_labels(counts[split], counts["num_classes"], rng))
              for split in ("train", "val", "test")}
    bank = texture_bank(rng)
    with progress_bar(sum(map(len, labels.values())), "writing ImageNet parquet stand-in", unit="images") as bar:
        write_hf_parquet(spec, folder, labels, counts["shards"], lambda: _photo_jpeg(rng, bank, bar))


class PlainPILDataset(Dataset):
    """The baseline's dataset: one RGB PIL image per item from ``source``, then ``transform``.

    What torchvision's CIFAR10 / ImageFolder do: ``Image.fromarray`` on an array source,
    ``Image.open(...).convert("RGB")`` (a full decode) on a file source. Items are
    ``(transform(image), label)``.
    """

    def __init__(self, source: Source, transform: Callable[[Image.Image], Any]):
        self.source = source
        self.transform = transform

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        item = self.source.load(index)
        image = Image.fromarray(np.asarray(item)) if isinstance(item, np.ndarray) else item.convert("RGB")
        return self.transform(image), int(self.source.labels[index])


def baseline_transform(dm) -> Callable[[Image.Image], torch.Tensor]:
    """torchvision PIL transforms with the DataModule's crop, flip, jitter and statistics."""
    import torchvision.transforms as T

    view = dm.train_view
    steps: list[Any] = [T.RandomResizedCrop(view.image_size, scale=view.crop_scale, ratio=view.crop_ratio)]
    if view.hflip:
        steps.append(T.RandomHorizontalFlip())
    if view.color_jitter > 0:
        s = view.color_jitter
        steps.append(T.ColorJitter(brightness=s, contrast=s, saturation=s))
    steps += [T.ToTensor(), T.Normalize(dm.spec.mean, dm.spec.std)]
    return T.Compose(steps)


def baseline_loader(source: Source, dm, batch_size: int, workers: int) -> DataLoader:
    """The baseline DataLoader: per-sample PIL transforms, default collate, shuffled, same workers."""
    generator = torch.Generator().manual_seed(int(dm.hparams.seed))
    return DataLoader(PlainPILDataset(source, baseline_transform(dm)), batch_size=batch_size, shuffle=True,
                      num_workers=workers, drop_last=True, generator=generator,
                      pin_memory=torch.cuda.is_available())


# ============================================================ measuring loaders
def _child_pids(parent: int) -> list[int]:
    children = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                stat = handle.read()
        except OSError:  # the process ended while we looked
            continue
        # Field 4 is the parent pid; the name (field 2) may hold spaces, so split after it.
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
            children.append(int(entry))
    return children


def process_pss_kb(pid: int) -> dict[str, int] | None:
    """``Pss``, ``Pss_Anon``, ``Pss_File`` and ``Pss_Shmem`` of a process in kB, or None when unreadable."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    values = {}
    for line in lines:
        key, _, rest = line.partition(":")
        if key.startswith("Pss"):
            values[key] = int(rest.split()[0])
    return values or None


class PssSampler:
    """Samples the summed PSS of this process and its children every ``interval`` seconds.

    ``peak`` is the largest total seen, in MB, with its breakdown (anon, file, shmem) and
    the number of processes counted; None where ``/proc/<pid>/smaps_rollup`` is missing
    (non-Linux, kernels before 4.14).
    """

    def __init__(self, interval: float = _PSS_INTERVAL_S, exclude: frozenset[int] = frozenset(),
                 watch: Callable[[], Any] | None = None):
        self.interval = interval
        self.exclude = exclude  # children that are not part of the loader (the sources bench's S3 server)
        self.watch = watch  # called with every sample (the sources bench: a cache folder's size)
        self.peak: dict[str, Any] | None = None
        self.sampler_cpu_s = 0.0  # CPU the background thread spent sampling (subtracted from timings)
        self._lock = threading.Lock()  # the main thread samples too, at the edges of the timed window
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pss-sampler", daemon=True)

    def __enter__(self) -> "PssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            start = time.thread_time()
            self.sample()
            self.sampler_cpu_s += time.thread_time() - start

    def sample(self) -> None:
        if self.watch is not None:
            self.watch()
        totals: dict[str, int] = {}
        processes = 0
        for pid in _loader_pids(self.exclude):
            values = process_pss_kb(pid)
            if values is None:
                continue
            processes += 1
            for key, value in values.items():
                totals[key] = totals.get(key, 0) + value
        if "Pss" not in totals:
            return
        with self._lock:
            if self.peak is None or totals["Pss"] / 1024 > self.peak["total_mb"]:
                self.peak = {"total_mb": totals["Pss"] / 1024, "anon_mb": totals.get("Pss_Anon", 0) / 1024,
                             "file_mb": totals.get("Pss_File", 0) / 1024,
                             "shmem_mb": totals.get("Pss_Shmem", 0) / 1024, "processes": processes}


def _loader_pids(exclude: frozenset[int] = frozenset()) -> list[int]:
    """This process and its children (the loader's workers), less ``exclude``."""
    main = os.getpid()
    return [pid for pid in [main, *_child_pids(main)] if pid not in exclude]


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds the processes have used so far (those still running)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / ticks


def _endless(loader: DataLoader) -> Iterator[Any]:
    for epoch in itertools.count():
        set_epoch = getattr(loader.sampler, "set_epoch", None)
        if set_epoch is not None:
            set_epoch(epoch)
        yield from loader


def _batch_size(batch: Any) -> int:
    return len(batch["labels"]) if isinstance(batch, dict) else len(batch[0])


def _shutdown(loader: DataLoader) -> None:
    """Stop the loader's worker processes now (persistent workers otherwise live on)."""
    iterator = getattr(loader, "_iterator", None)
    if iterator is not None and hasattr(iterator, "_shutdown_workers"):
        iterator._shutdown_workers()
    loader._iterator = None


def measure_loader(name: str, make_loader: Callable[[], DataLoader], settings: dict[str, Any],
                   keep: list | None = None, probe: Callable[[], dict[str, Any]] | None = None,
                   exclude: frozenset[int] = frozenset(), watch: Callable[[], Any] | None = None) -> dict[str, Any]:
    """Images/s, time to first batch and peak PSS of one pipeline.

    ``first_batch_s``: from building the loader to receiving its first batch (worker
    start-up included). Then ``warmup`` batches, then ``batches`` timed ones:
    ``images_per_s`` = images received / seconds between the last warm-up batch and the
    last timed one; ``cpu_ms_per_image`` = CPU time the main process and the workers used
    in that window per image (on a shared machine a steadier figure of the work done than
    wall time). ``keep`` receives the first batch (for the normalization timing).
    ``probe`` [None]: called when the first batch arrives, when timing starts and when it
    ends; its answers land in ``probes`` with the images received by then. ``exclude``:
    child processes that are not the loader's (left out of CPU and memory). ``watch``
    [None]: called with every memory sample (about once a second and at both ends).
    """
    warmup, batches = settings["warmup"], settings["batches"]
    probes: dict[str, Any] = {}
    received = 0

    def mark(when: str) -> None:
        if probe is not None:
            probes[when] = {"images": received, **probe()}

    with PssSampler(exclude=exclude, watch=watch) as memory:
        start = time.perf_counter()
        loader = make_loader()
        stream = _endless(loader)
        first = next(stream)
        first_batch_s = time.perf_counter() - start
        received = _batch_size(first)
        mark("first_batch")
        if keep is not None:
            keep.append(first)
        del first
        with tqdm(total=warmup + batches, desc=name, unit="batch", disable=None, leave=False) as bar:
            for _ in range(warmup):
                received += _batch_size(next(stream))
                bar.update()
            memory.sample()
            mark("timed_start")
            images = 0
            processes = _loader_pids(exclude)
            cpu_start, sampler_start = _cpu_seconds(processes), memory.sampler_cpu_s
            timed_start = time.perf_counter()
            for _ in range(batches):
                images += _batch_size(next(stream))
                bar.update()
            seconds = time.perf_counter() - timed_start
            # /proc counts whole clock ticks (10 ms): over a very short window the sampler's
            # precise share can exceed the ticks counted, hence the floor at 0.
            cpu = max(0.0, _cpu_seconds(processes) - cpu_start - (memory.sampler_cpu_s - sampler_start))
            memory.sample()
            received += images
            mark("timed_end")
        loader_settings = {"pin_memory": loader.pin_memory, "persistent_workers": loader.persistent_workers,
                           "prefetch_factor": loader.prefetch_factor}
        stream.close()
        _shutdown(loader)
        del loader, stream
        gc.collect()
    result = {"images_per_s": images / seconds, "seconds": seconds, "images": images, "first_batch_s": first_batch_s,
              "cpu_ms_per_image": 1000 * cpu / images, "peak_pss": memory.peak, "loader_settings": loader_settings}
    if probe is not None:
        result["probes"] = probes
    return result


# =================================================================== the extras
def _mask_timings(dm, batch_size: int, repeats: int) -> dict[str, float] | None:
    """Mask collator ms/batch on 1 thread (what a loader worker has): ours vs per-sample baseline."""
    from .masks import time_mask_generators

    if dm.mask_generator is None:
        return None
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        timings = time_mask_generators(batch_size, tuple(dm.grid), repeats)
    except ValueError as error:  # e.g. a grid too small for the I-JEPA defaults
        print(f"note: mask timing skipped ({error})")
        return None
    finally:
        torch.set_num_threads(threads)
    return {"ours": timings["ours_ms"], "per_sample_baseline": timings["baseline_ms"],
            "hierarchical": timings["hierarchical_ms"]}


def _normalize_timing(dm, images: torch.Tensor, repeats: int = 10) -> dict[str, Any]:
    """Median ms to move one uint8 batch to the device and normalize it there."""
    from ..pipeline.transforms import normalize

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    ms = median_ms(lambda: normalize(images.to(device, non_blocking=True), dm.spec.mean, dm.spec.std), repeats, device)
    return {"device": str(device), "ms": ms, "threads": torch.get_num_threads() if device.type == "cpu" else None}


@contextlib.contextmanager
def _views_on(dm, mode: str) -> Iterator[None]:
    """Loaders made inside build views as ``mode`` says (the DataModule's setting restored after)."""
    before = dm.hparams.views_on
    dm.hparams.views_on = mode
    try:
        yield
    finally:
        dm.hparams.views_on = before


def _device_stage_timing(dm, batch: dict[str, Any], repeats: int = 5) -> dict[str, Any]:
    """Median ms for one compact batch to reach the device and become the model's batch there.

    What ``on_after_batch_transfer`` does with ``views_on="device"`` after Lightning's
    transfer: decode (files), crop + resize + flip + jitter, normalize; on CUDA when
    present (nvJPEG decoding), else on this CPU with torch's threads.
    """
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    fallbacks_before = dm.device_views.fallbacks

    def build() -> None:
        moved = {key: value.to(device, non_blocking=True) if isinstance(value, torch.Tensor) else value
                 for key, value in batch.items()}
        moved["views"] = {key: value.to(device, non_blocking=True) for key, value in batch["views"].items()}
        dm.device_views(moved)

    ms = median_ms(build, repeats, device)
    return {"device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu", "ms": ms,
            "images_per_s": 1000 * len(batch["labels"]) / ms, "batch_size": len(batch["labels"]),
            "threads": torch.get_num_threads() if device.type == "cpu" else None,
            "input": "encoded files" if "encoded" in batch else "native pixels",
            "fallbacks": (dm.device_views.fallbacks - fallbacks_before) // (repeats + 1)}


def _decoders() -> dict[str, Callable[[str], Any]]:
    from torchvision.io import decode_jpeg, read_file

    decoders: dict[str, Callable[[str], Any]] = {
        "pillow": lambda path: Image.open(path).convert("RGB"),
        "torchvision": lambda path: decode_jpeg(read_file(path)),
    }
    try:
        import simplejpeg

        def decode_simplejpeg(path: str) -> np.ndarray:
            with open(path, "rb") as handle:
                return simplejpeg.decode_jpeg(handle.read(), "RGB")

        decoders["simplejpeg"] = decode_simplejpeg
    except ImportError:
        pass
    return decoders


def isolated_costs(source: Source, dm, samples: int) -> dict[str, Any]:
    """Mean CPU ms per image on 1 thread, each step timed alone on the same ``samples`` images.

    ``baseline``: the baseline dataset's item (load + PIL transforms); ``ours``: the train
    view of the DataModule (load + view); ``ours_device``: a worker's part with
    ``views_on="device"`` (read the pixels or file bytes, read the size, draw the parameters); for JPEG files also ``decode`` per decoder and the
    files' mean size. CPU time of this thread (``time.thread_time``), so other processes on
    a shared machine distort it less than wall time.
    """
    from ..pipeline.sampling import BatchKey, seeded_generator

    rng = np.random.default_rng(0)
    indices = rng.choice(len(source), size=min(samples, len(source)), replace=False).tolist()
    baseline = PlainPILDataset(source, baseline_transform(dm))
    view = dm.train_view
    compact = dm.datasets["train"].compacted(True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)

    def cpu_ms(step: Callable[[int], Any]) -> float:
        step(indices[0])  # first call pays one-off set-up
        start = time.thread_time()
        for index in indices:
            step(index)
        return 1000 * (time.thread_time() - start) / len(indices)

    try:
        result: dict[str, Any] = {
            "baseline": cpu_ms(lambda i: baseline[i]),
            "ours": cpu_ms(lambda i: view(source.load(i), seeded_generator(0, i))),
            # views_on="device": what a worker does per image (read, size, draw the view's parameters)
            "ours_device": cpu_ms(lambda i: compact[BatchKey((i,), 0, 0, 0)]),
        }
        paths = getattr(source, "paths", None)
        if paths is not None:
            files = [str(source.root / paths[i]) for i in indices]
            if all(f.lower().endswith((".jpeg", ".jpg")) for f in files):
                positions = {i: f for i, f in zip(indices, files)}
                result["decode"] = {}
                for name, decode in _decoders().items():
                    try:
                        result["decode"][name] = cpu_ms(lambda i, d=decode: d(positions[i]))
                    except Exception as error:  # noqa: BLE001 - e.g. a CMYK JPEG one decoder refuses
                        print(f"note: {name} could not decode the sampled files ({error}); its time is left out.")
                result["mean_file_kb"] = sum(os.path.getsize(f) for f in files) / len(files) / 1024
    finally:
        torch.set_num_threads(threads)
    return result


# =================================================================== the report
def format_report(report: dict[str, Any]) -> str:
    """The printed summary: both pipelines, the ratio and the extras, one line each."""
    s, m = report["settings"], report["machine"]
    data = report["data"]
    where = "real data" if data["kind"] == "real" else "generated stand-in"
    lines = [f"== jepa-bench: {report['dataset']} ({where}, {data['train_images']:,} training images) ==",
             f"machine:          {m['cpu_count']} CPU cores, {m['cuda_device'] or 'no CUDA device'}; torch {m['torch']}, "
             f"load average {report['machine']['load_average']['before'][0]:.1f} -> "
             f"{report['machine']['load_average']['after'][0]:.1f}",
             f"setting:          batch {s['batch_size']}, {s['num_workers']} workers, image {s['image_size']}, "
             f"masks {s['masks']} on {s['grid'][0]}x{s['grid'][1]}, {s['batches']} timed batches after {s['warmup']}",
             f"{'':18}{'images/s':>10}{'CPU ms/image':>14}{'first batch':>13}{'peak PSS (main+workers)':>26}"]
    for key, label in (("baseline", "baseline"), ("ours", "ours, workers"), ("ours_device", "ours, device")):
        run = report[key]
        pss = run["peak_pss"]
        memory = f"{pss['total_mb']:,.0f} MB ({pss['processes']} procs)" if pss else "n/a"
        lines.append(f"{label:18}{run['images_per_s']:>10,.0f}{run['cpu_ms_per_image']:>14.3f}"
                     f"{run['first_batch_s']:>11.2f} s{memory:>26}")
    for key, ratio_key, label in (("ours", "ratio", "ratio:"), ("ours_device", "ratio_device", "ratio, device:")):
        ratio = report[ratio_key]
        cpu_ratio = report["baseline"]["cpu_ms_per_image"] / max(report[key]["cpu_ms_per_image"], 1e-9)
        lines.append(f"{label:18}{ratio:.1f}x images/s (ours / baseline); {cpu_ratio:.1f}x less CPU per image"
                     if ratio else f"{label:18}n/a")
    stage = report.get("device_stage_ms_per_batch")
    if stage:
        fallbacks = f", {stage['fallbacks']} Pillow fallbacks" if stage["fallbacks"] else ""
        lines.append(f"device stage:     {stage['ms']:.1f} ms/batch of {stage['batch_size']} on {stage['device']} "
                     f"({stage['images_per_s']:,.0f} images/s; {stage['input']} -> normalized views{fallbacks})")
    masks = report["masks_ms_per_batch"]
    if masks:
        lines.append(f"mask collator:    {masks['ours']:.2f} ms/batch (per-sample baseline {masks['per_sample_baseline']:.2f} "
                     f"ms/batch, {masks['per_sample_baseline'] / masks['ours']:.1f}x; 1 thread)")
    norm = report["normalize_ms_per_batch"]
    if norm:
        lines.append(f"normalize:        {norm['ms']:.1f} ms/batch on {norm['device']} (uint8 -> float, after transfer)")
    lines.append(f"prepare_data:     {report['prepare_data_s']['again']:.3f} s again on the verified dataset "
                 f"(first: {report['prepare_data_s']['first']:.1f} s)")
    costs = report["isolated_cpu_ms_per_image"]
    line = (f"per image (CPU):  baseline {costs['baseline']:.2f} ms, ours {costs['ours']:.2f} ms, ours with views on "
            f"device {costs['ours_device']:.3f} ms (1 thread, isolated)")
    if "decode" in costs:
        decoders = ", ".join(f"{name} {ms:.2f}" for name, ms in costs["decode"].items())
        line += f"; JPEG decode alone ({costs['mean_file_kb']:.0f} KB files): {decoders} ms"
    lines.append(line)
    lines.append(f"json:             {report['json']}")
    return "\n".join(lines)
