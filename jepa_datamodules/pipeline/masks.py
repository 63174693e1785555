"""Block masks for JEPA / H-JEPA pre-training, sampled for a whole batch at once.

A mask generator is configured once (Hydra ``conf/mask/*.yaml``), told the patch grid by
the DataModule through ``with_grid((rows, cols))`` and then called by the collate
function as ``generator(batch_size, torch_generator)``. It returns patch indices, row-major
into the grid (``index = row * cols + col``), the I-JEPA convention:

* ``context_masks``: list of ``num_context`` LongTensors ``[B, K_c]`` (what the encoder sees);
* ``target_masks``: list of LongTensors ``[B, K_t]``, one per target block (multi-block), or
  a list per level of such lists (hierarchical).

Every random number comes from the ``torch.Generator`` the caller passes in, so equal
generator state gives equal masks; the generators hold only configuration and tables
derived from it, and pickle into DataLoader workers.

How a block is drawn (per batch: one size for every target block of a level and one for
every context block, as in the I-JEPA collator, so all target tensors of a level have one K
and never need truncating, and ``torch.cat`` of gathered masks along the batch works):

* scale ``s`` uniform in ``scale``, aspect ``a = h / w`` log-uniform in ``aspect`` (so a
  range like (0.5, 2) gives tall and wide blocks equally often);
* ``h = round(sqrt(s * N * a))``, ``w = round(sqrt(s * N / a))`` with ``N = rows * cols``,
  rounded half up, at least one patch. Because of rounding the area of a block may miss the
  scale range by up to half a patch on each side;
* target blocks must fit the grid (``with_grid`` raises otherwise); context blocks are
  clipped to it, because a context scale of 1.0 means "the whole image" even on a
  non-square grid.

Placement, and why it is not uniform:

Blocks may sit anywhere, touching the last row and column (the I-JEPA reference draws the
top-left corner with an exclusive upper bound one too small, so its blocks never reach
them). Uniform placement of the top-left corner still under-covers the border: a patch in
a corner is inside an ``h x w`` block only when the block sits exactly there, while an
interior patch is covered from ``h * w`` positions. At 14x14 with the I-JEPA target recipe
that makes the corner patches ~19x less often a target than central ones.

Exactly equal coverage is impossible for rectangles of fixed size: along one axis, flat
coverage forces the block starts onto a lattice that tiles the axis (cover row 0 and row 1
equally and no block may start on row 1, ...), which exists only for block lengths that add
up to the grid length. So target blocks are placed along each axis with a distribution
chosen, per grid and scale/aspect recipe, to make the *expected* coverage as flat as
possible (least squares over the mixture of block lengths the recipe produces), under a
floor: every valid position keeps at least ``placement_floor`` (default 0.2) of the
probability uniform placement would give it, so no placement is ruled out and masks stay
varied. ``placement_floor=1.0`` gives plain uniform placement.

Measured remaining bias (fraction of samples in which a patch lies in some target block,
256,000 samples per row, ``bench_masks.mask_coverage``; plain uniform placement in brackets):

=====================  ========================  ==========================
grid, generator        max / min over patches    coefficient of variation
=====================  ========================  ==========================
14 x 14 multi-block    1.75  (uniform: 18.8)     0.14  (uniform: 0.52)
12 x 12 multi-block    1.61  (uniform: 14.1)     0.14  (uniform: 0.50)
8 x 8 multi-block      1.56  (uniform: 6.9)      0.13  (uniform: 0.45)
10 x 16 multi-block    1.59  (uniform: 14.3)     0.13  (uniform: 0.49)
14 x 14 hierarchical   1.40                      0.08
10 x 16 hierarchical   1.90                      0.17
=====================  ========================  ==========================

What is left is the tiling limit above (on 14 rows, 5-row blocks fit no tiling) plus the
floor; large blocks on a short axis (the coarse level on 10 rows) flatten least. Building
the tables is a small least-squares solve per axis in ``with_grid`` (~50 ms at 14 x 14,
~0.6 s at 32 x 32), cached per configuration.

The context block is placed uniformly over its valid positions (last row and column
included), so a patch is context with the probability that geometry implies: the chance the
context block covers it times the chance no target does (targets are removed from the
context unless ``allow_overlap``). If a sample's context falls below ``min_keep`` patches,
that sample's blocks are redrawn (whole batch rows at once, never a per-sample loop); each
context tensor is then cut to the smallest context in the batch by dropping a uniformly
random subset of each sample's extra patches (the reference keeps the first ones in
row-major order, which would bias the context towards the top of the image). With several
context blocks, all of them are cut to the smallest of any of them, so they share one K.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from ..errors import ConfigError

__all__ = [
    "HierarchicalMaskGenerator",
    "MaskGenerator",
    "MultiBlockMaskGenerator",
    "NoMaskGenerator",
    "DEFAULT_HIERARCHICAL_LEVELS",
]

Grid = tuple[int, int]

# Probability share every valid block position keeps of what uniform placement gives it.
# At 14x14 (I-JEPA targets) 0.2 gives 1.75x max/min target coverage with blocks using
# ~30 % of their positions effectively (exp of the entropy); 0.0 would give ~1.56x but
# concentrate blocks on ~14 % of positions, 1.0 (uniform) gives ~19x.
DEFAULT_PLACEMENT_FLOOR = 0.2

# Hierarchical defaults (H-JEPA style: one predictor level per target scale).
DEFAULT_HIERARCHICAL_LEVELS: tuple[dict[str, Any], ...] = (
    # Many small blocks (2-5 % of the image each): predicting them needs local detail such
    # as parts and texture, which is what a fine level of the hierarchy should encode.
    {"name": "fine", "scale": (0.02, 0.05), "aspect": (0.75, 1.5), "count": 6},
    # Few large blocks (20-30 % each): too big to fill in from nearby pixels, so they push
    # the coarse level towards object- and layout-level semantics (I-JEPA's argument for
    # large target blocks, taken one step further).
    {"name": "coarse", "scale": (0.2, 0.3), "aspect": (0.75, 1.5), "count": 2},
)

# Midpoints per axis of the (scale, log-aspect) rectangle used to weigh block sizes when
# the placement tables are built; 128^2 points put each size's weight within ~1 %.
_SIZE_QUADRATURE = 128
# Rounds of redrawing samples whose context is below min_keep before giving up.
_MAX_REDRAW_ROUNDS = 100


# --------------------------------------------------------------------------- validation


def _check_grid(grid: Any, name: str = "grid") -> Grid:
    ok = (isinstance(grid, Sequence) and not isinstance(grid, str) and len(grid) == 2
          and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in grid))
    if not ok:
        raise ConfigError(f"{name}={grid!r} is not allowed: it must be two integers (rows, cols), each >= 1.")
    return int(grid[0]), int(grid[1])


def _check_range(name: str, value: Any, *, at_most_one: bool) -> tuple[float, float]:
    allowed = "0 < lo <= hi <= 1" if at_most_one else "0 < lo <= hi"
    if isinstance(value, str) or not isinstance(value, Sequence) or len(value) != 2:
        raise ConfigError(f"{name}={value!r} is not allowed: it must be a pair (lo, hi) with {allowed}.")
    try:
        lo, hi = float(value[0]), float(value[1])
    except (TypeError, ValueError):
        raise ConfigError(f"{name}={value!r} is not allowed: it must be a pair of numbers (lo, hi) "
                         f"with {allowed}.") from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo <= 0 or (at_most_one and hi > 1):
        raise ConfigError(f"{name}={value!r} is not allowed: both ends must lie in "
                         f"{'(0, 1]' if at_most_one else '(0, inf)'}.")
    if lo > hi:
        raise ConfigError(f"{name}={value!r} is not allowed: min {lo:g} is greater than max {hi:g}.")
    return lo, hi


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{name}={value!r} is not allowed: it must be an integer >= {minimum}.")
    return int(value)


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ConfigError(f"{name}={value!r} is not allowed: it must be true or false.")
    return bool(value)


def _check_floor(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise ConfigError(f"placement_floor={value!r} is not allowed: it must be a number in [0, 1].")
    return float(value)


def _check_call(batch_size: Any, generator: Any) -> int:
    batch_size = _check_int("batch_size", batch_size, 1)
    if not isinstance(generator, torch.Generator):
        raise ConfigError(f"generator={generator!r} is not allowed: pass a torch.Generator seeded by the caller.")
    if generator.device.type != "cpu":
        raise ConfigError(f"generator on device {generator.device} is not allowed: masks are drawn on the CPU, "
                         "so pass a CPU torch.Generator.")
    return batch_size


# --------------------------------------------------------------------------- block sizes


def _round_half_up(x: float) -> int:
    # Python's round() rounds halves to even; half-up is the documented rule.
    return int(math.floor(x + 0.5))


@dataclass(frozen=True)
class _Shape:
    """Scale (fraction of the grid's patches) and aspect (rows / cols) ranges of a block."""

    scale: tuple[float, float]
    aspect: tuple[float, float]

    def size(self, u_scale: float, u_aspect: float, n_patches: int) -> tuple[int, int]:
        """Unclipped (h, w) for uniform draws ``u_scale, u_aspect`` in [0, 1)."""
        s = self.scale[0] + u_scale * (self.scale[1] - self.scale[0])
        log_lo, log_hi = math.log(self.aspect[0]), math.log(self.aspect[1])
        a = math.exp(log_lo + u_aspect * (log_hi - log_lo))
        h = max(1, _round_half_up(math.sqrt(s * n_patches * a)))
        w = max(1, _round_half_up(math.sqrt(s * n_patches / a)))
        return h, w

    def extremes(self, n_patches: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """((h_min, h_max), (w_min, w_max)) over the whole range; sizes are monotone in s and a."""
        h_min, _ = self.size(0.0, 0.0, n_patches)
        h_max, _ = self.size(1.0, 1.0, n_patches)
        _, w_min = self.size(0.0, 1.0, n_patches)
        _, w_max = self.size(1.0, 0.0, n_patches)
        return (h_min, h_max), (w_min, w_max)

    def weights(self, grid: Grid) -> tuple[dict[int, float], dict[int, float]]:
        """Probabilities of each clipped block height and of each clipped block width."""
        rows, cols = grid
        n = rows * cols
        mid = (np.arange(_SIZE_QUADRATURE) + 0.5) / _SIZE_QUADRATURE
        s = self.scale[0] + mid[:, None] * (self.scale[1] - self.scale[0])
        log_lo, log_hi = math.log(self.aspect[0]), math.log(self.aspect[1])
        a = np.exp(log_lo + mid[None, :] * (log_hi - log_lo))
        h = np.clip(np.floor(np.sqrt(s * n * a) + 0.5), 1, rows).astype(int).ravel()
        w = np.clip(np.floor(np.sqrt(s * n / a) + 0.5), 1, cols).astype(int).ravel()
        total = h.size
        heights = {int(v): c / total for v, c in zip(*np.unique(h, return_counts=True))}
        widths = {int(v): c / total for v, c in zip(*np.unique(w, return_counts=True))}
        return heights, widths


# --------------------------------------------------------------------------- placement tables


@functools.lru_cache(maxsize=256)
def _flat_placement(length: int, sizes: tuple[int, ...], weights: tuple[float, ...],
                    floor: float) -> tuple[tuple[float, ...], ...]:
    """Start-position probabilities along one axis making the expected coverage flat.

    For block lengths ``sizes`` drawn with probabilities ``weights`` on an axis of ``length``
    patches, returns one distribution over starts ``0 .. length - size`` per size. It
    minimises the mean squared relative deviation of the expected coverage from its mean,
    subject to every start keeping at least ``floor / n_starts`` probability. Solved by
    projected gradient descent with Nesterov momentum and adaptive restart; deterministic.
    """
    size = np.asarray(sizes)
    weight = np.asarray(weights, dtype=float)
    weight = weight / weight.sum()
    n_starts = length - size + 1
    widest = int(n_starts.max())
    valid = np.arange(widest)[None, :] < n_starts[:, None]
    uniform = np.where(valid, 1.0 / n_starts[:, None], 0.0)
    if floor >= 1.0 or length == 1:
        return tuple(tuple(row[:m]) for row, m in zip(uniform, n_starts))

    # cover[k, i, r] = 1 when a block of length size[k] starting at r covers patch i.
    i = np.arange(length)[None, :, None]
    r = np.arange(widest)[None, None, :]
    cover = ((i >= r) & (i < r + size[:, None, None]) & valid[:, None, :]).astype(float)
    mean_cover = float((weight * size).sum()) / length  # what flat coverage would be
    op = cover * (weight[:, None, None] / mean_cover)  # relative coverage is op . p
    # Lipschitz constant of the gradient of mean((op . p - 1)^2).
    lipschitz = 2.0 * np.linalg.norm(op.transpose(1, 0, 2).reshape(length, -1), 2) ** 2 / length
    least = floor * uniform
    ranks = np.arange(1, widest + 1)[None, :]
    rows = np.arange(len(size))

    def project(z: np.ndarray) -> np.ndarray:
        # Each row onto {p >= least, sum p = 1}: shift to the simplex and project there
        # (sort-based Euclidean projection, all rows at once; padding kept out by `valid`).
        v = np.where(valid, (z - least) / (1.0 - floor), -np.inf)
        desc = -np.sort(-v, axis=1)
        cums = np.cumsum(np.where(valid, desc, 0.0), axis=1) - 1.0
        keep = (desc - cums / ranks > 0) & valid
        last = keep.shape[1] - 1 - np.argmax(keep[:, ::-1], axis=1)
        theta = cums[rows, last] / (last + 1)
        return np.where(valid, least + (1.0 - floor) * np.maximum(v - theta[:, None], 0.0), 0.0)

    x = uniform.copy()
    y = x.copy()
    t = 1.0
    for _ in range(5000):
        residual = np.einsum("kim,km->i", op, y) - 1.0
        gradient = (2.0 / length) * np.einsum("kim,i->km", op, residual)
        x_new = project(y - gradient / lipschitz)
        t_new = (1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0
        if np.sum((y - x_new) * (x_new - x)) > 0:  # momentum points uphill: restart it
            t_new, y = 1.0, x_new.copy()
        else:
            y = x_new + (t - 1.0) / t_new * (x_new - x)
        step = float(np.abs(x_new - x).max())
        x, t = x_new, t_new
        if step < 1e-11:
            break
    x = np.where(valid, np.maximum(x, 0.0), 0.0)
    x /= x.sum(axis=1, keepdims=True)
    return tuple(tuple(row[:m]) for row, m in zip(x, n_starts))


def _cdf(probabilities: Sequence[float]) -> torch.Tensor:
    cdf = torch.tensor(np.cumsum(probabilities), dtype=torch.float32)
    cdf[-1] = 1.0  # draws are < 1, so searchsorted never runs past the last start
    return cdf


@dataclass(frozen=True)
class _TargetPlan:
    """A group of target blocks sharing one shape, with its placement tables for one grid."""

    name: str
    shape: _Shape
    count: int
    row_cdf: dict[int, torch.Tensor]  # block height -> CDF over top rows
    col_cdf: dict[int, torch.Tensor]  # block width -> CDF over left columns
    min_area: int


def _plan_targets(name: str, label: str, shape: _Shape, count: int, grid: Grid, floor: float) -> _TargetPlan:
    rows, cols = grid
    (h_min, h_max), (w_min, w_max) = shape.extremes(rows * cols)
    if h_max > rows or w_max > cols:
        raise ConfigError(
            f"grid={grid!r} is smaller than a target block: {label} scale={shape.scale} aspect={shape.aspect} "
            f"needs blocks up to {h_max} x {w_max} patches (rows x cols); use a larger grid or a smaller scale.")
    heights, widths = shape.weights(grid)
    tables = []
    for length, lo, hi, weights in ((rows, h_min, h_max, heights), (cols, w_min, w_max, widths)):
        sizes = tuple(range(lo, hi + 1))
        # A size the quadrature missed can still be drawn at the range's very end; give it a
        # token weight so it has a table (it hardly moves the optimum).
        raw = tuple(round(max(weights.get(s, 0.0), 1e-6), 12) for s in sizes)
        tables.append({s: _cdf(p) for s, p in zip(sizes, _flat_placement(length, sizes, raw, floor))})
    return _TargetPlan(name, shape, count, tables[0], tables[1], h_min * w_min)


# --------------------------------------------------------------------------- sampling core


class MaskGenerator:
    """What a DataModule's ``mask`` argument takes; the three generators here derive from it.

    A subclass implements ``with_grid(grid)`` (a copy set up for the patch grid (rows, cols))
    and ``__call__(batch_size, generator)`` (``(context_masks, target_masks)`` or None, drawn
    only from the CPU ``torch.Generator`` given). Deriving from it is what lets LightningCLI /
    jsonargparse accept a generator by class path (``--data.mask jepa_datamodules.MultiBlockMaskGenerator``).
    """

    _grid: Grid | None = None

    @property
    def grid(self) -> Grid | None:
        """Patch grid (rows, cols), or None until ``with_grid`` is called."""
        return self._grid

    def with_grid(self, grid: tuple[int, int]) -> MaskGenerator:
        raise NotImplementedError

    def __call__(self, batch_size: int, generator: torch.Generator) -> Any:
        raise NotImplementedError


class _BlockMasker(MaskGenerator):
    """Shared machinery: configuration, grid tables and the vectorised batch sampler."""

    _grid: Grid | None
    _plans: tuple[_TargetPlan, ...]

    def _init_common(self, grid: Any, context_scale: Any, context_aspect: Any, num_context: Any,
                     allow_overlap: Any, min_keep: Any, placement_floor: Any) -> None:
        self.context = _Shape(_check_range("context_scale", context_scale, at_most_one=True),
                              _check_range("context_aspect", context_aspect, at_most_one=False))
        self.num_context = _check_int("num_context", num_context, 1)
        self.allow_overlap = _check_bool("allow_overlap", allow_overlap)
        self.min_keep = _check_int("min_keep", min_keep, 1)
        self.placement_floor = _check_floor(placement_floor)
        self._grid = None
        self._plans = ()
        if grid is not None:
            self._set_grid(_check_grid(grid))

    # Subclasses list their target groups as (name, label for messages, shape, count).
    def _target_groups(self) -> list[tuple[str, str, _Shape, int]]:
        raise NotImplementedError

    def _set_grid(self, grid: Grid) -> None:
        rows, cols = grid
        n = rows * cols
        plans = tuple(_plan_targets(name, label, shape, count, grid, self.placement_floor)
                      for name, label, shape, count in self._target_groups())
        (ch_min, ch_max), (cw_min, cw_max) = self.context.extremes(n)
        ctx_min = min(ch_min, rows) * min(cw_min, cols)
        ctx_max = min(ch_max, rows) * min(cw_max, cols)
        if ctx_min < self.min_keep:
            raise ConfigError(
                f"grid={grid!r} is too small for min_keep={self.min_keep}: the smallest context block it allows "
                f"has {ctx_min} patches; use a larger grid, a larger context_scale or a smaller min_keep.")
        if not self.allow_overlap:
            smallest_target = min(p.min_area for p in plans)
            if ctx_max - smallest_target < self.min_keep:
                raise ConfigError(
                    f"grid={grid!r} is too small: a context block of at most {ctx_max} patches minus a target block "
                    f"of at least {smallest_target} leaves fewer than min_keep={self.min_keep} context patches.")
        self._grid = grid
        self._plans = plans

    def _require_grid(self) -> Grid:
        if self._grid is None:
            raise ConfigError(f"{type(self).__name__} has grid=None: call with_grid((rows, cols)) before sampling.")
        return self._grid

    def _sample(self, batch_size: int,
                generator: torch.Generator) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        rows, cols = self._require_grid()
        n = rows * cols
        g = generator

        # -- 1. Block sizes: one (h, w) per target level and one for the context blocks, shared
        #       by every block of that kind in the batch (the I-JEPA collator draws one
        #       prediction size and one encoder size per batch). Every target tensor of a level
        #       then has the same K, so gathering each mask and concatenating along the batch
        #       (I-JEPA's apply_masks) works.
        u = torch.rand(len(self._plans) + 1, 2, generator=g, dtype=torch.float64).tolist()
        target_blocks = []  # (plan, h, w, offsets within the flattened grid)
        for plan, (u_scale, u_aspect) in zip(self._plans, u):
            h, w = plan.shape.size(u_scale, u_aspect, n)
            target_blocks += [(plan, h, w, _offsets(h, w, cols))] * plan.count
        h, w = self.context.size(u[-1][0], u[-1][1], n)
        h, w = min(h, rows), min(w, cols)
        context_blocks = [(h, w, _offsets(h, w, cols))] * self.num_context

        # -- 2. Positions, per sample: targets from the flattened placement tables, contexts
        #       uniformly, targets removed from the contexts.
        def draw(count: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
            """Positions for `count` samples: target index tensors and context bool masks."""
            pos = torch.rand(len(target_blocks) + len(context_blocks), 2, count, generator=g)
            union = torch.zeros(count, n, dtype=torch.bool)
            targets = []
            for b, (plan, h, w, offsets) in enumerate(target_blocks):
                top = torch.searchsorted(plan.row_cdf[h], pos[b, 0], right=True).clamp_(max=rows - h)
                left = torch.searchsorted(plan.col_cdf[w], pos[b, 1], right=True).clamp_(max=cols - w)
                idx = (top * cols + left).unsqueeze(1) + offsets
                union.scatter_(1, idx, True)
                targets.append(idx)
            contexts = []
            for j, (h, w, offsets) in enumerate(context_blocks):
                p = pos[len(target_blocks) + j]
                # Uniform over all rows - h + 1 starts (the last row and column included).
                top = (p[0] * (rows - h + 1)).long().clamp_(max=rows - h)
                left = (p[1] * (cols - w + 1)).long().clamp_(max=cols - w)
                mask = torch.zeros(count, n, dtype=torch.bool)
                mask.scatter_(1, (top * cols + left).unsqueeze(1) + offsets, True)
                if not self.allow_overlap:
                    mask &= ~union
                contexts.append(mask)
            return targets, contexts

        # -- 3. Redraw the positions of samples whose context keeps fewer than min_keep patches.
        targets, contexts = draw(batch_size)
        short = _short_rows(contexts, self.min_keep)
        rounds = 0
        while short.numel():
            rounds += 1
            if rounds > _MAX_REDRAW_ROUNDS:
                raise RuntimeError(
                    f"{type(self).__name__}: {short.numel()} of {batch_size} samples still had fewer than "
                    f"min_keep={self.min_keep} context patches after {_MAX_REDRAW_ROUNDS} redraws; "
                    "lower min_keep or the target scale, or raise the context scale.")
            # Redraw only the failing rows, all of them in one vectorised draw.
            new_targets, new_contexts = draw(short.numel())
            for old, new in zip(targets + contexts, new_targets + new_contexts):
                old[short] = new
            still = _short_rows(new_contexts, self.min_keep)
            short = short[still]

        # -- 4. One K for every context tensor: each is cut to the smallest context in the batch.
        keep = min(int(mask.sum(1).min()) for mask in contexts)
        context_idx = [_truncate(mask, keep, g) for mask in contexts]
        grouped: list[list[torch.Tensor]] = []
        k = 0
        for plan in self._plans:
            grouped.append(targets[k:k + plan.count])
            k += plan.count
        return context_idx, grouped


def _offsets(h: int, w: int, cols: int) -> torch.Tensor:
    """Flat offsets of an h x w block relative to its top-left patch, row-major (ascending)."""
    return (torch.arange(h).unsqueeze(1) * cols + torch.arange(w)).reshape(1, -1)


def _short_rows(contexts: list[torch.Tensor], min_keep: int) -> torch.Tensor:
    """Row numbers where any context mask keeps fewer than min_keep patches."""
    short = torch.zeros(contexts[0].shape[0], dtype=torch.bool)
    for mask in contexts:
        short |= mask.sum(1) < min_keep
    return short.nonzero().flatten()


def _truncate(mask: torch.Tensor, keep: int, generator: torch.Generator) -> torch.Tensor:
    """Indices of each row's True entries, cut to ``keep`` per row by random dropping."""
    counts = mask.sum(1)
    if int(counts.max()) == keep:
        return mask.nonzero()[:, 1].reshape(mask.shape[0], keep)
    # Random keys for kept patches, 2.0 (above any key) for the rest: the `keep` smallest keys
    # are a uniformly random subset of each row's patches.
    keys = torch.rand(mask.shape, generator=generator)
    keys.masked_fill_(~mask, 2.0)
    chosen = keys.topk(keep, dim=1, largest=False).indices
    return chosen.sort(dim=1).values


# --------------------------------------------------------------------------- public classes


class MultiBlockMaskGenerator(_BlockMasker):
    """I-JEPA multi-block masks: ``num_targets`` target blocks and ``num_context`` context blocks.

    Args:
        grid: patch grid (rows, cols), e.g. (14, 14) for 224 px images and 16 px patches; None
            until ``with_grid`` [None].
        context_scale: range of the context block's area as a fraction of the grid, in (0, 1]
            [(0.85, 1.0), I-JEPA].
        context_aspect: range of the context block's rows / cols [(1.0, 1.0), I-JEPA].
        num_context: context blocks per sample, each drawn independently [1].
        target_scale: range of each target block's area as a fraction of the grid
            [(0.15, 0.2), I-JEPA].
        target_aspect: range of each target block's rows / cols, drawn log-uniformly
            [(0.75, 1.5), I-JEPA].
        num_targets: target blocks per sample [4, I-JEPA].
        allow_overlap: let context patches also be targets; when False every target patch is
            removed from every context block [False, I-JEPA].
        min_keep: fewest context patches a sample may have; samples below it are redrawn
            [10, I-JEPA]. It bounds contexts only: targets are whole blocks sized by target_scale.
        placement_floor: share, in [0, 1], of uniform placement probability every target
            position keeps; the rest flattens coverage (see the module docstring); 1.0 is plain
            uniform placement [0.2].

    Calling it returns ``(context_masks, target_masks)``: ``num_context`` LongTensors ``[B, K_c]``
    and ``num_targets`` LongTensors ``[B, h * w]`` of patch indices (row-major, ascending in each
    row). Every target block of a batch has the same size ``h x w`` (drawn once per batch), and
    ``K_c`` is the smallest context of any block in the batch (at least ``min_keep``), so
    I-JEPA's gather-and-concatenate (``apply_masks``) takes the lists as they are.
    """

    def __init__(self, grid: tuple[int, int] | None = None, *,
                 context_scale: tuple[float, float] = (0.85, 1.0), context_aspect: tuple[float, float] = (1.0, 1.0),
                 num_context: int = 1,
                 target_scale: tuple[float, float] = (0.15, 0.2), target_aspect: tuple[float, float] = (0.75, 1.5),
                 num_targets: int = 4, allow_overlap: bool = False, min_keep: int = 10,
                 placement_floor: float = DEFAULT_PLACEMENT_FLOOR) -> None:
        self.target = _Shape(_check_range("target_scale", target_scale, at_most_one=True),
                             _check_range("target_aspect", target_aspect, at_most_one=False))
        self.num_targets = _check_int("num_targets", num_targets, 1)
        self._init_common(grid, context_scale, context_aspect, num_context, allow_overlap, min_keep, placement_floor)

    def _target_groups(self) -> list[tuple[str, str, _Shape, int]]:
        return [("targets", "target", self.target, self.num_targets)]

    def _config(self) -> dict[str, Any]:
        return dict(context_scale=self.context.scale, context_aspect=self.context.aspect,
                    num_context=self.num_context, target_scale=self.target.scale,
                    target_aspect=self.target.aspect, num_targets=self.num_targets,
                    allow_overlap=self.allow_overlap, min_keep=self.min_keep,
                    placement_floor=self.placement_floor)

    def with_grid(self, grid: tuple[int, int]) -> MultiBlockMaskGenerator:
        """A copy set up for patch grid (rows, cols); raises ValueError if the recipe cannot fit it."""
        return MultiBlockMaskGenerator(_check_grid(grid), **self._config())

    def __call__(self, batch_size: int, generator: torch.Generator) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Masks for ``batch_size`` samples drawn only from ``generator`` (a CPU torch.Generator)."""
        batch_size = _check_call(batch_size, generator)
        context, grouped = self._sample(batch_size, generator)
        return context, grouped[0]

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._config().items())
        return f"MultiBlockMaskGenerator(grid={self._grid!r}, {args})"


def _check_levels(levels: Any) -> tuple[dict[str, Any], ...]:
    if isinstance(levels, (str, Mapping)) or not isinstance(levels, Sequence) or len(levels) == 0:
        raise ConfigError(f"levels={levels!r} is not allowed: it must be a non-empty list of "
                         "{name, scale, aspect, count} mappings.")
    checked = []
    seen: set[str] = set()
    for i, level in enumerate(levels):
        if not isinstance(level, Mapping):
            raise ConfigError(f"levels[{i}]={level!r} is not allowed: each level must be a mapping with keys "
                             "name, scale, count and optionally aspect.")
        unknown = set(level) - {"name", "scale", "aspect", "count"}
        missing = {"name", "scale", "count"} - set(level)
        if unknown or missing:
            raise ConfigError(f"levels[{i}] has keys {sorted(map(str, level))}, which is not allowed: it needs name, "
                             "scale and count, may have aspect, and nothing else.")
        name = level["name"]
        if not isinstance(name, str) or not name or name in seen:
            raise ConfigError(f"levels[{i}] name={name!r} is not allowed: names must be distinct non-empty strings.")
        seen.add(name)
        checked.append({
            "name": name,
            "scale": _check_range(f"levels[{i}] ({name}) scale", level["scale"], at_most_one=True),
            "aspect": _check_range(f"levels[{i}] ({name}) aspect", level.get("aspect", (0.75, 1.5)), at_most_one=False),
            "count": _check_int(f"levels[{i}] ({name}) count", level["count"], 1),
        })
    return tuple(checked)


class HierarchicalMaskGenerator(_BlockMasker):
    """Multi-level block masks for H-JEPA: per level, ``count`` target blocks of that level's size.

    Args:
        grid: patch grid (rows, cols); None until ``with_grid`` [None].
        levels: list of ``{"name": str, "scale": (lo, hi), "aspect": (lo, hi), "count": int}``;
            ``aspect`` may be left out [(0.75, 1.5)]. Default ``DEFAULT_HIERARCHICAL_LEVELS``:
            ``fine``: 6 blocks of 2-5 % of the grid each, ``coarse``: 2 blocks of 20-30 % each.
            Many small targets make the fine level predict local structure (parts, texture) that
            nearby context nearly determines; few large ones cannot be filled in locally and push
            the coarse level to object/layout semantics. Together they cover about half of the
            grid in expectation, similar to I-JEPA's four 15-20 % blocks, so the shared context
            keeps roughly as many patches as in I-JEPA.
        context_scale: range of the context block's area as a fraction of the grid [(0.85, 1.0)].
        context_aspect: range of the context block's rows / cols [(1.0, 1.0)].
        allow_overlap: let context patches also be targets; when False the context excludes
            the targets of every level [False].
        min_keep: fewest context patches a sample may have; samples below it are redrawn [10].
        placement_floor: as in ``MultiBlockMaskGenerator``; each level's placement is flattened
            for that level's block sizes [0.2].

    Calling it returns ``(context_masks, target_masks)``: one context LongTensor ``[B, K_c]`` in a
    list, and ``target_masks[level][block]`` LongTensors ``[B, h * w]`` in the order of ``levels``;
    all blocks of one level in a batch share one size ``h x w``.
    """

    def __init__(self, grid: tuple[int, int] | None = None, *, levels: list[dict] | None = None,
                 context_scale: tuple[float, float] = (0.85, 1.0), context_aspect: tuple[float, float] = (1.0, 1.0),
                 allow_overlap: bool = False, min_keep: int = 10,
                 placement_floor: float = DEFAULT_PLACEMENT_FLOOR) -> None:
        self.levels = _check_levels(DEFAULT_HIERARCHICAL_LEVELS if levels is None else levels)
        self._init_common(grid, context_scale, context_aspect, 1, allow_overlap, min_keep, placement_floor)

    @property
    def level_names(self) -> list[str]:
        """Names of the levels, in the order of ``target_masks``."""
        return [level["name"] for level in self.levels]

    def _target_groups(self) -> list[tuple[str, str, _Shape, int]]:
        return [(lv["name"], f"level {lv['name']!r}", _Shape(lv["scale"], lv["aspect"]), lv["count"])
                for lv in self.levels]

    def _config(self) -> dict[str, Any]:
        return dict(levels=[dict(lv) for lv in self.levels], context_scale=self.context.scale,
                    context_aspect=self.context.aspect, allow_overlap=self.allow_overlap,
                    min_keep=self.min_keep, placement_floor=self.placement_floor)

    def with_grid(self, grid: tuple[int, int]) -> HierarchicalMaskGenerator:
        """A copy set up for patch grid (rows, cols); raises ValueError if a level cannot fit it."""
        return HierarchicalMaskGenerator(_check_grid(grid), **self._config())

    def __call__(self, batch_size: int,
                 generator: torch.Generator) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        """Masks for ``batch_size`` samples drawn only from ``generator`` (a CPU torch.Generator)."""
        batch_size = _check_call(batch_size, generator)
        return self._sample(batch_size, generator)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._config().items())
        return f"HierarchicalMaskGenerator(grid={self._grid!r}, {args})"


class NoMaskGenerator(MaskGenerator):
    """``mask=none``: plain augmented views, no masks. Calling it returns None."""

    def __init__(self, grid: tuple[int, int] | None = None) -> None:
        self._grid = None if grid is None else _check_grid(grid)

    def with_grid(self, grid: tuple[int, int]) -> NoMaskGenerator:
        """A copy with the grid recorded (validated, otherwise unused)."""
        return NoMaskGenerator(_check_grid(grid))

    def __call__(self, batch_size: int, generator: torch.Generator) -> None:
        """Returns None; the arguments are validated like the other generators'."""
        _check_call(batch_size, generator)
        return None

    def __repr__(self) -> str:
        return f"NoMaskGenerator(grid={self._grid!r})"
