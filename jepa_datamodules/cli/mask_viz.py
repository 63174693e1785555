"""A picture of masked views that reads at a glance, also at 32 px.

The views keep their own colours. The context (what the context encoder sees) is outlined in
blue; each target block is outlined in its own colour over a light fill of that colour;
patches that are neither are paled towards white (hidden from the model, not dark content).
Small images are enlarged (nearest neighbour, so patch edges stay sharp). A title names the
patch grid and the mask recipe, a legend at the bottom names every colour, and hierarchical
masks get one panel per level (fine, coarse, ...) so the levels can be told apart.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ..storage.files import atomic_write
from ..errors import ConfigError
from ..pipeline.masks import target_levels

__all__ = ["CONTEXT_COLOUR", "HIDDEN_COLOUR", "TARGET_COLOURS", "describe_recipe", "draw_mask_grid", "tile_upscale"]

CONTEXT_COLOUR = (30, 100, 255)
# Target colours, in block order within a level; none of them is blue so they never read as
# context. Repeats after ten.
TARGET_COLOURS = (
    (255, 140, 0), (230, 30, 60), (40, 190, 70), (200, 60, 220), (250, 220, 20),
    (0, 200, 200), (150, 90, 40), (255, 120, 180), (150, 200, 30), (120, 120, 120),
)
HIDDEN_COLOUR = (255, 255, 255)  # what hidden patches are paled towards
_HIDDEN_MIX = 0.65     # share of white in a hidden patch: clearly "not there", content still faintly visible
_TARGET_FILL = 0.25    # light fill: the view stays readable under a target block
_LINE = 2              # outline width in (enlarged) pixels
_GAP = 4               # white pixels between and around tiles
_MIN_TILE = 192        # small views are enlarged to about this many pixels on their long side
_TEXT = (20, 20, 20)


def tile_upscale(height: int, width: int) -> int:
    """Integer factor views are enlarged by: ``max(1, 192 // max(height, width))``.

    32 px CIFAR views become 192 px tiles (6x), 96 px STL-10 views 192 px (2x); 224 px and
    larger are drawn at their own size.
    """
    return max(1, _MIN_TILE // max(height, width))


def describe_recipe(mask: Any) -> str:
    """One line naming a mask generator's recipe, e.g. ``multi-block: 4 targets of 15-20 % ...``.

    ``mask`` may be a ``MultiBlockMaskGenerator``, ``HierarchicalMaskGenerator``, a string
    (returned as it is) or None (empty string).
    """
    if mask is None or isinstance(mask, str):
        return mask or ""

    def share(bounds: Sequence[float]) -> str:
        low, high = (round(100 * b) for b in bounds)
        return f"{low} %" if low == high else f"{low}-{high} %"

    context = getattr(mask, "context", None)
    context_text = f"context {share(context.scale)} of the grid" if context is not None else ""
    if getattr(mask, "allow_overlap", True) is False:
        context_text += " minus the targets"
    levels = getattr(mask, "levels", None)
    if levels:
        parts = [f"{level['name']} {level['count']} x {share(level['scale'])}" for level in levels]
        return f"hierarchical: {', '.join(parts)} of the grid per block; {context_text}"
    target = getattr(mask, "target", None)
    if target is not None:
        aspect = "-".join(f"{a:g}" for a in target.aspect)
        return (f"multi-block: {mask.num_targets} targets of {share(target.scale)} of the grid, aspect {aspect}; "
                f"{context_text}")
    return type(mask).__name__


def _as_uint8_hwc(images: torch.Tensor) -> np.ndarray:
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] not in (1, 3):
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ConfigError(f"images with shape {shape} are not allowed: pass a tensor [B, 3, H, W] (or [B, 1, H, W]).")
    images = images.detach().cpu()
    if images.dtype == torch.uint8:
        pixels = images
    elif images.is_floating_point():
        # Floats are taken as [0, 1] intensities; values outside are clipped, not rescaled.
        pixels = (images.float().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
    else:
        raise ConfigError(f"images of dtype {images.dtype} are not allowed: use uint8 or float in [0, 1].")
    if pixels.shape[1] == 1:
        pixels = pixels.expand(-1, 3, -1, -1)
    return pixels.permute(0, 2, 3, 1).numpy()


def _patch_state(masks: list[torch.Tensor], sample: int, n_patches: int, name: str) -> np.ndarray:
    hit = np.zeros(n_patches, dtype=bool)
    for mask in masks:
        idx = mask[sample].detach().cpu().long().numpy()
        if idx.size and (idx.min() < 0 or idx.max() >= n_patches):
            raise ConfigError(f"{name} hold patch index {int(idx.max() if idx.max() >= n_patches else idx.min())}, "
                             f"which is not allowed: indices must lie in [0, {n_patches}) for this image size "
                             "and patch_size.")
        hit[idx] = True
    return hit


def _font(size: int) -> Any:
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1: a scalable font
    except TypeError:  # older Pillow: its fixed bitmap font
        return ImageFont.load_default()


def _outline(inside: np.ndarray, width: int) -> np.ndarray:
    """Pixels of ``inside`` (H, W bool) within ``width`` pixels of its edge (image borders count)."""
    padded = np.pad(inside, width, constant_values=False)
    core = inside.copy()
    height, wide = inside.shape
    for dy in range(-width, width + 1):
        for dx in range(-width, width + 1):
            core &= padded[width + dy:width + dy + height, width + dx:width + dx + wide]
    return inside & ~core


class _Tiles:
    """Draws one view with one level's targets (see the module docstring)."""

    def __init__(self, pixels: np.ndarray, patch_size: int, up: int):
        self.pixels, self.patch_size, self.up = pixels, patch_size, up
        _, height, width, _ = pixels.shape
        self.grid = (height // patch_size, width // patch_size)

    def to_pixels(self, per_patch: np.ndarray) -> np.ndarray:
        block = self.patch_size * self.up
        return per_patch.reshape(self.grid).repeat(block, axis=0).repeat(block, axis=1)

    def draw(self, i: int, contexts: list[torch.Tensor], blocks: list[torch.Tensor],
             other_levels: list[torch.Tensor]) -> np.ndarray:
        tile = self.pixels[i].astype(np.float32)
        if self.up > 1:
            tile = tile.repeat(self.up, axis=0).repeat(self.up, axis=1)
        if not contexts and not blocks:
            return np.clip(tile + 0.5, 0, 255).astype(np.uint8)
        n_patches = self.grid[0] * self.grid[1]
        context = _patch_state(contexts, i, n_patches, "context_masks")
        targets = [_patch_state([block], i, n_patches, "target_masks") for block in blocks]
        # Patches of the other levels' targets are not hidden: they are just not drawn on this panel.
        seen = context | _patch_state(other_levels, i, n_patches, "target_masks")
        for target in targets:
            seen |= target
        hidden = self.to_pixels(~seen)[..., None]
        tile = np.where(hidden, tile * (1 - _HIDDEN_MIX) + np.array(HIDDEN_COLOUR) * _HIDDEN_MIX, tile)
        for k, target in enumerate(targets):
            colour = np.array(TARGET_COLOURS[k % len(TARGET_COLOURS)], dtype=np.float32)
            inside = self.to_pixels(target)[..., None]
            tile = np.where(inside, tile * (1 - _TARGET_FILL) + colour * _TARGET_FILL, tile)
        if contexts:
            tile[_outline(self.to_pixels(context), _LINE)] = CONTEXT_COLOUR
        for k, target in enumerate(targets):
            tile[_outline(self.to_pixels(target), _LINE)] = TARGET_COLOURS[k % len(TARGET_COLOURS)]
        return np.clip(tile + 0.5, 0, 255).astype(np.uint8)


def _grid_canvas(tiles: list[np.ndarray]) -> np.ndarray:
    tile_h, tile_w = tiles[0].shape[:2]
    n_cols = math.ceil(math.sqrt(len(tiles)))
    n_rows = math.ceil(len(tiles) / n_cols)
    canvas = np.full((n_rows * (tile_h + _GAP) + _GAP, n_cols * (tile_w + _GAP) + _GAP, 3), 255, dtype=np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, n_cols)
        top, left = _GAP + r * (tile_h + _GAP), _GAP + c * (tile_w + _GAP)
        canvas[top:top + tile_h, left:left + tile_w] = tile
    return canvas


def _text_block(lines: list[str], width: int, font: Any, line_height: int) -> Image.Image:
    wrapped: list[str] = []
    for line in lines:  # wrap by measured width, word by word
        current = ""
        for word in line.split(" "):
            candidate = f"{current} {word}".strip()
            if current and font.getlength(candidate) > width - 2 * _GAP - 4:
                wrapped.append(current)
                candidate = word
            current = candidate
        wrapped.append(current)
    block = Image.new("RGB", (width, line_height * len(wrapped) + _GAP), "white")
    draw = ImageDraw.Draw(block)
    for row, line in enumerate(wrapped):
        draw.text((_GAP + 2, _GAP + row * line_height), line, fill=_TEXT, font=font)
    return block


def _legend(entries: list[tuple[str, tuple[int, int, int], str]], width: int, font: Any,
            line_height: int) -> Image.Image:
    """Swatches with labels, wrapped into rows; ``kind`` is "outline", "fill" or "pale"."""
    swatch = line_height - 4
    placed: list[tuple[int, int]] = []
    x, row = _GAP + 2, 0
    for label, _, _ in entries:
        needed = swatch + 6 + int(font.getlength(label)) + 18
        if x + needed > width and x > _GAP + 2:
            x, row = _GAP + 2, row + 1
        placed.append((x, row))
        x += needed
    image = Image.new("RGB", (width, (row + 1) * line_height + 2 * _GAP), "white")
    draw = ImageDraw.Draw(image)
    for (label, colour, kind), (x, row) in zip(entries, placed):
        top = _GAP + row * line_height + 2
        box = (x, top, x + swatch, top + swatch)
        if kind == "fill":
            mixed = tuple(int(255 * (1 - 2 * _TARGET_FILL) + c * 2 * _TARGET_FILL) for c in colour)
            draw.rectangle(box, fill=mixed, outline=colour, width=_LINE + 1)
        elif kind == "pale":
            draw.rectangle(box, fill=(225, 225, 225), outline=(170, 170, 170), width=1)
        else:
            draw.rectangle(box, fill="white", outline=colour, width=_LINE + 1)
        draw.text((x + swatch + 6, top - 1), label, fill=_TEXT, font=font)
    return image


def _stack(parts: list[Image.Image | np.ndarray]) -> Image.Image:
    images = [part if isinstance(part, Image.Image) else Image.fromarray(part) for part in parts]
    width = max(image.width for image in images)
    canvas = Image.new("RGB", (width, sum(image.height for image in images)), "white")
    top = 0
    for image in images:
        canvas.paste(image, (0, top))
        top += image.height
    return canvas


def draw_mask_grid(images: torch.Tensor, context_masks: Sequence[torch.Tensor] | None,
                   target_masks: Sequence | None, patch_size: int, path: str | os.PathLike,
                   max_images: int = 16, *, recipe: Any = None, title: str | None = None,
                   level_names: Sequence[str] | None = None) -> Path:
    """Write a PNG of the first ``max_images`` [16] views with their masks drawn on.

    Args:
        images: uint8 ``[B, 3, H, W]``, or float in [0, 1] (clipped); one channel is shown as grey.
        context_masks: list of LongTensors ``[B, K]`` of patch indices (row-major), or None.
            Outlined in ``CONTEXT_COLOUR``.
        target_masks: list of LongTensors ``[B, K]`` (multi-block: one colour per block,
            ``TARGET_COLOURS`` in order) or a list per level of such lists (hierarchical: one
            panel per level, blocks coloured in order within it), or None.
        patch_size: patch side in pixels; must divide H and W.
        path: where the PNG goes; parent folders are created. Written to a temporary file in
            the same folder and renamed, so readers never see half a picture.
        max_images: how many views to draw at most [16].
        recipe: the mask generator (or a line of text) named under the title [None: not named];
            a hierarchical generator also names the panels by its level names.
        title: what the views are, e.g. "first training batch" [None: "masked views"].
        level_names: panel names for hierarchical levels [None: the generator's, else 1, 2, ...].

    Views are enlarged by ``tile_upscale(H, W)`` and laid out in ``ceil(sqrt(n))`` columns with
    4 white pixels around each. Above them a title names the patch grid and the recipe; below
    them a legend names the context, each target block and the hidden patches. With both masks
    None the plain views are drawn under the title, without a legend. Returns the path written.
    """
    pixels = _as_uint8_hwc(images)
    if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size < 1:
        raise ConfigError(f"patch_size={patch_size!r} is not allowed: it must be an integer >= 1 (pixels).")
    if isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 1:
        raise ConfigError(f"max_images={max_images!r} is not allowed: it must be an integer >= 1.")
    batch, height, width, _ = pixels.shape
    if batch == 0:
        raise ConfigError("images with batch size 0 are not allowed: there is nothing to draw.")
    if height % patch_size or width % patch_size:
        raise ConfigError(f"patch_size={patch_size} is not allowed for {height} x {width} images: "
                         "it must divide both sides.")
    contexts = list(context_masks) if context_masks is not None else []
    levels = target_levels(target_masks)
    for mask in contexts + [m for level in levels for m in level]:
        if not isinstance(mask, torch.Tensor) or mask.dim() != 2 or mask.shape[0] < min(batch, max_images):
            raise ConfigError("masks must be LongTensors [B, K] with B at least the number of images drawn, "
                             f"got {getattr(mask, 'shape', type(mask).__name__)}.")
    masked = bool(contexts or levels)

    count = min(batch, max_images)
    up = tile_upscale(height, width)
    tiles = _Tiles(pixels, patch_size, up)
    font = _font(14 if up * max(height, width) >= 160 else 11)
    line_height = int(font.getbbox("Ag")[3]) + 6
    hierarchical = levels.hierarchical
    names = list(level_names or getattr(recipe, "level_names", None) or [str(k + 1) for k in range(len(levels))])

    panels: list[tuple[str | None, np.ndarray]] = []
    for k, blocks in enumerate(levels or [[]]):
        others = [m for j, level in enumerate(levels) if j != k for m in level]
        canvas = _grid_canvas([tiles.draw(i, contexts, blocks, others) for i in range(count)])
        heading = None
        if hierarchical:
            name = names[k] if k < len(names) else str(k + 1)
            heading = f"level {k + 1} of {len(levels)} ({name}): {len(blocks)} target blocks"
        panels.append((heading, canvas))

    canvas_width = max(canvas.shape[1] for _, canvas in panels)
    grid_rows, grid_cols = tiles.grid
    header = [f"{title or 'masked views'}: {grid_rows}x{grid_cols} patch grid "
              f"({height}x{width} px views, {patch_size} px patches{f', shown {up}x' if up > 1 else ''})"]
    if describe_recipe(recipe):
        header.append(describe_recipe(recipe))
    parts: list[Image.Image | np.ndarray] = [_text_block(header, canvas_width, font, line_height)]
    for heading, canvas in panels:
        if heading:
            parts.append(_text_block([heading], canvas_width, font, line_height))
        parts.append(canvas)
    if masked:
        entries: list[tuple[str, tuple[int, int, int], str]] = []
        if contexts:
            entries.append(("context: what the encoder sees", CONTEXT_COLOUR, "outline"))
        most = max((len(level) for level in levels), default=0)
        entries += [(f"target block {k + 1}", TARGET_COLOURS[k % len(TARGET_COLOURS)], "fill") for k in range(most)]
        entries.append(("paled: hidden from the model", HIDDEN_COLOUR, "pale"))
        parts.append(_legend(entries, canvas_width, font, line_height))
    picture = _stack(parts)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda handle: picture.save(handle, format="PNG"))
