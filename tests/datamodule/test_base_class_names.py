"""``datamodule/base.py``: ``dm.classes`` and ``dm.class_to_idx``, as torchvision's datasets have them,
for every dataset, read from the dataset's own files (the fakes write them in the upstream layouts)."""

from __future__ import annotations

import pytest

from jepa_datamodules import (CIFAR10DataModule, CIFAR100DataModule, ImageFolderDataModule, ImageNetDataModule,
                              ImagenetteDataModule, STL10DataModule, SyntheticDataModule, TinyImageNetDataModule)
from jepa_datamodules.formats.hfparquet import imagenet1k_wnids
from tests.helpers.fake_imagenet import make_imagenet_layout
from tests.helpers.fake_ownimages import make_labelled_folder
from tests.helpers.fakes import IMAGENETTE_WNIDS, TINY_WNIDS, catalog_override

SMALL = dict(num_workers=0, progress=False, image_size=32, patch_size=4, batch_size=2)


def check(dm, expected: list[str]) -> None:
    assert dm.classes is None or dm.classes == expected  # before prepare_data: not on disk yet (or generated)
    dm.prepare_data()
    dm.setup()
    assert dm.classes == expected
    assert dm.class_to_idx == {name: i for i, name in enumerate(expected)}
    assert len(dm.classes) == dm.num_classes


@pytest.mark.parametrize("alias, options, expected", [
    (CIFAR10DataModule, {}, [f"fine-class-{i}" for i in range(10)]),  # the fakes' batches.meta label_names
    (CIFAR100DataModule, {}, [f"fine-class-{i}" for i in range(100)]),  # meta's fine_label_names
    (CIFAR100DataModule, {"label_type": "coarse"}, [f"coarse-class-{i}" for i in range(20)]),
], ids=["cifar10", "cifar100-fine", "cifar100-coarse"])
def test_cifar_classes_are_the_meta_batch_names(served, data_dir, alias, options, expected):
    server, _ = served
    check(alias(data_dir=data_dir, mirrors=[server.url], **SMALL, **options), expected)


def test_stl10_classes_are_class_names_txt(served, data_dir):
    server, _ = served
    check(STL10DataModule(data_dir=data_dir, mirrors=[server.url], **SMALL),
          ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"])


def test_imagenette_and_tinyimagenet_classes_are_their_wnids(served, data_dir):
    server, _ = served
    check(ImagenetteDataModule(data_dir=data_dir, mirrors=[server.url], **SMALL), sorted(IMAGENETTE_WNIDS))
    check(TinyImageNetDataModule(data_dir=data_dir, mirrors=[server.url], **SMALL), sorted(TINY_WNIDS))


def test_imagenet_classes_are_the_train_folders_wnids(tmp_path, monkeypatch):
    wnids = ["n01440764", "n01443537", "n02102040"]
    make_imagenet_layout(tmp_path / "data" / "imagenet", wnids, train_per_class=2, val_per_class=1)
    entry = {"splits": {"train": 6, "val": 3}, "num_classes": 3}
    monkeypatch.setenv("JEPA_CATALOG", str(catalog_override(tmp_path / "catalog.yaml", {"imagenet": entry})))
    check(ImageNetDataModule(data_dir=tmp_path / "data", **SMALL), wnids)


def test_imagenet_parquet_classes_are_the_release_wnids(release):
    data_dir, _ = release
    dm = ImageNetDataModule(data_dir=data_dir, source="parquet", **SMALL)
    dm.prepare_data()
    assert dm.classes == imagenet1k_wnids() and dm.class_to_idx["n01443537"] == 1


def test_own_folder_and_synthetic_classes(tmp_path):
    make_labelled_folder(tmp_path / "own")
    check(ImageFolderDataModule(root=tmp_path / "own", data_dir=tmp_path, **SMALL), ["cat", "dog"])
    check(SyntheticDataModule(data_dir=tmp_path, num_train=16, num_test=8, num_classes=3, **SMALL),
          ["disk", "square", "ring"])
