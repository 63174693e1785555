"""``formats/imagenet/detect.py``'s ``check_nesting``: ImageNet's train folder unpacked one level too
deep (``train/<wnid>/<wnid>/*.JPEG``, as torchvision's own test fake and many hand unpackings have
it) is refused in one sentence that names the nesting and the fix, at prepare_data and at setup;
the fix it prints works."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from jepa_datamodules import ImageNetDataModule
from jepa_datamodules.formats.imagenet import ImageNetSetupError
from tests.helpers.fake_imagenet import make_imagenet_layout
from tests.helpers.fakes import catalog_override

WNIDS = ["n01440764", "n01443537", "n02102040"]
SMALL = dict(image_size=32, patch_size=4, batch_size=2, num_workers=0, progress=False)


@pytest.fixture
def nested(tmp_path, monkeypatch):
    folder = tmp_path / "data" / "imagenet"
    make_imagenet_layout(folder, WNIDS, train_per_class=2, val_per_class=1)
    for wnid in WNIDS:  # train/<wnid>/x.JPEG -> train/<wnid>/<wnid>/x.JPEG
        inner = folder / "train" / wnid / wnid
        inner.mkdir()
        for image in (folder / "train" / wnid).glob("*.JPEG"):
            shutil.move(str(image), inner / image.name)
    entry = {"splits": {"train": 6, "val": 3}, "num_classes": 3}
    monkeypatch.setenv("JEPA_CATALOG", str(catalog_override(tmp_path / "catalog.yaml", {"imagenet": entry})))
    return folder


def test_nested_train_folder_is_refused_naming_the_nesting_and_the_fix(nested):
    dm = ImageNetDataModule(data_dir=nested.parent, **SMALL)
    with pytest.raises(ImageNetSetupError, match="one level too deep") as error:
        dm.prepare_data()
    message = str(error.value)
    assert f"{nested / 'train'}/n01440764/" in message and "train/n01440764/n01440764/" in message
    assert "cannot be downloaded" not in message  # not the "ImageNet was not found" steps
    with pytest.raises(ImageNetSetupError, match="one level too deep"):
        ImageNetDataModule(data_dir=nested.parent, **SMALL).setup()  # no prepare_data: still not 0 images
    fix = re.search(r"e\.g\. `(.+?)`", message).group(1)
    subprocess.run(["bash", "-c", fix], check=True)
    dm = ImageNetDataModule(data_dir=nested.parent, **SMALL)
    dm.prepare_data()
    dm.setup()
    assert len(dm.datasets["train"]) == 6 and dm.classes == WNIDS
