"""``pipeline/device_views.py``: the device path's colour jitter is the workers' colour jitter:
torchvision's uint8 brightness / contrast / saturation in each sample's own order, and, as in the
workers, before the resize only when the crop window has fewer pixels than the view (not when it has
as many)."""

from __future__ import annotations

import io
import itertools

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image

from jepa_datamodules.pipeline.device_views import DeviceViews, EncodedImages, color_jitter, view_params_tensors
from jepa_datamodules.notices import Notice
from jepa_datamodules.pipeline.transforms import TrainView, ViewParams

FACTORS = (1.7, 0.35, 1.9)  # brightness, contrast, saturation: strong, so every order differs
STEPS = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation)


def _noise(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))), ids=str)
def test_jitter_applies_the_steps_in_the_samples_order_exactly_as_torchvision(order):
    image = torch.from_numpy(_noise(12, 10)).permute(2, 0, 1).contiguous()
    expected = image
    for step in order:
        expected = STEPS[step](expected, FACTORS[step])
    got = color_jitter(image[None].float(), torch.tensor([FACTORS]), torch.tensor([order]))
    assert torch.equal(got[0], expected.float())


def _workers_view(image: np.ndarray, params: ViewParams, size: int) -> torch.Tensor:
    view = TrainView(size, color_jitter=0.5)
    view.draw = lambda height, width, generator: params  # this sample's choices, fixed
    return view(image, torch.Generator()).float()


def _device_view(batch: dict, size: int) -> torch.Tensor:
    out = DeviceViews(size, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), color_jitter=True)(batch)
    return out["images"][0] * 255.0


# A window of 8 x 32 = 256 pixels for a 16 x 16 view: as many pixels, so the jitter comes after
# the resize; 8 x 30 has fewer, so it comes before. Clamping does not commute with the resize,
# so the wrong choice shows in every pixel of this noise.
@pytest.mark.parametrize("box", [(3, 2, 8, 32), (3, 2, 8, 30), (0, 0, 20, 20)], ids=["as-many", "fewer", "more"])
def test_device_jitter_is_before_the_resize_exactly_when_the_workers_is(box):
    size, image = 16, _noise(40, 40, seed=1)
    params = ViewParams(box=box, resize=(size, size), offset=(0, 0), jitter=FACTORS, jitter_order=(2, 0, 1))
    workers = _workers_view(image, params, size)
    arrays = {"images": torch.from_numpy(image).permute(2, 0, 1)[None].contiguous(),
              "views": view_params_tensors([params])}
    assert (_device_view(arrays, size) - workers).abs().mean() <= 1.0
    png = io.BytesIO()
    Image.fromarray(image).save(png, format="PNG")
    files = {"encoded": EncodedImages.from_bytes([png.getvalue()]), "indices": torch.tensor([0]),
             "views": view_params_tensors([params])}
    with pytest.warns(Notice, match="decoded by Pillow"):  # a PNG: the device decoder refuses it
        assert (_device_view(files, size) - workers).abs().mean() <= 1.0
