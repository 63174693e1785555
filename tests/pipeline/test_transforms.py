"""``pipeline/transforms.py``: the uint8 views against torchvision: same normalization, same crop
distribution, same eval crop, reduced-size JPEG decoding close to a full decode, and the fast
decoder giving Pillow's pixels."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
import torchvision.transforms as T
import torchvision.transforms.v2 as T2
from PIL import Image
from scipy import stats

from jepa_datamodules import SyntheticDataModule
from jepa_datamodules.pipeline import transforms as tf
from tests.helpers.fake_formats import photo_like, texture_bank
from jepa_datamodules.pipeline.transforms import EvalView, TrainView, decode_pixels, normalize, sample_crop

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(scope="module")
def photo_jpeg(tmp_path_factory):
    """Write photo-like JPEGs (1/f texture: the hard case for resampling) of a given size."""
    folder = tmp_path_factory.mktemp("jpegs")
    rng = np.random.default_rng(0)
    bank = texture_bank(rng, count=2, side=1300)

    def write(width: int, height: int, name: str = "photo") -> str:
        path = folder / f"{name}-{width}x{height}.jpg"
        if not path.exists():
            photo_like(rng, bank, width, height).save(path, quality=90)
        return str(path)

    return write


def _hwc(view: torch.Tensor) -> np.ndarray:
    return view.permute(1, 2, 0).numpy().astype(np.int16)


# ------------------------------------------------------------------ normalization
@pytest.mark.parametrize("device", DEVICES)
def test_device_normalization_equals_torchvision_on_the_same_views(device):
    rng = np.random.default_rng(1)
    view = TrainView(48)
    g = torch.Generator().manual_seed(0)
    views = [view(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8), g) for _ in range(6)]
    batch = torch.stack(views)
    # What the loader ships: channels-last uint8 views (the layout the resize works in).
    assert views[0].stride() == (1, 48 * 3, 3)
    reference = T2.Compose([T2.ToDtype(torch.float32, scale=True), T2.Normalize(MEAN, STD)])(batch.contiguous())
    ours = normalize(batch.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2).to(device), MEAN, STD)
    assert ours.dtype == torch.float32 and ours.device.type == device
    assert ours.is_contiguous()  # a model may .view() it
    torch.testing.assert_close(ours.cpu(), reference, atol=1e-5, rtol=1e-5)


def test_normalize_in_place_gives_the_same_floats_in_the_same_memory():
    # DeviceViews normalizes its fresh float views with out=images: no second batch-sized buffer.
    pixels = torch.randint(0, 256, (3, 3, 8, 8), generator=torch.Generator().manual_seed(0)).to(torch.float32)
    expected = normalize(pixels.to(torch.uint8), MEAN, STD)
    address = pixels.data_ptr()
    result = normalize(pixels, MEAN, STD, out=pixels)
    assert result.data_ptr() == address and torch.equal(result, expected)


def test_datamodule_batches_normalize_like_torchvision_after_transfer(tmp_path):
    dm = SyntheticDataModule(data_dir=tmp_path, num_train=32, num_test=16, image_size=32, patch_size=4,
                             batch_size=8, num_workers=0, progress=False)
    dm.prepare_data()
    batch = next(iter(dm.train_dataloader()))
    images = batch["images"].clone()
    assert images.dtype == torch.uint8
    reference = T2.Compose([T2.ToDtype(torch.float32, scale=True), T2.Normalize(dm.spec.mean, dm.spec.std)])(images)
    on_device = dm.on_after_batch_transfer(batch, 0)["images"]
    torch.testing.assert_close(on_device, reference, atol=1e-5, rtol=1e-5)


# -------------------------------------------------------------- crop distribution
def _torchvision_windows(height: int, width: int, draws: int, seed: int) -> np.ndarray:
    torch.manual_seed(seed)
    image = torch.empty(1, height, width)
    return np.array([T.RandomResizedCrop.get_params(image, [0.3, 1.0], [3 / 4, 4 / 3]) for _ in range(draws)])


def _our_windows(height: int, width: int, draws: int, seed: int) -> np.ndarray:
    g = torch.Generator().manual_seed(seed)
    return np.array([sample_crop(height, width, (0.3, 1.0), (3 / 4, 4 / 3), g) for _ in range(draws)])


@pytest.mark.parametrize("height, width", [(224, 224), (375, 500), (24, 320)])
def test_crop_windows_follow_torchvision_random_resized_crop(height, width):
    # 24x320 is so wide that most tries fail and the centre-crop fallback is common.
    draws = 4000
    ours = _our_windows(height, width, draws, seed=1)
    theirs = _torchvision_windows(height, width, draws, seed=2)
    for name, pick in {
        "area fraction": lambda w: w[:, 2] * w[:, 3] / (height * width),
        "log aspect": lambda w: np.log(w[:, 3] / w[:, 2]),
        "relative top": lambda w: w[:, 0] / np.maximum(height - w[:, 2], 1),
        "relative left": lambda w: w[:, 1] / np.maximum(width - w[:, 3], 1),
    }.items():
        result = stats.ks_2samp(pick(ours), pick(theirs))
        assert result.pvalue > 1e-3, f"{name} differs from torchvision's (KS p={result.pvalue:.2g})"
    assert ((ours[:, 0] + ours[:, 2] <= height) & (ours[:, 1] + ours[:, 3] <= width)).all()


def test_same_generator_state_gives_the_same_view_and_new_draws_differ():
    image = np.random.default_rng(2).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    view = TrainView(64, color_jitter=0.4)
    first = view(image, torch.Generator().manual_seed(7))
    again = view(image, torch.Generator().manual_seed(7))
    other = view(image, torch.Generator().manual_seed(8))
    assert torch.equal(first, again) and not torch.equal(first, other)


# ----------------------------------------------------------------------- eval view
@pytest.mark.parametrize("size", [(500, 375), (375, 500), (47, 33)])
@pytest.mark.parametrize("image_size", [224, 64])
def test_eval_view_matches_torchvision_resize_and_centre_crop(photo_jpeg, size, image_size):
    path = photo_jpeg(*size)
    reference = T.Compose([T.Resize(int(image_size / 0.875)), T.CenterCrop(image_size)])
    expected = np.asarray(reference(Image.open(path).convert("RGB"))).astype(np.int16)
    from_array = _hwc(EvalView(image_size)(np.asarray(Image.open(path).convert("RGB"))))
    # Same geometry, torch's uint8 kernel instead of Pillow's: off by at most one level.
    assert np.abs(from_array - expected).max() <= 1
    # From the file, large images are decoded at 1/2..1/8 size first: close, not equal.
    from_file = _hwc(EvalView(image_size)(Image.open(path)))
    assert np.abs(from_file - expected).mean() < 1.5


def test_eval_view_passes_native_size_through_untouched():
    image = np.random.default_rng(3).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    view = EvalView(32)(image)
    np.testing.assert_array_equal(_hwc(view), image)
    view.fill_(0)  # a batch may be modified in place; the dataset must not change with it
    assert image.any()


# ------------------------------------------------------------------------ decoding
def test_reduced_jpeg_decode_gives_a_view_close_to_full_decoding(photo_jpeg, monkeypatch):
    path = photo_jpeg(1200, 900)
    full = np.asarray(Image.open(path).convert("RGB"))
    view = TrainView(64, crop_scale=(0.5, 1.0))
    for decoder in ("simplejpeg", "pillow"):
        if decoder == "pillow":
            monkeypatch.setattr(tf, "simplejpeg", None)
        differences = []
        for seed in range(8):
            g = torch.Generator().manual_seed(seed)
            top, left, crop_h, crop_w = sample_crop(900, 1200, view.crop_scale, view.crop_ratio,
                                                    torch.Generator().manual_seed(seed))
            assert tf.decode_reduction(crop_h, crop_w, 64) >= 2  # the reduced path is what is tested
            reduced = view(Image.open(path), g)
            exact = view(full, torch.Generator().manual_seed(seed))  # same draws, full-resolution pixels
            differences.append(np.abs(_hwc(reduced) - _hwc(exact)).mean())
        # Measured ~0.6-1.3 grey levels on this heavily textured image (DCT scaling is a
        # slightly different low-pass than the bilinear kernel); a misplaced window is ~10.
        assert max(differences) < 2.0, (decoder, differences)


def test_fast_decoder_gives_pillows_pixels_and_pillow_handles_the_rest(tmp_path, photo_jpeg):
    path = photo_jpeg(500, 375)
    np.testing.assert_array_equal(decode_pixels(Image.open(path)), np.asarray(Image.open(path).convert("RGB")))
    rng = np.random.default_rng(4)
    cases = {
        "gray.jpg": Image.fromarray(rng.integers(0, 256, (30, 40), dtype=np.uint8), "L"),
        "cmyk.jpg": Image.fromarray(rng.integers(0, 256, (30, 40, 4), dtype=np.uint8), "CMYK"),
        "plain.png": Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)),
    }
    for name, image in cases.items():
        image.save(tmp_path / name)
        expected = np.asarray(Image.open(tmp_path / name).convert("RGB"))
        np.testing.assert_array_equal(decode_pixels(Image.open(tmp_path / name)), expected, err_msg=name)


def test_simplejpeg_decodes_files_and_buffers_and_pillow_takes_what_it_refuses(photo_jpeg, monkeypatch):
    real = pytest.importorskip("simplejpeg")
    calls = []

    class Recording:
        @staticmethod
        def decode_jpeg(data, *args, **kwargs):
            calls.append(len(data))
            return real.decode_jpeg(data, *args, **kwargs)

    monkeypatch.setattr(tf, "simplejpeg", Recording)
    path = photo_jpeg(500, 375)
    data = open(path, "rb").read()
    expected = np.asarray(Image.open(path).convert("RGB"))
    for image in (Image.open(path), Image.open(io.BytesIO(data))):  # a file, and a LitData-style buffer
        np.testing.assert_array_equal(decode_pixels(image), expected)
    assert calls == [len(data), len(data)]

    class Refusing:
        @staticmethod
        def decode_jpeg(data, *args, **kwargs):
            raise ValueError("refused")

    monkeypatch.setattr(tf, "simplejpeg", Refusing)
    np.testing.assert_array_equal(decode_pixels(Image.open(path)), expected)


def test_train_view_of_a_jpeg_matches_the_same_crop_of_its_pixels(photo_jpeg):
    # At 224 from ~500x375 nothing is reduced: file and array paths give identical views.
    path = photo_jpeg(500, 375)
    pixels = np.asarray(Image.open(path).convert("RGB"))
    view = TrainView(224)
    for seed in range(4):
        from_file = view(Image.open(path), torch.Generator().manual_seed(seed))
        from_array = view(pixels, torch.Generator().manual_seed(seed))
        assert torch.equal(from_file, from_array)


# --------------------------------------------------------------- outputs and errors
def test_views_are_channels_last_uint8_and_own_their_memory():
    image = np.random.default_rng(5).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    for view in (TrainView(64), EvalView(64), TrainView(30, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), hflip=False)):
        out = view(image, torch.Generator().manual_seed(0))
        assert out.shape == (3, view.image_size, view.image_size) and out.dtype == torch.uint8
        # Channels-last and compact: a batch slot takes it with one memcpy.
        assert out.stride() == (1, 3 * view.image_size, 3) and out.untyped_storage().nbytes() == out.numel()
        assert not np.shares_memory(out.numpy(), image)


def test_train_view_flip_happens_half_the_time_and_mirrors_the_image():
    # A full-image crop (scale 1, ratio 1) of a square image: the view is the image or its mirror.
    image = np.random.default_rng(6).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    view = TrainView(16, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0))
    outcomes = [_hwc(view(image, torch.Generator().manual_seed(seed))) for seed in range(200)]
    flipped = sum(np.array_equal(o, image[:, ::-1]) for o in outcomes)
    straight = sum(np.array_equal(o, image) for o in outcomes)
    assert flipped + straight == 200 and 70 < flipped < 130


@pytest.mark.parametrize("make, message", [
    (lambda: TrainView(32, crop_ratio=(1.5, 1.0)), r"crop_ratio=\(1.5, 1.0\) is invalid; allowed is \(low, high\)"),
    (lambda: TrainView(32, crop_scale=(0.0, 1.0)), r"crop_scale=\(0.0, 1.0\) is invalid"),
    (lambda: TrainView(32, color_jitter=1.2), r"color_jitter=1.2 is invalid; allowed is 0 <= color_jitter < 1"),
    (lambda: EvalView(32, crop_fraction=1.5), r"crop_fraction=1.5 is invalid; allowed is 0 < crop_fraction <= 1"),
])
def test_bad_view_settings_say_what_is_allowed(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_crop_fallback_is_the_largest_centred_window_within_the_ratio():
    # Every try fails for a 10x1000 strip; torchvision then takes the widest 4:3 centred window.
    expected = T.RandomResizedCrop.get_params(torch.empty(1, 10, 1000), [0.9, 1.0], [3 / 4, 4 / 3])
    ours = sample_crop(10, 1000, (0.9, 1.0), (3 / 4, 4 / 3), torch.Generator().manual_seed(0))
    assert ours == tuple(expected) == (0, (1000 - round(10 * 4 / 3)) // 2, 10, round(10 * 4 / 3))
    assert math.isclose(ours[3] / ours[2], 1.3, rel_tol=0.05)
