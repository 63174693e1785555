"""``pipeline/masks/base.py``: ``NoMaskGenerator`` (``mask=none``) takes a grid and gives no masks."""

from __future__ import annotations

from jepa_datamodules.pipeline.masks import NoMaskGenerator
from tests.helpers.masks import gen


def test_no_mask_generator():
    masks = NoMaskGenerator().with_grid((14, 14))
    assert masks.grid == (14, 14)
    assert masks(4, gen(0)) is None
