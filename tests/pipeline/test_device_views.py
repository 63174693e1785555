"""``pipeline/device_views.py``: views_on="device": the workers send native pixels or encoded files
plus each sample's view parameters, and on_after_batch_transfer builds the views of the whole batch.
Run here on the CPU (the device path is the same code on CUDA, with nvJPEG decoding): the model gets
the views the workers path would have built, within 2/255 of the pixel range, from the same crop
boxes, with identical labels, indices and masks."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from jepa_datamodules import ImageFolderDataModule, ImageNetDataModule, MultiBlockMaskGenerator, SyntheticDataModule
from jepa_datamodules.pipeline.device_views import EncodedImages, axis_weights, decode_batch
from jepa_datamodules.formats.base import FormatError
from jepa_datamodules.notices import Notice
from jepa_datamodules.pipeline.sampling import seeded_generator
from tests.helpers.fake_imagenet import make_imagenet_layout
from tests.helpers.fake_ownimages import make_labelled_folder, write_hf_parquet
from tests.helpers.fakes import catalog_override

# Mean absolute difference allowed between the two paths' views, in 0..255 pixel units.
TOLERANCE = 2.0
WNIDS = ["n01440764", "n01443537", "n01484850"]


def _synthetic(data_dir, views_on: str, **kwargs) -> SyntheticDataModule:
    options = dict(data_dir=data_dir, num_train=48, num_test=16, image_size=32, patch_size=4, batch_size=8,
                   num_workers=0, mask=MultiBlockMaskGenerator(min_keep=4), progress=False, views_on=views_on)
    dm = SyntheticDataModule(**{**options, **kwargs})
    dm.prepare_data()
    dm.setup()
    return dm


@pytest.fixture(scope="module")
def imagenet_root(tmp_path_factory):
    """A tiny ImageNet layout of 200x150 and 90x120 JPEGs, plus one PNG named like a JPEG's neighbour."""
    root = tmp_path_factory.mktemp("data")
    make_imagenet_layout(root / "imagenet", WNIDS, train_per_class=4, val_per_class=2, size=(200, 150), seed=1)
    make_imagenet_layout(root / "imagenet", WNIDS[:1], train_per_class=7, val_per_class=0, size=(90, 120), seed=2)
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 256, (100, 130, 3), dtype=np.uint8)).save(root / "imagenet/train" / WNIDS[1] / "z.png")
    return root


def _imagenet(root, views_on: str, **kwargs) -> ImageNetDataModule:
    options = dict(data_dir=root, image_size=64, patch_size=8, batch_size=8, num_workers=0, progress=False,
                   views_on=views_on, mask=MultiBlockMaskGenerator(min_keep=4))
    dm = ImageNetDataModule(**{**options, **kwargs})
    dm.setup()  # the fake layout has no verification stamp; setup reads the folders as they are
    return dm


def _pixels(dm, batch) -> torch.Tensor:
    """The model's (normalized) images back in 0..255 units."""
    std = torch.tensor(dm.spec.std).view(1, 3, 1, 1)
    mean = torch.tensor(dm.spec.mean).view(1, 3, 1, 1)
    return (batch["images"] * std + mean) * 255


def _compare_loaders(workers_dm, device_dm, split: str) -> int:
    """Both DataModules' batches of ``split`` as the model gets them; returns how many batches."""
    loaders = [getattr(dm, f"{split}_dataloader")() for dm in (workers_dm, device_dm)]
    count = 0
    for on_workers, compact in zip(*loaders):
        assert "views" in compact and "views" not in on_workers
        on_workers = workers_dm.on_after_batch_transfer(on_workers, 0)
        on_device = device_dm.on_after_batch_transfer(compact, 0)
        assert on_device["images"].dtype == torch.float32 and on_device["images"].shape == on_workers["images"].shape
        assert on_device["images"].is_contiguous() and "views" not in on_device and "encoded" not in on_device
        difference = (_pixels(workers_dm, on_workers) - _pixels(device_dm, on_device)).abs()
        assert float(difference.mean()) <= TOLERANCE, f"batch {count}: mean abs difference {float(difference.mean()):.2f}"
        for key in ("labels", "indices"):
            assert torch.equal(on_workers[key], on_device[key])
        for a, b in zip(on_workers.get("context_masks", []) + on_workers.get("target_masks", []),
                        on_device.get("context_masks", []) + on_device.get("target_masks", [])):
            assert torch.equal(a, b)
        assert len(on_workers.get("target_masks", [])) == len(on_device.get("target_masks", []))
        count += 1
    return count


@pytest.mark.parametrize("image_size, color_jitter", [(32, 0.0), (64, 0.4), (16, 0.4)],
                         ids=["native-size", "upscaled-jitter", "downscaled-jitter"])
def test_device_views_of_arrays_equal_the_workers_views(tmp_path, image_size, color_jitter):
    kwargs = dict(image_size=image_size, patch_size=4, color_jitter=color_jitter)
    on_workers, on_device = _synthetic(tmp_path, "workers", **kwargs), _synthetic(tmp_path, "device", **kwargs)
    assert _compare_loaders(on_workers, on_device, "train") == 6
    assert _compare_loaders(on_workers, on_device, "val") == 2


def test_device_views_of_jpeg_files_equal_the_workers_views(imagenet_root):
    on_workers = _imagenet(imagenet_root, "workers", color_jitter=0.3)
    on_device = _imagenet(imagenet_root, "device", color_jitter=0.3, num_workers=1)  # files cross from a worker
    batch = next(iter(on_device.train_dataloader()))
    assert isinstance(batch["encoded"], EncodedImages) and "images" not in batch  # files, not pixels, left the workers
    with pytest.warns(Notice, match=r"1 image\(s\) of a batch were decoded by Pillow on the CPU"):
        assert _compare_loaders(on_workers, on_device, "train") == 2
    assert _compare_loaders(on_workers, on_device, "val") == 1
    assert on_device.device_views.fallbacks == 1  # the PNG, decoded by Pillow, once per epoch
    on_device.device_views.uint8_on_cpu = False  # the float resize a GPU runs
    assert _compare_loaders(on_workers, on_device, "val") == 1


def test_device_batches_carry_the_crop_boxes_the_workers_cropped(tmp_path):
    dm = _synthetic(tmp_path, "device", image_size=64, patch_size=8, hflip=False)
    batch = next(iter(dm.train_dataloader()))
    source, view = dm.datasets["train"].source, dm.train_view
    for index, box in zip(batch["indices"].tolist(), batch["views"]["boxes"].tolist()):
        # The workers path's view of this sample (same seed, epoch, rank, index) ...
        worker_view = view(source.load(index), seeded_generator(0, 1, 0, 0, index))
        # ... is exactly this box of the image, resized.
        top, left, height, width = box
        window = torch.from_numpy(np.array(source.load(index)[top:top + height, left:left + width])).permute(2, 0, 1)
        resized = F.interpolate(window[None].float(), size=(64, 64), mode="bilinear", antialias=True, align_corners=False)
        assert (resized[0] - worker_view.float()).abs().max() <= 1.0


def test_resize_weights_are_torchs_antialiased_bilinear_filter():
    rng = np.random.default_rng(0)
    image = torch.from_numpy(rng.uniform(0, 255, (1, 3, 40, 50)).astype(np.float32))
    for out_h, out_w in ((12, 17), (90, 75)):  # shrinking (antialiased) and enlarging
        rows = axis_weights(*(torch.tensor([v]) for v in (5, 30, out_h, 0)), out_h, 40)[0]
        cols = axis_weights(*(torch.tensor([v]) for v in (7, 41, out_w, 0)), out_w, 50)[0]
        ours = rows @ image[0] @ cols.T
        expected = F.interpolate(image[:, :, 5:35, 7:48], size=(out_h, out_w), mode="bilinear", antialias=True,
                                 align_corners=False)[0]
        torch.testing.assert_close(ours, expected, atol=1e-3, rtol=1e-4)


def test_auto_builds_views_on_cuda_and_normalizes_in_workers_on_a_cpu_trainer(tmp_path):
    dm = _synthetic(tmp_path, "auto")
    plain = next(iter(dm.train_dataloader()))  # no Trainer: a plain loop gets uint8 views
    assert plain["images"].dtype == torch.uint8 and "views" not in plain
    dm.trainer = SimpleNamespace(world_size=1, global_rank=0, training=False,
                                 strategy=SimpleNamespace(root_device=torch.device("cpu")))
    on_cpu = next(iter(dm.train_dataloader()))
    assert on_cpu["images"].dtype == torch.float32 and "views" not in on_cpu  # normalized in the workers
    torch.testing.assert_close(dm.on_after_batch_transfer(plain, 0)["images"], on_cpu["images"])
    dm.trainer.strategy.root_device = torch.device("cuda", 0)
    assert dm.views_placement() == ("device", False)
    on_cuda = next(iter(dm.train_dataloader()))  # (built on the CPU here: only the placement is decided)
    assert "views" in on_cuda and on_cuda["images"].shape == (8, 3, 32, 32) and on_cuda["images"].dtype == torch.uint8
    workers = _synthetic(tmp_path, "workers")
    workers.trainer = dm.trainer
    assert workers.views_placement() == ("workers", False)


def test_bad_views_on_says_what_is_allowed(tmp_path):
    with pytest.raises(ValueError, match=r"Unknown value 'gpu' for argument views_on. Valid values are \{workers, device, auto\}"):
        SyntheticDataModule(data_dir=tmp_path, views_on="gpu")


def test_a_file_the_decoder_refuses_falls_back_to_pillow_and_is_counted(imagenet_root):
    jpeg = (imagenet_root / "imagenet/train" / WNIDS[0]).glob("*.JPEG").__next__().read_bytes()
    png = (imagenet_root / "imagenet/train" / WNIDS[1] / "z.png").read_bytes()
    images, fallbacks = decode_batch(EncodedImages.from_bytes([jpeg, png]), torch.device("cpu"))
    assert fallbacks == 1 and [tuple(i.shape) for i in images] == [(3, 120, 90), (3, 100, 130)]
    png_pixels = np.array(Image.open(imagenet_root / "imagenet/train" / WNIDS[1] / "z.png").convert("RGB"))
    assert torch.equal(images[1], torch.from_numpy(png_pixels).permute(2, 0, 1))
    # A damaged file (neither decoder reads it) is named by its dataset index, not a bare decoder error.
    with pytest.raises(FormatError, match=r"The image at dataset index 17 cannot be decoded .* a full verification of the dataset names"):
        decode_batch(EncodedImages.from_bytes([jpeg, jpeg[:200]]), torch.device("cpu"), indices=[3, 17])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_files_decode_with_nvjpeg_and_views_match_the_workers(imagenet_root):
    on_workers, on_device = _imagenet(imagenet_root, "workers"), _imagenet(imagenet_root, "device")
    batch = next(iter(on_device.train_dataloader()))
    assert batch["encoded"].is_pinned() and batch["views"]["boxes"].is_pinned()
    cuda = {k: v.cuda() if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    cuda["views"] = {k: v.cuda() for k, v in batch["views"].items()}
    built = on_device.on_after_batch_transfer(cuda, 0)
    assert built["images"].device.type == "cuda"
    reference = on_workers.on_after_batch_transfer(next(iter(on_workers.train_dataloader())), 0)
    difference = (_pixels(on_workers, reference) - _pixels(on_device, {"images": built["images"].cpu()})).abs()
    assert float(difference.mean()) <= TOLERANCE


def test_a_loop_without_a_trainer_gets_the_models_batch_from_the_two_hooks(imagenet_root):
    dm = _imagenet(imagenet_root, "device")
    batch = next(iter(dm.val_dataloader()))
    moved = dm.transfer_batch_to_device(batch, torch.device("cpu"), 0)
    assert isinstance(moved["encoded"], EncodedImages)  # left where decode_jpeg reads it from
    built = dm.on_after_batch_transfer(moved, 0)
    assert built["images"].shape == (6, 3, 64, 64) and built["images"].dtype == torch.float32


def test_every_data_config_exposes_views_on(tmp_path):
    from hydra import compose, initialize_config_module
    from hydra.utils import instantiate

    names = ["synthetic", "cifar10", "cifar100", "stl10", "imagenet", "imagenet100", "imagenette", "tinyimagenet"]
    with initialize_config_module(config_module="jepa_datamodules.conf", version_base="1.3"):
        for name in names:
            cfg = compose("config", overrides=[f"data={name}", f"paths.data_dir={tmp_path}", "data.views_on=device"])
            assert instantiate(cfg.data).hparams.views_on == "device"
            assert compose("config", overrides=[f"data={name}"]).data.views_on == "auto"


def _own_data(views_on: str, **kwargs):
    options = dict(image_size=32, patch_size=4, batch_size=3, num_workers=0, progress=False, views_on=views_on,
                   mask=MultiBlockMaskGenerator(min_keep=4))
    cls = ImageFolderDataModule if "root" in kwargs else ImageNetDataModule
    if "root" in kwargs:  # the folder's index and stamp go under data_dir: beside the test's folder, not ./data
        kwargs.setdefault("data_dir", kwargs["root"].parent / "data")
    dm = cls(**{**options, **kwargs})
    dm.prepare_data()
    dm.setup()
    return dm


@pytest.mark.filterwarnings("ignore:Skipping")  # the folder's truncated JPEG is replaced by a same-class image
@pytest.mark.filterwarnings("ignore:.*decoded by Pillow")  # PNG, palette and CMYK files: CPU fallback, counted
def test_device_views_of_your_own_folder_equal_the_workers_views(tmp_path):
    make_labelled_folder(tmp_path / "mine")  # JPEG, PNG, CMYK, grey, palette, RGBA and one truncated JPEG
    workers = _own_data("workers", root=tmp_path / "mine", seed=5)
    device = _own_data("device", root=tmp_path / "mine", seed=5)
    first = next(iter(device.train_dataloader()))
    assert "encoded" in first  # the workers hand over the files' bytes, decoded on the device
    assert _compare_loaders(workers, device, "train") >= 3
    assert device.device_views.fallbacks > 0  # the non-JPEG files went through Pillow, not a crash


def test_device_views_of_the_parquet_release_equal_the_workers_views(tmp_path, monkeypatch):
    rows, shards = {"train": 24, "val": 6, "test": 3}, {"train": 2, "val": 1, "test": 1}
    write_hf_parquet(tmp_path / "data" / "imagenet", rows, shards,
                     {split: np.arange(rows[split]) % 3 for split in ("train", "val")})
    catalog = catalog_override(tmp_path / "catalog.yaml", {"imagenet": {"num_classes": 3, "options": {"parquet": {
        "repo": "ILSVRC/imagenet-1k", "prefixes": {"train": "train", "val": "validation", "test": "test"},
        "shards": shards, "splits": rows}}}})
    monkeypatch.setenv("JEPA_CATALOG", str(catalog))
    workers = _own_data("workers", data_dir=tmp_path / "data")
    device = _own_data("device", data_dir=tmp_path / "data")
    assert device.spec.reader == "hfparquet" and "encoded" in next(iter(device.train_dataloader()))
    assert _compare_loaders(workers, device, "train") >= 2
    assert _compare_loaders(workers, device, "val") >= 2
