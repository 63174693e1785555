"""``formats/ownfolder.py``: the label each image of your own folder gets, checked image by image: torchvision's
case-sensitive class order, validation labels as the training split's ids (a val folder that
lacks a class shifts nothing), -1 everywhere with ``labels="none"``, and a broken image's
stand-in being the *next* image of its class, not the first."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from jepa_datamodules import ImageFolderDataModule
from jepa_datamodules.pipeline.transforms import decode_pixels

SMALL = dict(image_size=32, patch_size=4, batch_size=2, num_workers=0, progress=False)


def _write(root: Path, relative: str, value: int) -> None:
    """A flat-coloured PNG whose red channel is ``value``: which file was read shows in its pixels."""
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), (value, 0, 0), dtype=np.uint8)).save(path)


def _labels(source) -> dict[str, int]:
    return dict(zip(source.paths, source.labels.tolist()))


def test_class_order_is_case_sensitive_like_torchvision(tmp_path):
    # torchvision's ImageFolder: sorted(entry.name ...), so upper case comes before lower case.
    for index, name in enumerate(["apple", "Banana", "cherry", "Date"]):
        _write(tmp_path / "fruit" / "train", f"{name}/0.png", index)
    dm = ImageFolderDataModule(root=tmp_path / "fruit", **SMALL)
    assert dm.classes == ["Banana", "Date", "apple", "cherry"]
    assert _labels(dm.open_split("train")) == {"Banana/0.png": 0, "Date/0.png": 1, "apple/0.png": 2, "cherry/0.png": 3}


def test_validation_labels_are_the_training_ids_when_val_lacks_a_class(tmp_path):
    root = tmp_path / "birds"
    for name in ("crow", "finch", "gull"):
        _write(root / "train", f"{name}/0.png", 0)
    _write(root / "val", "crow/v.png", 0)
    _write(root / "val", "gull/v.png", 0)  # no finch in val: gull must stay 2, not become 1
    dm = ImageFolderDataModule(root=root, **SMALL)
    assert dm.classes == ["crow", "finch", "gull"]
    assert _labels(dm.open_split("val")) == {"crow/v.png": 0, "gull/v.png": 2}


def test_labels_none_gives_minus_one_in_the_val_folder_too(tmp_path):
    root = tmp_path / "birds"
    for name in ("crow", "gull"):
        _write(root / "train", f"{name}/0.png", 0)
        _write(root / "val", f"{name}/v.png", 0)
    dm = ImageFolderDataModule(root=root, labels="none", **SMALL)
    assert dm.num_classes == 0
    assert _labels(dm.open_split("train")) == {"crow/0.png": -1, "gull/0.png": -1}
    assert _labels(dm.open_split("val")) == {"crow/v.png": -1, "gull/v.png": -1}
    dm.setup()
    assert set(dm.datasets["val"].source.labels.tolist()) == {-1}


def test_a_broken_image_is_replaced_by_the_next_image_of_its_class(tmp_path):
    root = tmp_path / "mine"
    for number in range(4):
        _write(root / "train", f"cat/{number}.png", 10 + number)
        _write(root / "train", f"dog/{number}.png", 100 + number)
    (root / "train" / "cat" / "1.png").write_bytes(b"not an image at all")
    (root / "train" / "dog" / "3.png").write_bytes(b"\x89PNG cut off")  # the last of its class: wraps round
    train = ImageFolderDataModule(root=root, **SMALL).open_split("train")

    def red(path: str) -> int:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return int(decode_pixels(train.load(train.paths.index(path)))[0, 0, 0])

    assert red("cat/1.png") == 12  # cat/2.png, not cat/0.png
    assert red("dog/3.png") == 100  # dog/0.png, cyclically
    assert train.load_encoded(train.paths.index("cat/1.png")) == (root / "train" / "cat" / "2.png").read_bytes()
    assert red("cat/0.png") == 10  # an intact image is itself
