"""``pipeline/masks/blocks.py``: a new mask type written on the public ``BlockMasker`` base as
its docstring says (valid batches, a grid, a repr, its settings checked), the lazy default mask
copied to the generator class itself, the context placed uniformly (its frequency matches its
geometry), and a context cut to the batch's K dropping a uniformly random subset of a sample's
extra patches, not the first (or last) ones in row-major order."""

from __future__ import annotations

import math
import pickle
from typing import Any

import numpy as np
import pytest
import torch
from jsonargparse import lazy_instance

from jepa_datamodules.bench.masks import mask_coverage
from jepa_datamodules.pipeline.masks import BlockMasker, BlockShape, MultiBlockMaskGenerator, TargetGroup
from jepa_datamodules.pipeline.masks.validation import check_call, check_int
from tests.helpers.masks import check_batch, gen


class BigAndSmall(BlockMasker):
    """A user's mask type: one large target block and ``num_small`` small ones per sample."""

    def __init__(self, grid: tuple[int, int] | None = None, *, num_small: int = 3, **context: Any) -> None:
        self.num_small = check_int("num_small", num_small, 1)
        super().__init__(grid, **context)

    def target_groups(self) -> list[TargetGroup]:
        return [TargetGroup("big", "big block", BlockShape((0.2, 0.25), (1.0, 1.0)), 1),
                TargetGroup("small", "small block", BlockShape((0.02, 0.03), (1.0, 1.0)), self.num_small)]

    def config(self) -> dict[str, Any]:
        return dict(num_small=self.num_small, context_scale=self.context.scale, min_keep=self.min_keep)

    def __call__(self, batch_size: int, generator: torch.Generator) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        context, (big, small) = self.sample(check_call(batch_size, generator), generator)
        return context, big + small


def test_a_mask_type_written_on_block_masker_gets_valid_batches_a_grid_and_a_repr():
    masker = BigAndSmall(num_small=2, min_keep=4).with_grid((12, 12))
    assert type(masker) is BigAndSmall and masker.grid == (12, 12)
    assert repr(masker) == "BigAndSmall(grid=(12, 12), num_small=2, context_scale=(0.85, 1.0), min_keep=4)"
    context, targets = pickle.loads(pickle.dumps(masker))(6, gen(0))  # as in a loader worker
    sizes = check_batch(context, targets, 6, (12, 12), min_keep=4)
    assert len(targets) == 3 and sizes[0][0] * sizes[0][1] > max(h * w for h, w in sizes[1:])
    # Equal generator state, equal masks.
    again = masker(6, gen(0))
    assert all(torch.equal(a, b) for a, b in zip(context + targets, again[0] + again[1]))


def test_a_block_masker_checks_its_settings_and_its_grid():
    with pytest.raises(ValueError, match=r"num_small=0 is not allowed: it must be an integer >= 1\.") as error:
        BigAndSmall(num_small=0)
    assert error.value.setting == "num_small" and error.value.allowed == "an integer >= 1"
    with pytest.raises(ValueError, match=r"grid=\(1, 12\) is smaller than a target block: big block"):
        BigAndSmall(min_keep=1).with_grid((1, 12))
    with pytest.raises(ValueError, match=r"BigAndSmall has grid=None: call with_grid"):
        BigAndSmall()(2, gen(0))


def test_the_lazy_default_mask_copies_to_the_generator_class_itself():
    # The DataModule's default mask is jsonargparse's lazy_instance (a LazyInstance_ subclass).
    lazy = lazy_instance(MultiBlockMaskGenerator, num_targets=2)
    copy = lazy.with_grid((8, 8))
    assert type(copy) is MultiBlockMaskGenerator and copy.num_targets == 2
    assert repr(lazy).startswith("MultiBlockMaskGenerator(grid=None, ")


def test_context_frequency_matches_its_geometry():
    # allow_overlap=True leaves contexts uncut, so each patch's context frequency must equal
    # the chance a uniformly placed context block covers it. Sizes: s uniform in
    # (0.85, 1), side round(sqrt(196 s)) -> 13 or 14.
    n, side = 196, 14
    s = 0.85 + (np.arange(100_000) + 0.5) / 100_000 * 0.15
    sides = np.floor(np.sqrt(s * n) + 0.5).astype(int)
    # The block's rows and columns come from one size draw, so average the 2-D product per size.
    expected = np.zeros((side, side))
    for k in np.unique(sides):
        starts = side - k + 1
        cov = np.array([sum(r <= i < r + k for r in range(starts)) / starts for i in range(side)])
        expected += np.mean(sides == k) * np.outer(cov, cov)
    batches, batch = 150, 128
    _, context = mask_coverage(MultiBlockMaskGenerator(allow_overlap=True).with_grid((14, 14)),
                               batches=batches, batch_size=batch, seed=2)
    # Sizes are drawn once per batch, so the noise is that of 150 size draws (binomial),
    # plus placement noise; 4 standard errors of the size share bound the difference.
    p13 = float(np.mean(sides == 13))
    tolerance = 4 * math.sqrt(p13 * (1 - p13) / batches) + 0.02
    assert np.abs(context.numpy() - expected).max() < tolerance
    assert context[-1, -1] > 0.3  # the last row and column are reachable


def test_a_context_is_cut_to_k_without_favouring_the_top_or_the_bottom():
    # Placement is symmetric top to bottom, so the context patches a uniform cut keeps sit, on
    # average, on the middle row (6.5 of 0..13). Keeping the first patches in row-major order
    # (the reference) gives about 4.3, dropping them about 8.6.
    generator, draws = MultiBlockMaskGenerator(grid=(14, 14)), torch.Generator().manual_seed(0)
    rows, cols = [], []
    for _ in range(40):
        (context,), _ = generator(32, draws)
        assert torch.equal(context, context.sort(dim=1).values)
        assert all(len(set(sample.tolist())) == context.shape[1] for sample in context)  # no patch twice
        rows.append((context // 14).double().mean())
        cols.append((context % 14).double().mean())
    assert abs(float(torch.stack(rows).mean()) - 6.5) < 0.5
    assert abs(float(torch.stack(cols).mean()) - 6.5) < 0.5
