"""The official ImageNet archives in miniature (``archives``: five classes, 3 train and 2 val
images each), shared by the unpacking and devkit tests."""

from __future__ import annotations

import pytest

from tests.helpers.fake_imagenet import make_imagenet_archives


WNIDS = ["n01440764", "n01443537", "n01484850", "n02102040", "n03000134"]


@pytest.fixture
def archives(tmp_path):
    root = tmp_path / "imagenet"
    return root, make_imagenet_archives(root, WNIDS, train_per_class=3, val_per_class=2)
