"""``pipeline/masks/validation.py``: every bad setting or call of a mask generator is one
sentence naming the setting, the value given and what is allowed."""

from __future__ import annotations

import pytest

from jepa_datamodules.pipeline.masks import HierarchicalMaskGenerator, MultiBlockMaskGenerator, NoMaskGenerator
from tests.helpers.masks import gen


MB, HM = MultiBlockMaskGenerator, HierarchicalMaskGenerator


@pytest.mark.parametrize("make, message", [
    (lambda: MB(target_scale=(0.0, 0.2)), r"target_scale=\(0\.0, 0\.2\) .*both ends must lie in \(0, 1\]"),
    (lambda: MB(target_scale=(0.1, 1.5)), r"target_scale=\(0\.1, 1\.5\) is not allowed"),
    (lambda: MB(context_scale=(0.9, 0.8)), r"context_scale=\(0\.9, 0\.8\) is not allowed: min 0\.9 is greater"),
    (lambda: MB(target_aspect=(2.0, 1.0)), r"target_aspect=\(2\.0, 1\.0\) is not allowed: min 2 is greater than max 1"),
    (lambda: MB(target_aspect=(0.0, 1.0)), r"target_aspect=.* both ends must lie in \(0, inf\)"),
    (lambda: MB(target_scale=0.2), r"target_scale=0\.2 is not allowed: it must be a pair"),
    (lambda: MB(num_targets=0), r"num_targets=0 is not allowed: it must be an integer >= 1"),
    (lambda: MB(min_keep=0), r"min_keep=0 is not allowed"),
    (lambda: MB(placement_floor=1.5), r"placement_floor=1\.5 is not allowed"),
    (lambda: MB(grid=(0, 14)), r"grid=\(0, 14\) is not allowed: it must be two integers"),
    (lambda: MB().with_grid((3, 3)), r"grid=\(3, 3\) is too small for min_keep=10"),
    (lambda: MB(target_scale=(0.4, 0.5), target_aspect=(3.0, 4.0)).with_grid((14, 14)),
     r"grid=\(14, 14\) is smaller than a target block: .* up to 20 x 6 patches"),
    (lambda: MB(target_scale=(0.9, 1.0), target_aspect=(1.0, 1.0), min_keep=30).with_grid((14, 14)),
     r"grid=\(14, 14\) is too small: a context block of at most 196 patches minus a target block of at least 169"),
    (lambda: MB()(8, gen(0)), r"grid=None: call with_grid"),
    (lambda: MB().with_grid((14, 14))(0, gen(0)), r"batch_size=0 is not allowed"),
    (lambda: MB().with_grid((14, 14))(8, None), r"generator=None is not allowed"),
    (lambda: HM(levels=[]), r"levels=\[\] is not allowed"),
    (lambda: HM(levels=[{"name": "a", "scale": (0.1, 0.2), "count": 0}]), r"count=0 is not allowed"),
    (lambda: HM(levels=[{"name": "a", "scale": (0.1, 0.2), "count": 1}] * 2),
     r"name='a' is not allowed: names must be distinct"),
    (lambda: HM(levels=[{"name": "a", "scale": (0.1, 0.2)}]),
     r"levels\[0\] has keys \['name', 'scale'\], which is not allowed"),
    (lambda: NoMaskGenerator().with_grid((14,)), r"grid=\(14,\) is not allowed"),
])
def test_bad_arguments_say_what_is_allowed(make, message):
    with pytest.raises(ValueError, match=message):
        make()
