"""Views built on the training device, a whole batch at a time (``views_on="device"``).

With ``views_on="device"`` the loader workers do almost nothing per image: they read the
native-resolution uint8 pixels (array datasets: CIFAR, STL-10, synthetic) or the encoded
file bytes (file datasets: ImageNet-style folders, LitData JPEG chunks), and draw each
sample's ``ViewParams`` from the same per-sample generator as the workers path
(``TrainView.draw`` / ``EvalView.draw``), so both paths choose the same crops, flips and
jitter factors. The batch then carries, besides labels, indices and masks:

  ``images``   uint8 ``(B, 3, H, W)``, native resolution (zero-padded to the largest
               image of the batch when sizes differ) -- array datasets; or
  ``encoded``  ``EncodedImages``: the batch's files in one uint8 buffer -- file datasets
  ``views``    dict of per-sample tensors: ``boxes`` (top, left, height, width),
               ``resize`` (height, width), ``offsets`` (top, left), ``flips``,
               ``jitter`` (brightness, contrast, saturation factors), ``jitter_order``

``DeviceViews`` (called from ``JEPADataModule.on_after_batch_transfer``) turns that into
the batch a model always sees: ``images`` float32 ``(B, 3, S, S)``, normalized. Steps:

1. decode (file datasets): ``torchvision.io.decode_jpeg`` on the list of files, with
   ``device="cuda"`` (nvJPEG, batched) on a GPU and on the CPU otherwise; a file that
   decoder refuses (a PNG in an ImageNet folder, a CMYK JPEG nvJPEG rejects) is decoded by
   Pillow on the CPU and counted in ``fallbacks``, never an error.
2. crop + resize + flip. Native pixels of one size (array datasets): the antialiased
   bilinear filter of torch's and Pillow's resize (triangle of radius max(1, scale),
   weights normalized over the window) written as two weight matrices per sample,
   ``rows (S x H)`` and ``cols (S x W)``; the view is ``rows @ image @ cols^T``, one batched
   matmul per axis for all samples at once. Weights are zero outside a sample's window, so
   nothing is cut out, and a flip is the column matrix reversed. Decoded files (sizes
   differ): each window goes through ``interpolate(..., antialias=True)`` on its own (the
   uint8 kernel on a CPU), then the batch is flipped at once. Eval views are the same
   operations: resize the whole image, keep the centre.
3. colour jitter: torchvision's brightness / contrast / saturation formulas for uint8
   images, each sample in its own order, before the resize when the window has fewer
   pixels than the view and after it otherwise -- where the workers path does it.
4. normalize with the dataset's mean and std.

The result equals the workers path's view up to uint8 rounding (the workers round after
the resize and after each jitter step, torch's uint8 resize uses fixed-point weights) and,
for JPEGs, the decoder (nvJPEG vs libjpeg-turbo; DCT-reduced decodes in the workers): the
tests hold the mean absolute difference to at most 2/255 of the pixel range.
"""

from __future__ import annotations

import io
import warnings
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..formats.base import FormatError
from ..notices import Notice
from .buffers import batch_buffer
from .transforms import ViewParams, _resize, normalize

# Grayscale weights of torchvision's rgb_to_grayscale (ITU-R 601-2 luma), used by its
# contrast and saturation adjustments.
_LUMA = (0.2989, 0.587, 0.114)


class EncodedImages:
    """A batch's encoded image files, ``data[offsets[i]:offsets[i + 1]]`` being item ``i``.

    One uint8 buffer instead of B small tensors: it crosses from a loader worker to the
    main process in one piece of shared memory and is pinned in one call. It has no ``to``
    method on purpose: Lightning then leaves it on the CPU, where ``decode_jpeg`` wants
    its input even when it decodes on the GPU.
    """

    def __init__(self, data: torch.Tensor, offsets: torch.Tensor):
        self.data = data
        self.offsets = offsets

    @classmethod
    def from_bytes(cls, items: Sequence[bytes], shared: bool = False) -> "EncodedImages":
        """One copy of ``items`` into a fresh buffer; ``shared``: in shared memory (inside a
        loader worker, so that the batch reaches the main process without another copy)."""
        bounds = np.zeros(len(items) + 1, dtype=np.int64)
        np.cumsum([len(item) for item in items], out=bounds[1:])
        total = int(bounds[-1])
        data = batch_buffer((total,), torch.uint8, shared)
        buffer = data.numpy()
        for start, end, item in zip(bounds[:-1], bounds[1:], items):
            buffer[start:end] = np.frombuffer(item, dtype=np.uint8)
        return cls(data, torch.from_numpy(bounds))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def items(self) -> list[torch.Tensor]:
        """Item ``i`` as a 1-D uint8 tensor (a view of the buffer)."""
        bounds = self.offsets.tolist()
        return [self.data[bounds[i]:bounds[i + 1]] for i in range(len(self))]

    def pin_memory(self) -> "EncodedImages":
        """Called by the DataLoader's pinning thread (``pin_memory=True``)."""
        return EncodedImages(self.data.pin_memory(), self.offsets)

    def is_pinned(self) -> bool:
        return self.data.is_pinned()


def view_params_tensors(params: Sequence[ViewParams]) -> dict[str, torch.Tensor]:
    """The ``views`` entry of a batch: one tensor per field of ``ViewParams``, B rows each."""
    return {
        "boxes": torch.tensor([p.box for p in params], dtype=torch.int64),
        "resize": torch.tensor([p.resize for p in params], dtype=torch.int64),
        "offsets": torch.tensor([p.offset for p in params], dtype=torch.int64),
        "flips": torch.tensor([p.flip for p in params], dtype=torch.bool),
        "jitter": torch.tensor([p.jitter for p in params], dtype=torch.float32),
        "jitter_order": torch.tensor([p.jitter_order for p in params], dtype=torch.int64),
    }


# ---------------------------------------------------------------------- decoding
def _decode_on_cpu(data: torch.Tensor) -> torch.Tensor:
    """Pillow's RGB decode of any format it reads (PNG, CMYK JPEG, ...): ``(3, H, W)`` uint8."""
    with Image.open(io.BytesIO(data.numpy().tobytes())) as image:
        pixels = np.asarray(image.convert("RGB"))
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1)


def _decode_jpegs(items: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    from torchvision.io import ImageReadMode, decode_jpeg

    with warnings.catch_warnings():
        # torchvision 0.29 announces that its decoders will move to TorchCodec; until then
        # decode_jpeg is the one nvJPEG entry point that needs nothing beyond torchvision.
        warnings.simplefilter("ignore", DeprecationWarning)
        return decode_jpeg(items, mode=ImageReadMode.RGB, device=device)


def decode_batch(encoded: EncodedImages, device: torch.device,
                 indices: Sequence[int] | None = None) -> tuple[list[torch.Tensor], int]:
    """Every file of ``encoded`` as ``(3, H, W)`` uint8 on ``device``, and how many fell back to Pillow.

    The whole list goes to ``decode_jpeg`` at once (nvJPEG decodes it batched on a GPU); if
    that raises, each file is tried alone and the ones the decoder refuses are decoded by
    Pillow on the CPU and moved to ``device``. A file neither can decode (damaged) raises a
    ``FormatError`` naming its dataset index (from ``indices``, else its batch position).
    """
    items = encoded.items()
    try:
        return list(_decode_jpegs(items, device)), 0
    except (RuntimeError, ValueError):
        pass
    images, fallbacks = [], 0
    for position, item in enumerate(items):
        try:
            images.append(_decode_jpegs([item], device)[0])
            continue
        except (RuntimeError, ValueError):
            pass
        try:
            images.append(_decode_on_cpu(item).to(device))
        except OSError as error:  # Pillow's UnidentifiedImageError and truncation errors
            where = f"dataset index {indices[position]}" if indices is not None else f"batch position {position}"
            raise FormatError(f"The image at {where} cannot be decoded ({error}); the file is damaged: "
                              "a full verification of the dataset names every such file.") from error
        fallbacks += 1
    return images, fallbacks


# -------------------------------------------------------------- crop and resize
def axis_weights(start: torch.Tensor, length: torch.Tensor, resized: torch.Tensor, offset: torch.Tensor,
                 out_size: int, extent: int) -> torch.Tensor:
    """``(B, out_size, extent)`` weights of the antialiased bilinear resize along one axis.

    Sample b's window covers positions ``start .. start + length - 1`` of an axis of
    ``extent`` pixels; it is resized to ``resized`` pixels, of which ``offset ..
    offset + out_size - 1`` are kept. The filter is that of torch's ``interpolate(...,
    antialias=True)`` and Pillow's bilinear resize: output pixel i centred at ``(i + 0.5)
    * scale`` in the window (``scale = length / resized``), a triangle of radius
    ``max(scale, 1)``, weights normalized over the window's pixels.
    """
    device = start.device
    start, length, resized, offset = (t.to(torch.float64)[:, None] for t in (start, length, resized, offset))
    scale = length / resized
    support = scale.clamp(min=1.0)
    centres = (torch.arange(out_size, device=device, dtype=torch.float64)[None, :] + offset + 0.5) * scale  # (B, S)
    positions = torch.arange(extent, device=device, dtype=torch.float64)[None, :] - start  # (B, E), window coords
    distance = (positions[:, None, :] + 0.5 - centres[:, :, None]) / support[:, :, None]
    weights = (1.0 - distance.abs()).clamp(min=0.0)
    inside = (positions >= 0) & (positions < length)
    weights = weights * inside[:, None, :]
    return (weights / weights.sum(-1, keepdim=True)).to(torch.float32)


def resample(images: torch.Tensor, views: dict[str, torch.Tensor], out_size: int) -> torch.Tensor:
    """Crop, resize and flip a float ``(B, C, H, W)`` batch into ``(B, C, out_size, out_size)``
    with one batched matmul per axis (``views["boxes"]`` in each image's pixels)."""
    boxes = views["boxes"]
    top, left = boxes[:, 0], boxes[:, 1]
    height, width = images.shape[-2:]
    rows = axis_weights(top, boxes[:, 2], views["resize"][:, 0], views["offsets"][:, 0], out_size, height)
    cols = axis_weights(left, boxes[:, 3], views["resize"][:, 1], views["offsets"][:, 1], out_size, width)
    cols = torch.where(views["flips"][:, None, None], cols.flip(1), cols)
    rows, cols = rows.unsqueeze(1), cols.unsqueeze(1).transpose(-1, -2)  # (B, 1, S, H), (B, 1, W, S)
    # Whichever order multiplies fewer numbers: shrink the larger axis first.
    if height * out_size * (width + out_size) <= width * out_size * (height + out_size):
        return torch.matmul(torch.matmul(rows, images), cols)
    return torch.matmul(rows, torch.matmul(images, cols))


# ------------------------------------------------------------------ colour jitter
def _grayscale(images: torch.Tensor) -> torch.Tensor:
    """torchvision's grayscale of a uint8 image (luma, floored), on integer-valued floats."""
    r, g, b = images.unbind(dim=1)
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(1).floor_()


def _blend(images: torch.Tensor, other: torch.Tensor | float, factor: torch.Tensor) -> torch.Tensor:
    # torchvision's _blend on uint8: clamp, then truncate back to integers.
    return (images * factor + other * (1.0 - factor)).clamp_(0.0, 255.0).floor_()


def color_jitter(images: torch.Tensor, factors: torch.Tensor, order: torch.Tensor,
                 window: torch.Tensor | None = None) -> torch.Tensor:
    """Brightness, contrast and saturation with per-sample ``factors`` (B, 3), applied in each
    sample's ``order`` (B, 3), on integer-valued floats in 0..255 with torchvision's uint8
    formulas (so the result equals the workers' uint8 jitter exactly).

    ``window`` (B, 1, H, W) marks each sample's pixels when only part of the tensor is
    its image (the contrast mean is taken there); None: all of it. At each of the three
    positions every step runs once for the whole batch, with factor 1 (no change) for the
    samples whose step at that position is another one: no indexing, no host-device sync.
    """
    for position in range(3):
        for step in range(3):
            factor = torch.where(order[:, position] == step, factors[:, step], 1.0).view(-1, 1, 1, 1)
            if step == 0:
                images = _blend(images, 0.0, factor)
            elif step == 1:
                gray = _grayscale(images)
                if window is None:
                    mean = gray.mean(dim=(1, 2, 3), keepdim=True)
                else:
                    mean = (gray * window).sum(dim=(1, 2, 3), keepdim=True) / window.sum(dim=(1, 2, 3), keepdim=True)
                images = _blend(images, mean, factor)
            else:
                images = _blend(images, _grayscale(images), factor)
    return images


def _window_mask(views: dict[str, torch.Tensor], height: int, width: int) -> torch.Tensor:
    """(B, 1, H, W): 1 inside each sample's window (its box), 0 elsewhere."""
    boxes = views["boxes"]
    top, left = boxes[:, 0:1], boxes[:, 1:2]
    rows = torch.arange(height, device=boxes.device)[None, :]
    cols = torch.arange(width, device=boxes.device)[None, :]
    inside_rows = (rows >= top) & (rows < top + boxes[:, 2:3])
    inside_cols = (cols >= left) & (cols < left + boxes[:, 3:4])
    return (inside_rows[:, :, None] & inside_cols[:, None, :]).unsqueeze(1).to(torch.float32)


# ------------------------------------------------------------------------ the stage
class DeviceViews:
    """Builds a batch's views where the batch is (see the module docstring).

    ``image_size``: output side; ``mean`` / ``std``: per-channel statistics in [0, 1]
    units; ``color_jitter``: whether any view jitters (the factors come with the batch).
    ``fallbacks`` counts the files decoded by Pillow because the device decoder refused them.
    """

    def __init__(self, image_size: int, mean: Sequence[float], std: Sequence[float], color_jitter: bool = False):
        self.image_size = int(image_size)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.color_jitter = bool(color_jitter)
        self.fallbacks = 0
        # Decoded files on a CPU: resize windows with the workers' uint8 kernel (faster there
        # than floats); False takes the float path a GPU takes (the tests compare both).
        self.uint8_on_cpu = True

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        views = batch.pop("views")
        device = views["boxes"].device
        size = self.image_size
        # Like the workers, jitter a window smaller than the view before resizing it (the
        # result differs from jittering after: clamping does not commute with the resize).
        early = (views["boxes"][:, 2] * views["boxes"][:, 3] < size * size)[:, None]
        encoded = batch.pop("encoded", None)
        if encoded is not None:
            decoded, fallbacks = decode_batch(encoded, device, batch["indices"].tolist())
            if fallbacks and not self.fallbacks:
                warnings.warn(Notice(f"{fallbacks} image(s) of a batch were decoded by Pillow on the CPU because "
                                     f"decode_jpeg on {device} refused them (not JPEG, or a JPEG kind it does not "
                                     "decode); training goes on, the count is in datamodule.device_views.fallbacks."),
                              stacklevel=2)
            self.fallbacks += fallbacks
            images = self._views_of_files(decoded, views)
        else:
            images = batch["images"].to(torch.float32)
            if self.color_jitter:
                window = _window_mask(views, *images.shape[-2:])
                images = color_jitter(images, torch.where(early, views["jitter"], 1.0), views["jitter_order"], window)
            images = resample(images, views, size)
        if self.color_jitter:
            # Rounded as the workers' uint8 resize is, so that late jitter sees the same integers.
            images = images.round_().clamp_(0.0, 255.0)
            images = color_jitter(images, torch.where(early, 1.0, views["jitter"]), views["jitter_order"])
        # (x / 255 - mean) / std in place: the views are a fresh float32 batch already.
        images = images.contiguous()
        batch["images"] = normalize(images, self.mean, self.std, out=images)
        return batch

    def _views_of_files(self, decoded: list[torch.Tensor], views: dict[str, torch.Tensor]) -> torch.Tensor:
        """Decoded images of different sizes: each window resized on its own (torch's
        antialiased bilinear ``interpolate``, the workers' filter), flipped as a batch."""
        size = self.image_size
        boxes, resize, offsets = (views[key].tolist() for key in ("boxes", "resize", "offsets"))
        out = torch.empty(len(decoded), 3, size, size, dtype=torch.float32, device=views["boxes"].device)
        for position, image in enumerate(decoded):
            (top, left, height, width), (new_h, new_w), (off_y, off_x) = boxes[position], resize[position], offsets[position]
            window = image[:, top:top + height, left:left + width]
            early_jitter = self.color_jitter and height * width < size * size
            if self.uint8_on_cpu and window.device.type == "cpu" and not early_jitter:
                # The workers' uint8 channels-last kernel: on a CPU about 3x faster than floats.
                resized = _resize(window, new_h, new_w).unsqueeze(0)
            else:
                window = window.unsqueeze(0).to(torch.float32)
                if early_jitter:
                    window = color_jitter(window, views["jitter"][position:position + 1],
                                          views["jitter_order"][position:position + 1])
                resized = F.interpolate(window, size=(new_h, new_w), mode="bilinear", antialias=True,
                                        align_corners=False)
            out[position] = resized[0, :, off_y:off_y + size, off_x:off_x + size]
        return torch.where(views["flips"].view(-1, 1, 1, 1), out.flip(-1), out)
