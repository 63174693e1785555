"""Block sizes and where target blocks go: the placement solver and per-grid target plans.

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
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch

from ...errors import ConfigError
from .validation import Grid, check_range

__all__ = ["DEFAULT_PLACEMENT_FLOOR", "BlockShape", "TargetGroup", "TargetPlan", "plan_targets"]

# Probability share every valid block position keeps of what uniform placement gives it.
# At 14x14 (I-JEPA targets) 0.2 gives 1.75x max/min target coverage with blocks using
# ~30 % of their positions effectively (exp of the entropy); 0.0 would give ~1.56x but
# concentrate blocks on ~14 % of positions, 1.0 (uniform) gives ~19x.
DEFAULT_PLACEMENT_FLOOR = 0.2


# Midpoints per axis of the (scale, log-aspect) rectangle used to weigh block sizes when
# the placement tables are built; 128^2 points put each size's weight within ~1 %.
_SIZE_QUADRATURE = 128


def _round_half_up(x: float) -> int:
    # Python's round() rounds halves to even; half-up is the documented rule.
    return int(math.floor(x + 0.5))


@dataclass(frozen=True)
class BlockShape:
    """Scale (fraction of the grid's patches) and aspect (rows / cols) ranges of a block."""

    scale: tuple[float, float]
    aspect: tuple[float, float]

    @classmethod
    def checked(cls, kind: str, scale: Any, aspect: Any) -> BlockShape:
        """The shape from the settings ``<kind>_scale`` (in (0, 1]) and ``<kind>_aspect``, checked."""
        return cls(check_range(f"{kind}_scale", scale, at_most_one=True),
                   check_range(f"{kind}_aspect", aspect, at_most_one=False))

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
class TargetPlan:
    """A group of target blocks sharing one shape, with its placement tables for one grid."""

    name: str
    shape: BlockShape
    count: int
    row_cdf: dict[int, torch.Tensor]  # block height -> CDF over top rows
    col_cdf: dict[int, torch.Tensor]  # block width -> CDF over left columns
    min_area: int


class TargetGroup(NamedTuple):
    """Target blocks of one shape that a block masker draws: ``count`` blocks per sample, one
    size for all of them per batch. ``name`` keys the group (a hierarchical level's name);
    ``label`` is how error messages call it (``"target"``, ``"level 'fine'"``)."""

    name: str
    label: str
    shape: BlockShape
    count: int


def plan_targets(group: TargetGroup, grid: Grid, floor: float) -> TargetPlan:
    """``group``'s placement tables for ``grid`` with ``placement_floor`` = ``floor``; raises
    ``ConfigError`` if its largest block does not fit the grid."""
    name, label, shape, count = group
    rows, cols = grid
    (h_min, h_max), (w_min, w_max) = shape.extremes(rows * cols)
    if h_max > rows or w_max > cols:
        raise ConfigError(
            f"grid={grid!r} is smaller than a target block: {label} scale={shape.scale} aspect={shape.aspect} "
            f"needs blocks up to {h_max} x {w_max} patches (rows x cols); use a larger grid or a smaller scale.",
            setting="grid", allowed=f"at least {h_max} x {w_max} patches")
    heights, widths = shape.weights(grid)
    tables = []
    for length, lo, hi, weights in ((rows, h_min, h_max, heights), (cols, w_min, w_max, widths)):
        sizes = tuple(range(lo, hi + 1))
        # A size the quadrature missed can still be drawn at the range's very end; give it a
        # token weight so it has a table (it hardly moves the optimum).
        raw = tuple(round(max(weights.get(s, 0.0), 1e-6), 12) for s in sizes)
        tables.append({s: _cdf(p) for s, p in zip(sizes, _flat_placement(length, sizes, raw, floor))})
    return TargetPlan(name, shape, count, tables[0], tables[1], h_min * w_min)

