"""The mask benchmark's helpers (``bench/masks.py``): the per-sample baseline gives valid masks
and the timings come back."""

from __future__ import annotations

from jepa_datamodules.bench.masks import per_sample_multiblock_baseline, time_mask_generators
from tests.helpers.masks import check_batch, gen


def test_per_sample_baseline_gives_valid_masks():
    for grid in [(14, 14), (8, 8)]:
        context, targets = per_sample_multiblock_baseline(16, grid, gen(13))
        sizes = check_batch(context, targets, 16, grid)
        assert len(sizes) == 4


def test_time_mask_generators_reports_three_timings():
    result = time_mask_generators(batch_size=8, grid=(8, 8), repeats=2)
    assert set(result) == {"ours_ms", "baseline_ms", "hierarchical_ms"}
    assert all(isinstance(v, float) and v > 0 for v in result.values())
