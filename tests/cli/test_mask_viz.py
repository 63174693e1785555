"""The mask picture (``cli/mask_viz.py``): enlarged views with outlines, title and legend,
one panel per hierarchical level, and its bad arguments."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from jepa_datamodules.cli.mask_viz import CONTEXT_COLOUR, TARGET_COLOURS, draw_mask_grid, tile_upscale
from jepa_datamodules.pipeline.masks import HierarchicalMaskGenerator, MultiBlockMaskGenerator
from tests.helpers.masks import gen


def blend(base, colour, alpha):
    return np.array([b * (1 - alpha) + c * alpha for b, c in zip(base, colour)])


VIEW = (90, 140, 110)  # not a grey: anti-aliased text never has this colour


def rows_with(pixels: np.ndarray, colour) -> np.ndarray:
    """Indices of the PNG rows holding at least one pixel of exactly ``colour``."""
    return np.flatnonzero((pixels == np.array(colour)).all(-1).any(1))


def test_png_of_32px_views_is_enlarged_with_outlines_title_and_legend(tmp_path):
    """At 32 px the picture must still read: views enlarged to >= 192 px tiles (a 4-image PNG is
    at least 392 x 392 px), their own pixels kept where the encoder sees them, targets lightly
    filled, hidden patches paled (not darkened), and a title above and a legend below the views."""
    grid, patch = (8, 8), 4
    images = torch.tensor(VIEW, dtype=torch.uint8).view(1, 3, 1, 1).expand(5, 3, 32, 32).contiguous()
    context, targets = MultiBlockMaskGenerator().with_grid(grid)(5, gen(11))
    out = draw_mask_grid(images, context, targets, patch, tmp_path / "sub" / "masks.png", max_images=4,
                         recipe=MultiBlockMaskGenerator(), title="first training batch")
    assert out == tmp_path / "sub" / "masks.png"
    assert [p.name for p in out.parent.iterdir()] == ["masks.png"]  # no temporary file left behind
    picture = Image.open(out)
    picture.load()
    assert picture.format == "PNG" and picture.mode == "RGB"
    up = tile_upscale(32, 32)
    assert up * 32 >= 192
    assert picture.width >= 2 * 192 + 8 and picture.height >= 2 * 192 + 8

    pixels = np.asarray(picture).astype(int)
    tile_rows = rows_with(pixels, VIEW)  # untouched view pixels: context patches keep their own colour
    assert tile_rows[-1] - tile_rows[0] > 192  # two rows of tiles
    first_tile_top = int(tile_rows[0])
    first_tile_left = int(np.flatnonzero((pixels[first_tile_top] == VIEW).all(-1))[0])

    # -- patch colours in the first view: find its exact top-left corner from a context patch
    def patch_pixel(index, top, left):
        r, c = divmod(index, grid[1])
        return pixels[top + (r * patch + patch // 2) * up, left + (c * patch + patch // 2) * up]

    corners = [(first_tile_top - dy, first_tile_left - dx) for dy in range(0, 200) for dx in range(0, 200)
               if (first_tile_top - dy) >= 0 and (first_tile_left - dx) >= 0]
    context_set = set(context[0][0].tolist())
    target_sets = [set(t[0].tolist()) for t in targets]
    hidden = [i for i in range(64) if i not in context_set and not any(i in t for t in target_sets)]

    def fits(top, left):
        return all((patch_pixel(i, top, left) == VIEW).all() for i in context_set
                   if not any(i in t for t in target_sets))

    top, left = next((t, l) for t, l in corners if fits(t, l))
    single = [(index, k) for k, block in enumerate(target_sets) for index in block
              if sum(index in other for other in target_sets) == 1]
    assert single and hidden
    for index, k in single:  # a light fill in the block's colour: the view stays readable under a target
        centre = patch_pixel(index, top, left)
        assert np.abs(centre - blend(VIEW, TARGET_COLOURS[k], 0.25)).max() <= 1, (index, k, centre)
    for index in hidden[:3]:  # paled towards white (lighter than the view, not darker)
        assert np.abs(patch_pixel(index, top, left) - blend(VIEW, (255, 255, 255), 0.65)).max() <= 1

    # -- the title above the views: dark text pixels
    assert (pixels[:first_tile_top] < 60).all(-1).sum() > 100
    # -- the legend below the views: a swatch of the context colour and of every target block, with text
    below = pixels[int(tile_rows[-1]) + 1:]
    for colour in [CONTEXT_COLOUR, *TARGET_COLOURS[:len(targets)]]:
        assert (below == np.array(colour)).all(-1).sum() >= 20, f"no legend swatch in {colour}"
    assert (below < 60).all(-1).sum() > 100  # the labels


def test_png_for_hierarchical_masks_has_one_panel_per_level(tmp_path):
    images = torch.tensor(VIEW, dtype=torch.uint8).view(1, 3, 1, 1).expand(3, 3, 96, 128).contiguous()
    generator = HierarchicalMaskGenerator()
    context, targets = generator.with_grid((12, 16))(3, gen(12))
    out = draw_mask_grid(images, context, targets, 8, tmp_path / "hier.png", max_images=1, recipe=generator)
    pixels = np.asarray(Image.open(out)).astype(int)
    view_rows = rows_with(pixels, VIEW)
    tile_height = 96 * tile_upscale(96, 128)
    assert view_rows[-1] - view_rows[0] > 2 * tile_height  # two panels of one view each, stacked
    fine = pixels[view_rows[0]:view_rows[0] + tile_height]
    coarse = pixels[view_rows[-1] - tile_height + 1:view_rows[-1] + 1]
    # The fine level draws six blocks, the coarse level two: the sixth colour is in the first panel only.
    assert len(rows_with(fine, TARGET_COLOURS[5])) and not len(rows_with(coarse, TARGET_COLOURS[5]))
    assert len(rows_with(fine, TARGET_COLOURS[1])) and len(rows_with(coarse, TARGET_COLOURS[1]))


def test_png_of_plain_views_is_the_views_themselves(tmp_path):
    images = torch.rand(3, 3, 96, 128)
    plain = draw_mask_grid(images, None, None, 8, tmp_path / "plain.png", title="eval views")
    pixels = np.asarray(Image.open(plain)).astype(int)
    up = tile_upscale(96, 128)
    expected = (images[0].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy().astype(int)
    expected = expected.repeat(up, axis=0).repeat(up, axis=1)
    found = [(top, left) for top in range(0, 120) for left in range(0, 12)
             if np.abs(pixels[top:top + expected.shape[0], left:left + expected.shape[1]] - expected).max() <= 1
             and pixels[top:top + expected.shape[0], left:left + expected.shape[1]].shape == expected.shape]
    assert found, "the first view is not in the picture unchanged"
    assert not any((pixels == np.array(c)).all(-1).sum() > 50 for c in TARGET_COLOURS[:4])  # no legend


def test_png_bad_arguments(tmp_path):
    images = torch.zeros(2, 3, 32, 32, dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"patch_size=5 is not allowed for 32 x 32 images"):
        draw_mask_grid(images, None, None, 5, tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"images with shape \(2, 32, 32\) are not allowed"):
        draw_mask_grid(images[:, 0], None, None, 4, tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"hold patch index 64, which is not allowed"):
        draw_mask_grid(images, [torch.tensor([[0, 64], [1, 2]])], None, 4, tmp_path / "x.png")
