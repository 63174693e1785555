"""A picture of masked views: context tinted blue, targets coloured, dropped patches dimmed."""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

__all__ = ["CONTEXT_COLOUR", "TARGET_COLOURS", "draw_mask_grid", "tile_upscale"]

CONTEXT_COLOUR = (30, 100, 255)
# Target colours, in block order (multi-block) or level order (hierarchical); none of them
# is blue so they never read as context. Repeats after ten.
TARGET_COLOURS = (
    (255, 140, 0), (230, 30, 60), (40, 190, 70), (200, 60, 220), (250, 220, 20),
    (0, 200, 200), (150, 90, 40), (255, 120, 180), (150, 200, 30), (255, 255, 255),
)
_CONTEXT_ALPHA = 0.35  # light tint: the encoder's input should stay recognisable
_TARGET_ALPHA = 0.6    # strong tint: targets are what the eye should find first
_DROPPED_GAIN = 0.3    # patches neither context nor target are hidden from the model
_GAP = 2               # white pixels between and around tiles


def tile_upscale(height: int, width: int) -> int:
    """Integer factor tiles are enlarged by: ``max(1, 128 // max(height, width))`` (pixels).

    Small images (e.g. 32 px CIFAR) are blown up so patches are visible; 96 px and larger
    are drawn at their own size.
    """
    return max(1, 128 // max(height, width))


def _as_uint8_hwc(images: torch.Tensor) -> np.ndarray:
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] not in (1, 3):
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images with shape {shape} are not allowed: pass a tensor [B, 3, H, W] (or [B, 1, H, W]).")
    images = images.detach().cpu()
    if images.dtype == torch.uint8:
        pixels = images
    elif images.is_floating_point():
        # Floats are taken as [0, 1] intensities; values outside are clipped, not rescaled.
        pixels = (images.float().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
    else:
        raise ValueError(f"images of dtype {images.dtype} are not allowed: use uint8 or float in [0, 1].")
    if pixels.shape[1] == 1:
        pixels = pixels.expand(-1, 3, -1, -1)
    return pixels.permute(0, 2, 3, 1).numpy()


def _target_groups(target_masks: Sequence | None) -> list[list[torch.Tensor]]:
    """Blocks grouped by colour: one group per block (multi-block) or per level (hierarchical)."""
    if target_masks is None:
        return []
    if isinstance(target_masks, torch.Tensor) or not isinstance(target_masks, Sequence):
        raise ValueError("target_masks must be a list of LongTensors [B, K] or a list of such lists (hierarchical), "
                         f"not {type(target_masks).__name__}.")
    groups = []
    for item in target_masks:
        groups.append([item] if isinstance(item, torch.Tensor) else list(item))
    return groups


def _patch_state(masks: list[torch.Tensor], sample: int, n_patches: int, name: str) -> np.ndarray:
    hit = np.zeros(n_patches, dtype=bool)
    for mask in masks:
        idx = mask[sample].detach().cpu().long().numpy()
        if idx.size and (idx.min() < 0 or idx.max() >= n_patches):
            raise ValueError(f"{name} hold patch index {int(idx.max() if idx.max() >= n_patches else idx.min())}, "
                             f"which is not allowed: indices must lie in [0, {n_patches}) for this image size "
                             "and patch_size.")
        hit[idx] = True
    return hit


def draw_mask_grid(images: torch.Tensor, context_masks: Sequence[torch.Tensor] | None,
                   target_masks: Sequence | None, patch_size: int, path: str | os.PathLike,
                   max_images: int = 16) -> Path:
    """Write a PNG grid of the first ``max_images`` [16] images with their masks drawn on.

    Args:
        images: uint8 ``[B, 3, H, W]``, or float in [0, 1] (clipped); one channel is shown as grey.
        context_masks: list of LongTensors ``[B, K]`` of patch indices (row-major), or None.
            Context patches get a light blue tint.
        target_masks: list of LongTensors ``[B, K]`` (one colour per block, ``TARGET_COLOURS``
            in order) or a list per level of such lists (one colour per level), or None.
            Target colours are drawn over the context tint where the two overlap.
        patch_size: patch side in pixels; must divide H and W.
        path: where the PNG goes; parent folders are created. Written to a temporary file in
            the same folder and renamed, so readers never see half a picture.
        max_images: how many images to draw at most [16].

    Patches that are neither context nor target (when masks are given) are dimmed: the model
    never sees them. With both masks None the plain views are drawn. Tiles are laid out in
    ``ceil(sqrt(n))`` columns, enlarged by ``tile_upscale(H, W)``, with 2 white pixels
    around each, so the PNG is ``cols * (W * up + 2) + 2`` pixels wide and
    ``rows * (H * up + 2) + 2`` high. Returns the path written.
    """
    pixels = _as_uint8_hwc(images)
    if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size < 1:
        raise ValueError(f"patch_size={patch_size!r} is not allowed: it must be an integer >= 1 (pixels).")
    if isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 1:
        raise ValueError(f"max_images={max_images!r} is not allowed: it must be an integer >= 1.")
    batch, height, width, _ = pixels.shape
    if batch == 0:
        raise ValueError("images with batch size 0 are not allowed: there is nothing to draw.")
    if height % patch_size or width % patch_size:
        raise ValueError(f"patch_size={patch_size} is not allowed for {height} x {width} images: "
                         "it must divide both sides.")
    grid_rows, grid_cols = height // patch_size, width // patch_size
    n_patches = grid_rows * grid_cols
    contexts = list(context_masks) if context_masks is not None else []
    groups = _target_groups(target_masks)
    for mask in contexts + [m for group in groups for m in group]:
        if not isinstance(mask, torch.Tensor) or mask.dim() != 2 or mask.shape[0] < min(batch, max_images):
            raise ValueError("masks must be LongTensors [B, K] with B at least the number of images drawn, "
                             f"got {getattr(mask, 'shape', type(mask).__name__)}.")
    masked = bool(contexts or groups)

    count = min(batch, max_images)
    up = tile_upscale(height, width)
    tile_h, tile_w = height * up, width * up
    n_cols = math.ceil(math.sqrt(count))
    n_rows = math.ceil(count / n_cols)
    canvas = np.full((n_rows * (tile_h + _GAP) + _GAP, n_cols * (tile_w + _GAP) + _GAP, 3), 255, dtype=np.uint8)

    for i in range(count):
        tile = pixels[i].astype(np.float32)
        if masked:
            # Grey underneath, so the mask colours cannot be mistaken for image colours.
            tile = np.repeat(tile @ np.array([[0.299], [0.587], [0.114]], dtype=np.float32), 3, axis=-1)
            # Per-patch colour and opacity, then blown up to pixels in one go.
            colour = np.zeros((n_patches, 3), dtype=np.float32)
            alpha = np.zeros(n_patches, dtype=np.float32)
            gain = np.ones(n_patches, dtype=np.float32)
            context = _patch_state(contexts, i, n_patches, "context_masks")
            colour[context] = CONTEXT_COLOUR
            alpha[context] = _CONTEXT_ALPHA
            seen = context.copy()
            for k, group in enumerate(groups):
                target = _patch_state(group, i, n_patches, "target_masks")
                colour[target] = TARGET_COLOURS[k % len(TARGET_COLOURS)]
                alpha[target] = _TARGET_ALPHA
                seen |= target
            gain[~seen] = _DROPPED_GAIN

            def to_pixels(values: np.ndarray) -> np.ndarray:
                per_patch = values.reshape(grid_rows, grid_cols, -1)
                return per_patch.repeat(patch_size, axis=0).repeat(patch_size, axis=1)

            a = to_pixels(alpha)
            tile = (tile * (1.0 - a) + to_pixels(colour) * a) * to_pixels(gain)
        tile = np.clip(tile + 0.5, 0, 255).astype(np.uint8)
        if up > 1:
            tile = tile.repeat(up, axis=0).repeat(up, axis=1)  # nearest neighbour keeps patch edges sharp
        r, c = divmod(i, n_cols)
        top, left = _GAP + r * (tile_h + _GAP), _GAP + c * (tile_w + _GAP)
        canvas[top:top + tile_h, left:left + tile_w] = tile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A unique name opened with "xb" (not mkstemp, whose 0600 mode would stick to the PNG).
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "xb") as handle:
            Image.fromarray(canvas).save(handle, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
