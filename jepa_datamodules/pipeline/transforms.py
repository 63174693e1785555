"""JEPA train / eval views, uint8 from disk to batch; normalization on the device.

Views stay uint8 in the loader workers (4x less to copy between processes and to the
GPU than float32); ``normalize`` turns a uint8 batch into normalized floats wherever it
runs, on the training device by default (``JEPADataModule.on_after_batch_transfer``).

Every random choice is drawn from a ``torch.Generator`` the caller passes in, seeded
per sample from (seed, epoch, rank, index): no hidden global RNG, so augmentations are
reproducible, differ across epochs, and are independent of the worker count. A view
makes one ``torch.rand`` call per sample and reads every choice from it (one call
costs about as much as each of the four it replaces). ``TrainView.draw`` /
``EvalView.draw`` turn that into a ``ViewParams`` (window, resize, flip, jitter); the views
built here and those built on the device (``device_views.py``, ``views_on="device"``)
both follow it, so the two paths crop the same windows.

The random-resized-crop follows the definition of torchvision's ``RandomResizedCrop``
(area fraction uniform in ``scale``, log-uniform aspect ratio in ``ratio``, ten tries,
then a centre crop), but crops at native resolution first and resizes only the crop,
once, in uint8 (torch's antialiased bilinear kernel, which matches Pillow's to +-1).
Flip and colour jitter run at whichever of crop and output has fewer pixels (they
commute with the resize up to uint8 rounding), so a 32x32 CIFAR crop is flipped and
jittered before it becomes 224x224, not after.

JPEG files are decoded by simplejpeg (libjpeg-turbo; 15-30 % less time than Pillow's
decode of the same file here, and bit-identical to it) when it is installed, else by
Pillow. Either way the decoder is asked for a 1/2, 1/4 or 1/8 size image (DCT scaling)
whenever the crop keeps at least twice the output resolution at that size; the crop box
is then mapped into the reduced image exactly (fractional), not rounded to its pixels.

Views come out in channels-last layout: shape ``(3, H, W)``, strides ``(1, 3W, 3)``.
That is the layout torch's uint8 resize works in, and converting it to planar costs
more than the resize itself (about 0.17 ms per 224x224 view); ``normalize`` returns an
ordinary contiguous float tensor, so a model never sees the difference.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from PIL import Image
from ..errors import ConfigError

try:  # optional fast JPEG decoder; Pillow decodes when it is missing
    import simplejpeg
except ImportError:  # pragma: no cover - depends on the environment
    simplejpeg = None

ImageLike = np.ndarray | Image.Image

# torchvision's RandomResizedCrop.get_params tries ten windows before its centre-crop fallback.
CROP_TRIES = 10
# DCT scaling factors that speed decoding up; libjpeg-turbo's M/8 factors between 1/2 and
# 1 decode no faster than full size (measured: 7/8 takes longer than 8/8), so only these.
_DECODE_REDUCTIONS = (8, 4, 2)
# A DCT-scaled decode is a box filter; resizing from at least twice the output size keeps
# the result close to a full decode (Pillow's ``thumbnail`` uses the same reducing_gap=2).
REDUCING_GAP = 2.0
# Pillow reports ordinary JPEGs as "JPEG" and camera multi-picture files as "MPO"; both
# start with a baseline JPEG that libjpeg-turbo decodes.
_JPEG_FORMATS = ("JPEG", "MPO")

# Layout of the uniform draws a TrainView makes per sample (one torch.rand call): the
# crop takes the first 2 * CROP_TRIES + 2 (see crop_from_uniforms), then these.
_DRAW_FLIP = 2 * CROP_TRIES + 2
_DRAW_JITTER = slice(2 * CROP_TRIES + 3, 2 * CROP_TRIES + 6)  # brightness, contrast, saturation
_DRAW_JITTER_ORDER = slice(2 * CROP_TRIES + 6, 2 * CROP_TRIES + 9)
_DRAWS_PER_VIEW = 2 * CROP_TRIES + 9


def check_crop_scale(crop_scale: Sequence[float]) -> tuple[float, float]:
    low, high = (float(v) for v in crop_scale)
    if not (0 < low <= high <= 1):
        raise ConfigError(f"crop_scale={tuple(crop_scale)} is invalid; allowed is (low, high) with 0 < low <= high <= 1.",
                          setting="crop_scale", allowed="(low, high) with 0 < low <= high <= 1")
    return low, high


def check_crop_ratio(crop_ratio: Sequence[float]) -> tuple[float, float]:
    low, high = (float(v) for v in crop_ratio)
    if not (0 < low <= high):
        raise ConfigError(f"crop_ratio={tuple(crop_ratio)} is invalid; allowed is (low, high) with 0 < low <= high "
                         f"(width / height of the crop window).", setting="crop_ratio",
                          allowed="(low, high) with 0 < low <= high")
    return low, high


# ------------------------------------------------------------------ crop windows
def crop_from_uniforms(height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float],
                       uniforms: Sequence[float]) -> tuple[int, int, int, int]:
    """(top, left, crop_height, crop_width) of a random-resized-crop window, from 22 U(0, 1) draws.

    Same distribution as ``torchvision.transforms.RandomResizedCrop.get_params``: try
    ``CROP_TRIES`` windows with area fraction uniform in ``scale`` and aspect (width /
    height) log-uniform in ``ratio``; take the first that fits, at a uniform position;
    otherwise the largest centred window whose aspect lies within ``ratio``. Draws 0..19
    are the tries, 20 and 21 the position.
    """
    area = height * width
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    for attempt in range(CROP_TRIES):
        area_draw, ratio_draw = uniforms[2 * attempt], uniforms[2 * attempt + 1]
        target_area = area * (scale[0] + (scale[1] - scale[0]) * area_draw)
        aspect = math.exp(log_low + (log_high - log_low) * ratio_draw)
        crop_w = int(round(math.sqrt(target_area * aspect)))
        crop_h = int(round(math.sqrt(target_area / aspect)))
        if 0 < crop_w <= width and 0 < crop_h <= height:
            # floor(u * n) is uniform on 0..n-1, as torch.randint(0, n) is.
            top = min(int(uniforms[2 * CROP_TRIES] * (height - crop_h + 1)), height - crop_h)
            left = min(int(uniforms[2 * CROP_TRIES + 1] * (width - crop_w + 1)), width - crop_w)
            return top, left, crop_h, crop_w
    in_ratio = width / height
    if in_ratio < ratio[0]:
        crop_w, crop_h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        crop_h, crop_w = height, int(round(height * ratio[1]))
    else:
        crop_w, crop_h = width, height
    return (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w


def sample_crop(height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float],
                generator: torch.Generator) -> tuple[int, int, int, int]:
    """(top, left, crop_height, crop_width) of a random-resized-crop window (see ``crop_from_uniforms``)."""
    uniforms = torch.rand(2 * CROP_TRIES + 2, generator=generator, dtype=torch.float64).tolist()
    return crop_from_uniforms(height, width, scale, ratio, uniforms)


# ------------------------------------------------------------------------ decoding
def image_size_of(image: ImageLike) -> tuple[int, int]:
    """(height, width) of an HxWx3 array or a (possibly not yet decoded) PIL image."""
    if isinstance(image, np.ndarray):
        return image.shape[0], image.shape[1]
    return image.height, image.width


def decode_reduction(crop_h: int, crop_w: int, min_side: int) -> int:
    """Largest of 8, 4, 2 by which the window can shrink and keep ``REDUCING_GAP * min_side`` pixels; else 1."""
    short = min(crop_h, crop_w)
    for factor in _DECODE_REDUCTIONS:
        if short >= factor * REDUCING_GAP * min_side:
            return factor
    return 1


def _jpeg_bytes(image: Image.Image) -> bytes | None:
    """The JPEG's bytes when ``image`` is an undecoded JPEG read from a file or an in-memory
    buffer (LitData streams hand over ``BytesIO``s), else None."""
    if image.format not in _JPEG_FORMATS or image.mode not in ("RGB", "L"):
        return None  # CMYK / YCCK JPEGs need Pillow's colour conversion
    fp = getattr(image, "fp", None)
    if fp is None:  # already decoded: Pillow dropped the file
        return None
    if isinstance(fp, io.BytesIO):
        return fp.getvalue()
    if getattr(image, "filename", ""):  # opened from a path: the file is the image
        fp.seek(0)
        return fp.read()
    return None  # some other stream: where the image starts in it is unknown


def decode_pixels(image: ImageLike, reduction: int = 1) -> np.ndarray:
    """HxWx3 uint8 pixels of ``image``, decoded at about 1/``reduction`` size when that is cheaper.

    Arrays come back as they are. An undecoded JPEG is decoded by simplejpeg when it is
    installed, with DCT scaling by ``reduction`` (1, 2, 4 or 8; libjpeg rounds the reduced
    size up); Pillow decodes everything else, and any file simplejpeg refuses, applying
    the same DCT scaling to JPEGs through ``draft``. The result may be read-only.
    """
    if isinstance(image, np.ndarray):
        return image
    width, height = image.size
    data = _jpeg_bytes(image) if simplejpeg is not None else None
    if data is not None:
        try:
            if reduction > 1:
                pixels = simplejpeg.decode_jpeg(data, "RGB", min_height=height // reduction,
                                                min_width=width // reduction, min_factor=reduction)
            else:
                pixels = simplejpeg.decode_jpeg(data, "RGB")
        except ValueError:  # something libjpeg-turbo's strict mode refuses: Pillow tries below
            pass
        else:
            image.close()
            return pixels
    if reduction > 1 and image.format in _JPEG_FORMATS:
        # Pillow picks the largest of 1/2, 1/4, 1/8 whose size stays >= the request; the
        # request is floored so that a size that is not a multiple still gets the factor.
        image.draft("RGB", (width // reduction, height // reduction))
    return np.asarray(image.convert("RGB"))


Box = tuple[float, float, float, float]  # (left, top, right, bottom) in pixels, as Pillow's resize takes it


def _window(image: ImageLike, top: int, left: int, crop_h: int, crop_w: int,
            min_side: int) -> tuple[np.ndarray, Box | None]:
    """The window's pixels, or a reduced decode of the whole image plus the window's box in it.

    ``(pixels, None)``: HxWx3 uint8 pixels of exactly the window. ``(pixels, box)``: the
    image was decoded at 1/2, 1/4 or 1/8 size (the window keeps ``REDUCING_GAP * min_side``
    pixels there) and ``box`` is the window in those pixels -- fractional, so that the
    resize samples exactly the window a full decode would.
    """
    window = (slice(top, top + crop_h), slice(left, left + crop_w))
    if isinstance(image, np.ndarray):
        return image[window], None
    height, width = image_size_of(image)
    pixels = decode_pixels(image, decode_reduction(crop_h, crop_w, min_side))
    if pixels.shape[0] == height and pixels.shape[1] == width:
        return pixels[window], None
    # libjpeg scales by exactly 1/f and rounds the size up, so W / reduced W rounds to f
    # (for the sizes that get reduced at all: at least 2f pixels per output pixel).
    factor = round(width / pixels.shape[1])
    return pixels, (left / factor, top / factor, (left + crop_w) / factor, (top + crop_h) / factor)


def _resize_box(pixels: np.ndarray, box: Box, out_h: int, out_w: int) -> torch.Tensor:
    """Pillow's antialiased bilinear resize of a fractional box; channels-last ``(3, out_h, out_w)``."""
    resized = Image.fromarray(pixels).resize((out_w, out_h), Image.BILINEAR, box=box)
    return _as_chw(np.asarray(resized))


def _as_chw(pixels: np.ndarray) -> torch.Tensor:
    """A ``(3, H, W)`` uint8 tensor over HxWx3 pixels, dense channels-last, never over read-only memory."""
    if not (pixels.flags.writeable and pixels.flags.c_contiguous):
        # A window of a wider image is not dense, and torch's uint8 resize only stays in
        # channels-last (its fast layout) for dense input; memmaps and Pillow buffers are
        # read-only. Copying the window costs far less than either.
        pixels = np.array(pixels, order="C")
    return torch.from_numpy(pixels).permute(2, 0, 1)


def _resize(view: torch.Tensor, out_h: int, out_w: int) -> torch.Tensor:
    """Antialiased bilinear resize of a channels-last uint8 ``(3, H, W)`` view, output channels-last.

    Calls ``interpolate`` directly: torchvision's ``resize`` does the same with ~50 us of
    Python around it per call, as much as the kernel itself takes for a 224x224 output.
    """
    channels, height, width = view.shape
    if height == out_h and width == out_w:
        return view
    if view.stride() != (1, width * channels, channels):
        view = view.permute(1, 2, 0).contiguous().permute(2, 0, 1)
    # A 1xCxHxW tensor whose strides say channels-last unambiguously, so that torch
    # allocates the output channels-last too (pytorch/pytorch#68430; torchvision's
    # resize uses the same trick) and uses its uint8 channels-last kernel.
    batch = view.as_strided((1, channels, height, width), (channels * height * width, 1, width * channels, channels))
    return F.interpolate(batch, size=(out_h, out_w), mode="bilinear", antialias=True, align_corners=False)[0]


def _finish(view: torch.Tensor, base: torch.Tensor, image: ImageLike) -> torch.Tensor:
    """A compact channels-last view that never shares memory with the caller's array."""
    if isinstance(image, np.ndarray) and view.untyped_storage().data_ptr() == base.untyped_storage().data_ptr():
        # Neither resized nor flipped: still a window of the dataset's array. A plain
        # copy of the HxWx3 memory keeps the channels-last layout.
        return view.permute(1, 2, 0).clone().permute(2, 0, 1)
    # A window of a larger resized image (EvalView's centre crop) becomes a compact tensor;
    # for an already compact channels-last view this is a no-op.
    return view.permute(1, 2, 0).contiguous().permute(2, 0, 1)


# --------------------------------------------------------------- view parameters
@dataclass(frozen=True)
class ViewParams:
    """Every choice that makes one view, in the source image's pixels.

    The window ``box`` = (top, left, height, width) is resized to ``resize`` = (height,
    width) with the antialiased bilinear filter; the view is the ``image_size`` square at
    ``offset`` = (top, left) of that (a train view: the whole resized window; an eval view:
    its centre). Then a horizontal ``flip`` and the colour-jitter factors (brightness,
    contrast, saturation; 1 = unchanged) applied in ``jitter_order``.
    """

    box: tuple[int, int, int, int]
    resize: tuple[int, int]
    offset: tuple[int, int]
    flip: bool = False
    jitter: tuple[float, float, float] = (1.0, 1.0, 1.0)
    jitter_order: tuple[int, int, int] = (0, 1, 2)


def encoded_size(data: bytes) -> tuple[int, int]:
    """(height, width) of an encoded image from its header, without decoding the pixels."""
    if simplejpeg is not None and data[:2] == b"\xff\xd8":
        try:
            height, width, _, _ = simplejpeg.decode_jpeg_header(data)
            return height, width
        except ValueError:  # a JPEG libjpeg-turbo's strict header parser refuses: Pillow reads it
            pass
    with Image.open(io.BytesIO(data)) as image:
        return image.height, image.width


# ---------------------------------------------------------------------------- views
class TrainView:
    """Random-resized-crop to ``image_size``, optional flip and mild colour jitter.

    Defaults: ``crop_scale=(0.3, 1.0)`` (area fraction), ``crop_ratio=(3/4, 4/3)``
    (width / height), ``hflip=True`` (probability 0.5), ``color_jitter=0.0`` (off; a
    strength s draws brightness, contrast and saturation factors uniformly from
    [1 - s, 1 + s] and applies them in a random order, as torchvision's ColorJitter does).

    ``view(image, generator)`` returns a uint8 ``(3, image_size, image_size)`` tensor in
    channels-last layout that shares no memory with ``image``.
    """

    def __init__(self, image_size: int, crop_scale: Sequence[float] = (0.3, 1.0),
                 crop_ratio: Sequence[float] = (3 / 4, 4 / 3), hflip: bool = True, color_jitter: float = 0.0):
        self.image_size = int(image_size)
        self.crop_scale = check_crop_scale(crop_scale)
        self.crop_ratio = check_crop_ratio(crop_ratio)
        self.hflip = bool(hflip)
        if not 0 <= color_jitter < 1:
            raise ConfigError(f"color_jitter={color_jitter} is invalid; allowed is 0 <= color_jitter < 1 (0 turns it off).",
                              setting="color_jitter", allowed="0 <= color_jitter < 1")
        self.color_jitter = float(color_jitter)

    def draw(self, height: int, width: int, generator: torch.Generator) -> "ViewParams":
        """This sample's random choices for an image of ``height`` x ``width`` pixels.

        One ``torch.rand`` call per sample; the workers path (``__call__``) and the device
        path (``device_views.py``) both read their choices from here, so for the same
        generator state they crop the same window, flip alike and jitter alike.
        """
        draws = torch.rand(_DRAWS_PER_VIEW, generator=generator, dtype=torch.float64).tolist()
        top, left, crop_h, crop_w = crop_from_uniforms(height, width, self.crop_scale, self.crop_ratio, draws)
        jitter, order = (1.0, 1.0, 1.0), (0, 1, 2)
        if self.color_jitter > 0:
            s = self.color_jitter
            jitter = tuple(1 - s + 2 * s * u for u in draws[_DRAW_JITTER])
            # argsort of three uniforms: a uniformly random order of the three steps.
            order = tuple(sorted(range(3), key=draws[_DRAW_JITTER_ORDER].__getitem__))
        return ViewParams(box=(top, left, crop_h, crop_w), resize=(self.image_size, self.image_size), offset=(0, 0),
                          flip=self.hflip and draws[_DRAW_FLIP] < 0.5, jitter=jitter, jitter_order=order)

    def __call__(self, image: ImageLike, generator: torch.Generator) -> torch.Tensor:
        height, width = image_size_of(image)
        params = self.draw(height, width, generator)
        top, left, crop_h, crop_w = params.box
        size = self.image_size
        pixels, box = _window(image, top, left, crop_h, crop_w, size)
        if box is not None:  # decoded at reduced size: the window is still larger than the output
            base = _resize_box(pixels, box, size, size)
            return _finish(self._colour(base, params), base, image)
        base = view = _as_chw(pixels)
        # Pixel-wise steps run on the smaller of window and output.
        early = crop_h * crop_w < size * size
        if early:
            view = self._colour(view, params)
        view = _resize(view, size, size)
        if not early:
            view = self._colour(view, params)
        return _finish(view, base, image)

    def _colour(self, view: torch.Tensor, params: "ViewParams") -> torch.Tensor:
        if params.flip:
            view = view.flip(-1)
        if self.color_jitter > 0:
            steps = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation)
            for k in params.jitter_order:
                view = steps[k](view, params.jitter[k])
        return view


class EvalView:
    """torchvision's eval transform: ``Resize(int(image_size / crop_fraction))`` of the short
    side, then ``CenterCrop(image_size)``, in uint8.

    ``crop_fraction`` defaults to 0.875 (224 from 256). When the image is already square at
    ``image_size`` (CIFAR at 32, STL-10 at 96) it is passed through unchanged (copied).
    JPEGs are decoded at 1/2, 1/4 or 1/8 size when the short side keeps at least twice the
    resize target. Output layout as for ``TrainView``.
    """

    def __init__(self, image_size: int, crop_fraction: float = 0.875):
        if not 0 < crop_fraction <= 1:
            raise ConfigError(f"crop_fraction={crop_fraction} is invalid; allowed is 0 < crop_fraction <= 1.",
                              setting="crop_fraction", allowed="0 < crop_fraction <= 1")
        self.image_size = int(image_size)
        self.crop_fraction = float(crop_fraction)
        self.resize_to = int(self.image_size / self.crop_fraction)

    def draw(self, height: int, width: int, generator: torch.Generator | None = None) -> "ViewParams":
        """The whole image, resized (short side ``resize_to``) and centre-cropped; nothing random."""
        size = self.image_size
        if height == width == size:
            return ViewParams(box=(0, 0, height, width), resize=(height, width), offset=(0, 0))
        # torchvision's Resize(int): the short side becomes resize_to, the long side is truncated.
        if height <= width:
            new_h, new_w = self.resize_to, int(self.resize_to * width / height)
        else:
            new_h, new_w = int(self.resize_to * height / width), self.resize_to
        # torchvision's CenterCrop rounds the offsets half to even.
        top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))
        return ViewParams(box=(0, 0, height, width), resize=(new_h, new_w), offset=(top, left))

    def __call__(self, image: ImageLike, generator: torch.Generator | None = None) -> torch.Tensor:
        height, width = image_size_of(image)
        size = self.image_size
        params = self.draw(height, width)
        if params.resize == (height, width):
            base = _as_chw(_window(image, 0, 0, height, width, size)[0])
            return _finish(base, base, image)
        (new_h, new_w), (top, left) = params.resize, params.offset
        pixels, box = _window(image, 0, 0, height, width, self.resize_to)
        if box is not None:
            # Reduced decode: resize just the crop's box (the same samples and filter
            # footprint as resizing the whole image and then cropping).
            sx, sy = box[2] / new_w, box[3] / new_h
            crop_box = (left * sx, top * sy, (left + size) * sx, (top + size) * sy)
            base = _resize_box(pixels, crop_box, size, size)
            return _finish(base, base, image)
        base = _as_chw(pixels)
        view = _resize(base, new_h, new_w)
        return _finish(view[:, top:top + size, left:left + size], base, image)


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float],
              out: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 ``(B, 3, H, W)`` (or ``(3, H, W)``), any strides -> contiguous float32 ``(x / 255 - mean) / std``.

    Runs on the tensor's device; ``mean`` and ``std`` are per channel, in [0, 1] units.
    ``out``: a contiguous float32 tensor of ``images``' shape to write the result into [None:
    a new one]; ``out=images`` normalizes a contiguous float32 batch (pixel values 0..255) in
    place, with no second buffer.
    """
    mean_t = torch.as_tensor(mean, dtype=torch.float32, device=images.device).view(-1, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float32, device=images.device).view(-1, 1, 1)
    if out is None:
        out = torch.empty(images.shape, dtype=torch.float32, device=images.device)
    if out is not images:
        out.copy_(images)  # converts dtype and, for channels-last input, the layout in one pass
    # (x / 255 - mean) / std == x * (1 / (255 std)) + (-mean / std): one fused pass.
    return torch.addcmul(-mean_t / std_t, out, 1.0 / (255.0 * std_t), out=out)
