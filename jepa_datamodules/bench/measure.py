"""Timing ``jepa-bench``'s pipelines: a whole loader (images/s, CPU, first batch, peak memory),
and each step alone (the mask collator, normalization, the device stage, per-image CPU costs).
"""

from __future__ import annotations

import gc
import itertools
import os
import time
import warnings
from typing import Any, Callable, Iterator

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from ..formats.base import Source
from ..notices import Notice
from ..progress import progress_bar
from .baseline import PlainPILDataset, baseline_transform
from .masks import median_ms
from .procfs import PssSampler, cpu_seconds, loader_pids, running

# Seconds to wait for a measured loader's workers to exit before the next loader starts
# (they would otherwise count in its memory and CPU figures).
_WORKER_EXIT_S = 10.0


# ============================================================ a whole loader
def _endless(loader: DataLoader) -> Iterator[Any]:
    for epoch in itertools.count():
        set_epoch = getattr(loader.sampler, "set_epoch", None)
        if set_epoch is not None:
            set_epoch(epoch)
        yield from loader


def _batch_size(batch: Any) -> int:
    return len(batch["labels"]) if isinstance(batch, dict) else len(batch[0])



def measure_loader(name: str, make_loader: Callable[[], DataLoader], settings: dict[str, Any],
                   keep: list | None = None, probe: Callable[[], dict[str, Any]] | None = None,
                   exclude: frozenset[int] = frozenset(), watch: Callable[[], Any] | None = None,
                   progress: bool | None = None) -> dict[str, Any]:
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
    ``progress`` [None]: the batches received, shown as ``progress.progress_bar`` decides.
    The loader's workers have exited when this returns.
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
        with progress_bar(warmup + batches, name, unit="batch", progress=progress, leave=False) as bar:
            for _ in range(warmup):
                received += _batch_size(next(stream))
                bar.update()
            memory.sample()
            mark("timed_start")
            images = 0
            processes = loader_pids(exclude)
            cpu_start, sampler_start = cpu_seconds(processes), memory.sampler_cpu_s
            timed_start = time.perf_counter()
            for _ in range(batches):
                images += _batch_size(next(stream))
                bar.update()
            seconds = time.perf_counter() - timed_start
            # /proc counts whole clock ticks (10 ms): over a very short window the sampler's
            # precise share can exceed the ticks counted, hence the floor at 0.
            cpu = max(0.0, cpu_seconds(processes) - cpu_start - (memory.sampler_cpu_s - sampler_start))
            memory.sample()
            received += images
            mark("timed_end")
        loader_settings = {"pin_memory": loader.pin_memory, "persistent_workers": loader.persistent_workers,
                           "prefetch_factor": loader.prefetch_factor}
    # The sampler's last sample (on leaving the block) is taken while the loader still lives: once
    # its workers are gone the main process's PSS takes over the pages they shared, a figure of no
    # loader at all.
    stream.close()
    del loader, stream
    _await_exit([pid for pid in processes if pid != os.getpid()])
    result = {"images_per_s": images / seconds, "seconds": seconds, "images": images, "first_batch_s": first_batch_s,
              "cpu_ms_per_image": 1000 * cpu / images, "peak_pss": memory.peak, "loader_settings": loader_settings}
    if probe is not None:
        result["probes"] = probes
    return result


def _await_exit(workers: list[int]) -> None:
    """Wait [at most 10 s] for a measured loader's ``workers`` to exit, its last reference just
    dropped: ``DataLoader``'s own clean-up stops them (persistent workers live as long as the
    loader), and the next loader's memory and CPU figures must not count them."""
    gc.collect()
    deadline = time.monotonic() + _WORKER_EXIT_S
    while running(workers) and time.monotonic() < deadline:
        time.sleep(0.05)


# ============================================================ one step alone
def mask_timings(dm, batch_size: int, repeats: int) -> dict[str, float] | None:
    """Mask collator ms/batch on 1 thread (what a loader worker has): ours vs per-sample baseline."""
    from .masks import time_mask_generators

    if dm.mask_generator is None:
        return None
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        timings = time_mask_generators(batch_size, tuple(dm.grid), repeats)
    except ValueError as error:  # e.g. a grid too small for the I-JEPA defaults
        warnings.warn(Notice(f"The mask collator's timing is skipped: {error}"), stacklevel=2)
        return None
    finally:
        torch.set_num_threads(threads)
    return {"ours": timings["ours_ms"], "per_sample_baseline": timings["baseline_ms"],
            "hierarchical": timings["hierarchical_ms"]}


def normalize_timing(dm, images: torch.Tensor, repeats: int = 10) -> dict[str, Any]:
    """Median ms to move one uint8 batch to the device and normalize it there."""
    from ..pipeline.transforms import normalize

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    ms = median_ms(lambda: normalize(images.to(device, non_blocking=True), dm.spec.mean, dm.spec.std), repeats, device)
    return {"device": str(device), "ms": ms, "threads": torch.get_num_threads() if device.type == "cpu" else None}


def device_stage_timing(dm, batch: dict[str, Any], repeats: int = 5) -> dict[str, Any]:
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
                        warnings.warn(Notice(f"The {name} decoder could not decode the sampled files ({error}); "
                                             "its time is left out of the report."), stacklevel=2)
                result["mean_file_kb"] = sum(os.path.getsize(f) for f in files) / len(files) / 1024
    finally:
        torch.set_num_threads(threads)
    return result

