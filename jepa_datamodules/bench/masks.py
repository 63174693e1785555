"""Mask-sampling benchmark helpers: a plain per-sample baseline, timings and coverage.

``per_sample_multiblock_baseline`` is what a straightforward collator does (one Python loop
over the samples, retrying a sample's context block until it keeps ``min_keep`` patches).
It exists to be timed against the vectorised ``MultiBlockMaskGenerator``; it places blocks
uniformly (including the last row and column) and cuts contexts by keeping their first
patches, so it has the edge under-coverage the vectorised generator corrects.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from ..pipeline.masks import HierarchicalMaskGenerator, MultiBlockMaskGenerator, target_levels
from ..pipeline.masks.validation import check_grid as _check_grid, check_int as _check_int
from ..errors import ConfigError

__all__ = ["mask_coverage", "per_sample_multiblock_baseline", "time_mask_generators"]


def _block_size(scale: tuple[float, float], aspect: tuple[float, float], n_patches: int, rows: int, cols: int,
                generator: torch.Generator) -> tuple[int, int]:
    """One (h, w): scale uniform, aspect log-uniform, rounded half up, clipped to the grid."""
    u_s, u_a = torch.rand(2, generator=generator, dtype=torch.float64).tolist()
    s = scale[0] + u_s * (scale[1] - scale[0])
    a = math.exp(math.log(aspect[0]) + u_a * (math.log(aspect[1]) - math.log(aspect[0])))
    h = min(rows, max(1, math.floor(math.sqrt(s * n_patches * a) + 0.5)))
    w = min(cols, max(1, math.floor(math.sqrt(s * n_patches / a) + 0.5)))
    return h, w


def _random_block(h: int, w: int, rows: int, cols: int, generator: torch.Generator) -> torch.Tensor:
    """Bool mask [rows, cols] with an h x w block at a uniformly drawn position."""
    top = int(torch.randint(0, rows - h + 1, (1,), generator=generator))
    left = int(torch.randint(0, cols - w + 1, (1,), generator=generator))
    mask = torch.zeros(rows, cols, dtype=torch.bool)
    mask[top:top + h, left:left + w] = True
    return mask


def per_sample_multiblock_baseline(batch_size: int, grid: tuple[int, int], generator: torch.Generator, *,
                                   context_scale: tuple[float, float] = (0.85, 1.0),
                                   target_scale: tuple[float, float] = (0.15, 0.2),
                                   target_aspect: tuple[float, float] = (0.75, 1.5),
                                   num_targets: int = 4, min_keep: int = 10,
                                   max_tries: int = 20) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """I-JEPA multi-block masks the plain way: a Python loop over samples with retries.

    Same output format as ``MultiBlockMaskGenerator`` with one context block of aspect 1
    (defaults: the I-JEPA recipe). Block sizes are drawn once per batch; per sample, the
    ``num_targets`` target blocks are placed, then the context block is redrawn until at
    least ``min_keep`` patches survive removing the targets (after ``max_tries`` [20] tries
    the sample's targets are redrawn too). Contexts are cut to the batch's shortest by
    keeping their first patches, as the reference collator does.
    """
    batch_size = _check_int("batch_size", batch_size, 1)
    rows, cols = _check_grid(grid)
    n = rows * cols
    target_sizes = [_block_size(target_scale, target_aspect, n, rows, cols, generator) for _ in range(num_targets)]
    context_size = _block_size(context_scale, (1.0, 1.0), n, rows, cols, generator)

    contexts: list[torch.Tensor] = []
    targets: list[list[torch.Tensor]] = [[] for _ in range(num_targets)]
    for _ in range(batch_size):
        while True:
            blocks = [_random_block(h, w, rows, cols, generator) for h, w in target_sizes]
            free = torch.ones(rows, cols, dtype=torch.bool)
            for block in blocks:
                free &= ~block
            for _ in range(max_tries):
                context = _random_block(*context_size, rows, cols, generator) & free
                if int(context.sum()) >= min_keep:
                    break
            else:
                continue  # no context fitted around these targets: redraw them
            break
        contexts.append(torch.nonzero(context.flatten()).flatten())
        for k, block in enumerate(blocks):
            targets[k].append(torch.nonzero(block.flatten()).flatten())

    shortest = min(len(c) for c in contexts)
    context_masks = [torch.stack([c[:shortest] for c in contexts])]
    target_masks = [torch.stack(per_block) for per_block in targets]
    return context_masks, target_masks


def median_ms(step: Callable[[], Any], repeats: int, device: torch.device | None = None) -> float:
    """Median wall ms of ``step`` over ``repeats`` calls after a first, warm-up one (first calls
    pay for allocations and lazy initialisation); on CUDA each call waits for the device."""
    def once() -> None:
        step()
        if device is not None and device.type == "cuda":
            torch.cuda.synchronize()

    once()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        once()
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def time_mask_generators(batch_size: int = 128, grid: tuple[int, int] = (14, 14),
                         repeats: int = 50) -> dict[str, float]:
    """Median wall time in milliseconds per batch, on the current ``torch.get_num_threads()``.

    Returns ``{"ours_ms", "baseline_ms", "hierarchical_ms"}``: the vectorised multi-block
    generator, ``per_sample_multiblock_baseline`` and the hierarchical generator, each with
    its defaults, ``batch_size`` [128] samples on ``grid`` [(14, 14)], median over
    ``repeats`` [50] calls after one warm-up. Set ``torch.set_num_threads(1)`` first for the
    single-core figure. Grid set-up (``with_grid``) is done once, outside the timing.
    """
    batch_size = _check_int("batch_size", batch_size, 1)
    repeats = _check_int("repeats", repeats, 1)
    grid = _check_grid(grid)
    ours = MultiBlockMaskGenerator().with_grid(grid)
    hierarchical = HierarchicalMaskGenerator().with_grid(grid)
    g = torch.Generator().manual_seed(0)
    return {
        "ours_ms": median_ms(lambda: ours(batch_size, g), repeats),
        "baseline_ms": median_ms(lambda: per_sample_multiblock_baseline(batch_size, grid, g), repeats),
        "hierarchical_ms": median_ms(lambda: hierarchical(batch_size, g), repeats),
    }


def mask_coverage(mask_generator: MultiBlockMaskGenerator | HierarchicalMaskGenerator, batches: int = 100,
                  batch_size: int = 128, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """How often each patch is a target and a context patch: two float tensors [rows, cols].

    Entry (r, c) is the fraction of the ``batches * batch_size`` [100 * 128] samples in which
    patch (r, c) lies in some target block (any level), resp. in the (first) context tensor.
    Draws from ``torch.Generator().manual_seed(seed)`` [0]. Used to measure placement bias.
    """
    grid = mask_generator.grid
    if grid is None:
        raise ConfigError("mask_generator has grid=None: call with_grid((rows, cols)) first.")
    rows, cols = grid
    g = torch.Generator().manual_seed(seed)
    target_hits = torch.zeros(rows * cols, dtype=torch.float64)
    context_hits = torch.zeros(rows * cols, dtype=torch.float64)
    for _ in range(batches):
        context_masks, target_masks = mask_generator(batch_size, g)
        blocks = target_levels(target_masks).blocks()
        union = torch.zeros(batch_size, rows * cols, dtype=torch.bool)
        for block in blocks:
            union.scatter_(1, block, True)
        target_hits += union.sum(0)
        context = torch.zeros(batch_size, rows * cols, dtype=torch.bool)
        context.scatter_(1, context_masks[0], True)
        context_hits += context.sum(0)
    total = batches * batch_size
    return (target_hits / total).reshape(rows, cols), (context_hits / total).reshape(rows, cols)
