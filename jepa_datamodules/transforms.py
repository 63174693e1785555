"""JEPA train / eval views, uint8 from disk to batch; normalization on the device.

Views stay uint8 in the loader workers (4x less to copy between processes and to the
GPU than float32); ``normalize`` turns a uint8 batch into normalized floats wherever it
runs, on the training device by default (``JEPADataModule.on_after_batch_transfer``).

Every random choice is drawn from a ``torch.Generator`` the caller passes in, seeded
per sample from (seed, epoch, rank, index): no hidden global RNG, so augmentations are
reproducible, differ across epochs, and are independent of the worker count.

The random-resized-crop follows the definition of torchvision's ``RandomResizedCrop``
(area fraction uniform in ``scale``, log-uniform aspect ratio in ``ratio``, ten tries,
then a centre crop), but crops at native resolution first and resizes only the crop,
once, in uint8. For JPEG files the decoder is asked for a reduced size (DCT scaling via
``PIL.Image.draft``) whenever the crop is large enough that the reduced image still
has at least the output resolution.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image

ImageLike = np.ndarray | Image.Image


def check_crop_scale(crop_scale: Sequence[float]) -> tuple[float, float]:
    low, high = (float(v) for v in crop_scale)
    if not (0 < low <= high <= 1):
        raise ValueError(f"crop_scale={tuple(crop_scale)} is invalid; allowed is (low, high) with 0 < low <= high <= 1.")
    return low, high


def sample_crop(height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float],
                generator: torch.Generator) -> tuple[int, int, int, int]:
    """(top, left, crop_height, crop_width) of a random-resized-crop window."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    draws = torch.rand(10, 2, generator=generator).tolist()
    for area_draw, ratio_draw in draws:
        target_area = area * (scale[0] + (scale[1] - scale[0]) * area_draw)
        aspect = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * ratio_draw)
        crop_w = int(round(math.sqrt(target_area * aspect)))
        crop_h = int(round(math.sqrt(target_area / aspect)))
        if 0 < crop_w <= width and 0 < crop_h <= height:
            top = int(torch.randint(0, height - crop_h + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - crop_w + 1, (1,), generator=generator))
            return top, left, crop_h, crop_w
    # Fallback: the largest centred window whose aspect lies within ``ratio``.
    in_ratio = width / height
    if in_ratio < ratio[0]:
        crop_w, crop_h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        crop_h, crop_w = height, int(round(height * ratio[1]))
    else:
        crop_w, crop_h = width, height
    return (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w


def _size_of(image: ImageLike) -> tuple[int, int]:
    if isinstance(image, np.ndarray):
        return image.shape[0], image.shape[1]
    return image.height, image.width


def _crop_to_tensor(image: ImageLike, top: int, left: int, crop_h: int, crop_w: int, out_size: int) -> torch.Tensor:
    """Crop (native resolution) then one uint8 resize: returns (3, out, out) uint8."""
    if isinstance(image, np.ndarray):
        # np.array copies: the source may be a read-only memmap shared by all workers.
        crop = torch.from_numpy(np.array(image[top:top + crop_h, left:left + crop_w])).permute(2, 0, 1)
    else:
        width, height = image.size
        if image.format == "JPEG" and min(crop_h, crop_w) >= 2 * out_size:
            # Ask for the smallest DCT-scaled size that keeps the crop >= out_size pixels.
            factor = min(crop_h, crop_w) / out_size
            image.draft("RGB", (math.ceil(width / factor), math.ceil(height / factor)))
        image = image.convert("RGB")
        sx, sy = image.width / width, image.height / height
        box = (round(left * sx), round(top * sy), round((left + crop_w) * sx), round((top + crop_h) * sy))
        crop = torch.from_numpy(np.array(image.crop(box))).permute(2, 0, 1)
    if crop.shape[1] == out_size and crop.shape[2] == out_size:
        return crop.contiguous()
    return TF.resize(crop, [out_size, out_size], antialias=True)


class TrainView:
    """Random-resized-crop to ``image_size``, optional flip and mild colour jitter.

    Defaults: ``crop_scale=(0.3, 1.0)`` (area fraction), ``crop_ratio=(3/4, 4/3)``,
    ``hflip=True``, ``color_jitter=0.0`` (off; a strength s draws brightness, contrast
    and saturation factors uniformly from [1 - s, 1 + s]).
    """

    def __init__(self, image_size: int, crop_scale: Sequence[float] = (0.3, 1.0),
                 crop_ratio: Sequence[float] = (3 / 4, 4 / 3), hflip: bool = True, color_jitter: float = 0.0):
        self.image_size = int(image_size)
        self.crop_scale = check_crop_scale(crop_scale)
        self.crop_ratio = (float(crop_ratio[0]), float(crop_ratio[1]))
        self.hflip = bool(hflip)
        if not 0 <= color_jitter < 1:
            raise ValueError(f"color_jitter={color_jitter} is invalid; allowed is 0 <= color_jitter < 1 (0 turns it off).")
        self.color_jitter = float(color_jitter)

    def __call__(self, image: ImageLike, generator: torch.Generator) -> torch.Tensor:
        height, width = _size_of(image)
        top, left, crop_h, crop_w = sample_crop(height, width, self.crop_scale, self.crop_ratio, generator)
        view = _crop_to_tensor(image, top, left, crop_h, crop_w, self.image_size)
        if self.hflip and bool(torch.rand((), generator=generator) < 0.5):
            view = view.flip(-1)
        if self.color_jitter > 0:
            s = self.color_jitter
            factors = (1 - s + 2 * s * torch.rand(3, generator=generator)).tolist()
            view = TF.adjust_brightness(view, factors[0])
            view = TF.adjust_contrast(view, factors[1])
            view = TF.adjust_saturation(view, factors[2])
        return view


class EvalView:
    """Resize the short side to ``image_size / crop_fraction`` then centre-crop ``image_size``.

    ``crop_fraction`` defaults to 0.875 (224 from 256). When the image is already square
    at ``image_size`` (CIFAR at 32, STL-10 at 96) it is passed through unchanged.
    """

    def __init__(self, image_size: int, crop_fraction: float = 0.875):
        if not 0 < crop_fraction <= 1:
            raise ValueError(f"crop_fraction={crop_fraction} is invalid; allowed is 0 < crop_fraction <= 1.")
        self.image_size = int(image_size)
        self.crop_fraction = float(crop_fraction)

    def __call__(self, image: ImageLike, generator: torch.Generator | None = None) -> torch.Tensor:
        height, width = _size_of(image)
        if height == width == self.image_size:
            return _crop_to_tensor(image, 0, 0, height, width, self.image_size)
        # The centre window that becomes the output after resizing the short side.
        short = min(height, width)
        side = max(1, round(short * self.crop_fraction)) if self.crop_fraction < 1 else short
        return _crop_to_tensor(image, (height - side) // 2, (width - side) // 2, side, side, self.image_size)


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 ``(B, 3, H, W)`` -> float32 ``(x / 255 - mean) / std`` on the tensor's device."""
    mean_t = torch.as_tensor(mean, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
    return (images.float().div_(255) - mean_t).div_(std_t)
