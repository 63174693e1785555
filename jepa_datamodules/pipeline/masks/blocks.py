"""``BlockMasker``: the machinery every block mask type shares, public so a new one is short.

A block masker draws, per sample, rectangular target blocks (in groups: one group per
hierarchical level, or the single group of multi-block) and ``num_context`` context blocks,
for a whole batch at once. How block sizes and target positions are drawn is in
``placement.py``; here is the rest: the grid checks, the context, and the batch sampler.

The context block is placed uniformly over its valid positions (last row and column
included), so a patch is context with the probability that geometry implies: the chance the
context block covers it times the chance no target does (targets are removed from the
context unless ``allow_overlap``). If a sample's context falls below ``min_keep`` patches,
that sample's blocks are redrawn (whole batch rows at once, never a per-sample loop); each
context tensor is then cut to the smallest context in the batch by dropping a uniformly
random subset of each sample's extra patches (the reference keeps the first ones in
row-major order, which would bias the context towards the top of the image). With several
context blocks, all of them are cut to the smallest of any of them, so they share one K.

Writing a new mask type (``MultiBlockMaskGenerator`` in ``multiblock.py`` is the example):

1. ``__init__(self, grid=None, *, <your options>, context_scale=..., ...)``: check your
   options with ``validation.check_*`` and store them, then call ``super().__init__(grid,
   context_scale=..., context_aspect=..., num_context=..., allow_overlap=..., min_keep=...,
   placement_floor=...)``, which checks those and, with a grid, builds the placement tables.
2. ``target_groups(self)``: a list of ``placement.TargetGroup(name, label, shape, count)``,
   the target blocks to draw (``shape`` a ``placement.BlockShape`` of scale and aspect ranges).
3. ``config(self)``: the constructor keywords (all but ``grid``) that rebuild this masker;
   ``with_grid`` and ``repr`` use them. Keep only settings and tables derived from them on
   the instance: it is pickled into every DataLoader worker.
4. ``__call__(self, batch_size, generator)``: ``check_call`` the arguments, then
   ``self.sample(batch_size, generator)`` gives ``(context_masks, targets per group)``;
   return them in the form your consumers expect (``target_levels`` reads either form).
"""

from __future__ import annotations

from typing import Any, Self

import torch

from ...errors import ConfigError
from .base import MaskGenerator
from .placement import DEFAULT_PLACEMENT_FLOOR, BlockShape, TargetGroup, TargetPlan, plan_targets
from .validation import Grid, check_bool, check_floor, check_grid, check_int

__all__ = ["BlockMasker"]

# Rounds of redrawing samples whose context is below min_keep before giving up.
_MAX_REDRAW_ROUNDS = 100


class BlockMasker(MaskGenerator):
    """Base of the block mask generators: settings shared by every block mask type, the
    placement tables for one grid, and the vectorised batch sampler (see the module docstring
    for how to write a subclass).

    Args:
        grid: patch grid (rows, cols); None until ``with_grid`` [None].
        context_scale: range of each context block's area as a fraction of the grid, in (0, 1]
            [(0.85, 1.0)]; blocks are clipped to the grid, so 1.0 is the whole image.
        context_aspect: range of each context block's rows / cols [(1.0, 1.0)].
        num_context: context blocks per sample, each drawn independently [1].
        allow_overlap: let context patches also be targets; when False every target patch is
            removed from every context block [False].
        min_keep: fewest context patches a sample may have; samples below it are redrawn [10].
        placement_floor: share, in [0, 1], of uniform placement probability every target
            position keeps (``placement.py``); 1.0 is plain uniform placement [0.2].
    """

    _grid: Grid | None
    _plans: tuple[TargetPlan, ...]

    def __init__(self, grid: tuple[int, int] | None = None, *,
                 context_scale: tuple[float, float] = (0.85, 1.0), context_aspect: tuple[float, float] = (1.0, 1.0),
                 num_context: int = 1, allow_overlap: bool = False, min_keep: int = 10,
                 placement_floor: float = DEFAULT_PLACEMENT_FLOOR) -> None:
        self.context = BlockShape.checked("context", context_scale, context_aspect)
        self.num_context = check_int("num_context", num_context, 1)
        self.allow_overlap = check_bool("allow_overlap", allow_overlap)
        self.min_keep = check_int("min_keep", min_keep, 1)
        self.placement_floor = check_floor(placement_floor)
        self._grid = None
        self._plans = ()
        if grid is not None:
            self._set_grid(check_grid(grid))

    def target_groups(self) -> list[TargetGroup]:
        """The target blocks to draw, group by group (a subclass says)."""
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """Constructor keywords, all but ``grid``, that rebuild this masker (a subclass says)."""
        raise NotImplementedError

    def with_grid(self, grid: tuple[int, int]) -> Self:
        """A copy set up for patch grid (rows, cols); raises ``ConfigError`` if the recipe cannot fit it."""
        return self._own_class()(check_grid(grid), **self.config())

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{self._own_class().__name__}(grid={self._grid!r}, {args})"

    def _own_class(self) -> type[Self]:
        # The DataModule's default mask is jsonargparse's lazy_instance, an instance of a
        # subclass made on the fly (LazyInstance_...); copies are of the generator class itself.
        return getattr(self, "_lazy_class_type", type(self))

    def _set_grid(self, grid: Grid) -> None:
        rows, cols = grid
        n = rows * cols
        plans = tuple(plan_targets(group, grid, self.placement_floor) for group in self.target_groups())
        (ch_min, ch_max), (cw_min, cw_max) = self.context.extremes(n)
        ctx_min = min(ch_min, rows) * min(cw_min, cols)
        ctx_max = min(ch_max, rows) * min(cw_max, cols)
        if ctx_min < self.min_keep:
            raise ConfigError(
                f"grid={grid!r} is too small for min_keep={self.min_keep}: the smallest context block it allows "
                f"has {ctx_min} patches; use a larger grid, a larger context_scale or a smaller min_keep.",
                setting="min_keep", allowed=f"at most {ctx_min} on this grid")
        if not self.allow_overlap:
            smallest_target = min(p.min_area for p in plans)
            if ctx_max - smallest_target < self.min_keep:
                raise ConfigError(
                    f"grid={grid!r} is too small: a context block of at most {ctx_max} patches minus a target block "
                    f"of at least {smallest_target} leaves fewer than min_keep={self.min_keep} context patches.",
                    setting="min_keep", allowed=f"at most {ctx_max - smallest_target} on this grid")
        self._grid = grid
        self._plans = plans

    def _require_grid(self) -> Grid:
        if self._grid is None:
            raise ConfigError(f"{type(self).__name__} has grid=None: call with_grid((rows, cols)) before sampling.",
                              setting="grid", allowed="(rows, cols), set by with_grid")
        return self._grid

    def sample(self, batch_size: int,
               generator: torch.Generator) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        """Masks for ``batch_size`` samples drawn only from ``generator``: ``num_context`` context
        LongTensors ``[B, K_c]`` and, per target group, ``count`` LongTensors ``[B, h * w]``.

        1. Block sizes: one ``(h, w)`` per target group and one for the context blocks, for the
           whole batch.
        2. Positions, per sample: targets from the group's flattened placement tables, contexts
           uniformly; targets are removed from the contexts unless ``allow_overlap``.
        3. Samples whose context keeps fewer than ``min_keep`` patches are redrawn, all at once.
        4. Every context tensor is cut to the smallest context in the batch (one K for all).

        ``batch_size`` is taken as checked (``validation.check_call``).
        """
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
                raise ConfigError(
                    f"{type(self).__name__}: {short.numel()} of {batch_size} samples still had fewer than "
                    f"min_keep={self.min_keep} context patches after {_MAX_REDRAW_ROUNDS} redraws; "
                    "lower min_keep or the target scale, or raise the context scale.",
                    setting="min_keep", allowed="fewer than the context patches this recipe leaves")
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
