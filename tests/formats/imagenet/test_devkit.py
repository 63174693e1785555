"""``formats/imagenet/devkit.py``'s ``parse_devkit``: only the leaf synsets of ``meta.mat`` become
classes, its class ids are ILSVRC2012's (not wnid order) and the validation ground truth maps
each val image to its class; the fake devkit keeps those properties (ids shuffled, inner nodes
present, never an image label)."""

from __future__ import annotations

import numpy as np
import pytest

from jepa_datamodules.formats.imagenet import parse_devkit
from tests.helpers.fake_imagenet import DEVKIT, write_imagenet_archives
from tests.helpers.fake_formats import pattern_jpeg


def test_parse_devkit_keeps_only_leaf_synsets(archives):
    root, info = archives
    id_to_wnid, truth = parse_devkit(root / DEVKIT)
    assert id_to_wnid == {i: w for w, i in info["ilsvrc_ids"].items()}
    assert [id_to_wnid[i] for i in truth] == list(info["val_assignment"].values())


def test_devkit_class_ids_are_shuffled_and_match_the_val_labels(tmp_path):
    wnids = [f"n0{i:07d}" for i in range(10, 30)]
    rng = np.random.default_rng(3)
    labels = {"train": wnids, "val": list(rng.permutation(wnids))}
    written = write_imagenet_archives(tmp_path, labels, lambda: pattern_jpeg(rng, (16, 16)), rng)
    id_to_wnid, truth = parse_devkit(tmp_path / "ILSVRC2012_devkit_t12.tar.gz")
    assert [id_to_wnid[i] for i in sorted(id_to_wnid)] != sorted(wnids)  # id order is not wnid order
    assert [id_to_wnid[i] for i in truth] == labels["val"]
    assert written["ilsvrc_ids"] == {wnid: i for i, wnid in id_to_wnid.items()}


def test_devkit_refuses_a_non_leaf_wnid_as_an_image_label(tmp_path):
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="non-leaf synsets"):
        write_imagenet_archives(tmp_path, {"train": ["n00001740"], "val": []}, lambda: b"", rng)
