"""``formats/cifar.py``: CIFAR-100's class count follows the catalog's ``num_classes`` (a ``$JEPA_CATALOG`` override
too), and coarse labels asked of batches without them are one sentence, not a ``KeyError``."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import yaml

from jepa_datamodules import CIFAR100DataModule
from jepa_datamodules.catalog import get_spec
from jepa_datamodules.cli.terms import HydraTerms, console_text
from jepa_datamodules.formats.base import FormatError
from jepa_datamodules.formats.cifar import load_cifar_pickle
from tests.helpers.fake_formats import write_cifar


def test_num_classes_follows_a_catalog_override(tmp_path, monkeypatch):
    assert CIFAR100DataModule(data_dir=tmp_path).num_classes == 100
    assert CIFAR100DataModule(data_dir=tmp_path, label_type="coarse").num_classes == 20
    (tmp_path / "catalog.yaml").write_text(yaml.safe_dump({"cifar100": {"num_classes": 50}}))
    monkeypatch.setenv("JEPA_CATALOG", str(tmp_path / "catalog.yaml"))
    assert CIFAR100DataModule(data_dir=tmp_path).num_classes == 50
    assert CIFAR100DataModule(data_dir=tmp_path, label_type="coarse").num_classes == 20


def test_coarse_labels_missing_from_the_batches_is_one_sentence(tmp_path):
    spec = get_spec("cifar100")
    folder = tmp_path / "cifar100"
    rng = np.random.default_rng(0)
    images = {split: rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8) for split, n in (("train", 10), ("test", 5))}
    labels = {split: np.arange(len(images[split])) % 100 for split in images}
    root = write_cifar(spec, folder, images, labels)
    for name in ("train", "test"):  # a copy whose batches lost their coarse labels
        batch = load_cifar_pickle(root / name)
        del batch["coarse_labels"]
        (root / name).write_bytes(pickle.dumps(batch, protocol=2))
    fine = CIFAR100DataModule(data_dir=tmp_path).open_split("train")
    assert fine.labels.tolist() == labels["train"].tolist()
    with pytest.raises(FormatError, match=r"has no coarse_labels \(it has fine_labels\), which label_type='coarse' reads") as error:
        CIFAR100DataModule(data_dir=tmp_path, label_type="coarse").open_split("train")
    # The console names the same setting as the override a user types.
    assert "which data.label_type=coarse reads" in console_text(error.value, HydraTerms())
