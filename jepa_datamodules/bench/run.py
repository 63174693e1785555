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
``bench.synthetic_like=<name>``) a generated stand-in in the dataset's own on-disk format,
cached under ``<data_dir>/bench-standins`` (``standins.py``). The bench never downloads:
run ``jepa-prepare data=<name>`` first to measure the real thing.

This module runs the steps in order; each concern has its module: ``standins.py`` (the
data), ``baseline.py`` (the torchvision pipeline), ``measure.py`` (timing, with ``procfs.py``
reading memory and CPU from ``/proc``) and ``report.py`` (``bench.json`` and the summary).
Each of "ours"'s two modes gets its own DataModule (``views_on`` is a constructor
argument), so nothing of a DataModule is changed after it is built.
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from ..choices import choice_message
from ..errors import ConfigError
from ..notices import Notice
from .baseline import baseline_loader
from .measure import device_stage_timing, isolated_costs, mask_timings, measure_loader, normalize_timing
from .report import format_report, machine, mask_name, write_report
from .standins import STANDIN_KINDS, bench_datamodule, build_bench_datamodule, write_standin

__all__ = ["run_bench", "check_settings", "setting_count", "STANDIN_KINDS", "build_bench_datamodule", "write_standin"]


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
    settings = check_settings(cfg.bench)
    load_before = os.getloadavg()
    dm, data = build_bench_datamodule(cfg, settings, views_on="workers")
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
        warnings.warn(Notice(f"{len(source)} training images are fewer than the {needed} the bench reads; both "
                             "pipelines wrap around into a new epoch (each boundary drains the loader once)."), stacklevel=2)

    report: dict[str, Any] = {
        "dataset": dm.spec.name,
        "data": data,
        "settings": {
            "batch_size": batch_size, "num_workers": workers, "image_size": int(hp.image_size),
            "patch_size": int(hp.patch_size), "grid": list(dm.grid), "masks": mask_name(dm.mask_generator),
            "crop_scale": list(dm.train_view.crop_scale), "crop_ratio": list(dm.train_view.crop_ratio),
            "hflip": dm.train_view.hflip, "color_jitter": dm.train_view.color_jitter,
            "batches": settings["batches"], "warmup": settings["warmup"], "order": ["ours", "ours_device", "baseline"],
        },
        "machine": machine(),
        "prepare_data_s": {"first": first_prepare, "again": second_prepare},
    }
    report["isolated_cpu_ms_per_image"] = isolated_costs(source, dm, settings["isolated_samples"])
    report["masks_ms_per_batch"] = mask_timings(dm, batch_size, settings["mask_repeats"])

    held: list[dict[str, Any]] = []
    progress = hp.progress
    ours = measure_loader("ours", dm.train_dataloader, settings, keep=held, progress=progress)
    report["settings"]["loader"] = ours.pop("loader_settings")
    report["normalize_ms_per_batch"] = normalize_timing(dm, held[0]["images"]) if held else None
    held.clear()
    on_device = bench_datamodule(cfg, data, views_on="device")
    on_device.prepare_data()  # the stamp of the verification above
    on_device.setup("fit")
    ours_device = measure_loader("ours, views on device", on_device.train_dataloader, settings, keep=held,
                                 progress=progress)
    ours_device.pop("loader_settings")
    report["device_stage_ms_per_batch"] = device_stage_timing(on_device, held[0]) if held else None
    held.clear()
    baseline = measure_loader("baseline", lambda: baseline_loader(source, dm, batch_size, workers), settings,
                              progress=progress)
    baseline.pop("loader_settings")
    report["ours"], report["ours_device"], report["baseline"] = ours, ours_device, baseline
    rate = baseline["images_per_s"]
    report["ratio"] = ours["images_per_s"] / rate if rate else None
    report["ratio_device"] = ours_device["images_per_s"] / rate if rate else None
    report["machine"]["load_average"] = {"before": list(load_before), "after": list(os.getloadavg())}
    return write_report(report, output_dir, format_report)


def setting_count(bench: DictConfig, name: str, low: int) -> int:
    """``bench.<name>``, an integer >= ``low``, or one sentence saying so."""
    value = bench.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(f"bench.{name}={value} is invalid; allowed is an integer >= {low}.")
    return value


def check_settings(bench: DictConfig) -> dict[str, Any]:
    """``cfg.bench`` of the pipelines bench checked: each bad value refused with one sentence
    naming what is allowed."""
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
