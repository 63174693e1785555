"""Checks of mask batches shared by the mask generator tests and the mask benchmark's tests.

Rounding tolerance used for block sizes: a block of h x w patches is accepted when some
(scale, aspect) in the configured ranges gives exact sides within half a patch of (h, w),
checked on the box [h +- 0.5] x [w +- 0.5]: area (h - 0.5)(w - 0.5) <= hi * N and
(h + 0.5)(w + 0.5) >= lo * N, aspect (h - 0.5)/(w + 0.5) <= hi and (h + 0.5)/(w - 0.5) >= lo.
"""

from __future__ import annotations

import torch


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def block_shape(block: torch.Tensor, cols: int) -> tuple[int, int]:
    """(h, w) of a target tensor [B, K], asserting every row is one solid h x w rectangle."""
    r, c = block // cols, block % cols
    h = r.max(1).values - r.min(1).values + 1
    w = c.max(1).values - c.min(1).values + 1
    assert (h == h[0]).all() and (w == w[0]).all(), "block size differs within the batch"
    h, w = int(h[0]), int(w[0])
    # K distinct indices inside an h x w bounding box with K == h * w: a solid rectangle.
    assert block.shape[1] == h * w
    assert (block.diff(dim=1) > 0).all(), "indices are not strictly ascending (row-major, unique)"
    return h, w


def within_ranges(h: int, w: int, n: int, scale, aspect) -> bool:
    """Block size allowed by the ranges up to rounding (see the module docstring)."""
    return ((h - 0.5) * (w - 0.5) <= scale[1] * n + 1e-9 and (h + 0.5) * (w + 0.5) >= scale[0] * n - 1e-9
            and (h - 0.5) / (w + 0.5) <= aspect[1] + 1e-9 and (h + 0.5) / (w - 0.5) >= aspect[0] - 1e-9)


def as_sets(t: torch.Tensor) -> list[set[int]]:
    return [set(row) for row in t.tolist()]


def check_batch(context, targets, batch, grid, min_keep=10, allow_overlap=False):
    """Properties every multi-block batch must have; returns the target block sizes."""
    rows, cols = grid
    n = rows * cols
    sizes = []
    for t in list(context) + list(targets):
        assert t.dtype == torch.long and t.dim() == 2 and t.shape[0] == batch
        assert int(t.min()) >= 0 and int(t.max()) < n
    for c in context:
        assert c.shape[1] >= min_keep
        assert (c.diff(dim=1) > 0).all()
    for t in targets:
        sizes.append(block_shape(t, cols))
    if not allow_overlap:
        union = [set() for _ in range(batch)]
        for t in targets:
            for u, s in zip(union, as_sets(t)):
                u |= s
        for c in context:
            for u, s in zip(union, as_sets(c)):
                assert not (u & s), "a context patch is also a target"
    return sizes
