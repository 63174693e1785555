"""``bench/standin_writers.py`` (the test fakes' and jepa-bench's stand-ins' one source of files)
keeps the properties an outside reader relies on: CIFAR batches are Python 2 protocol pickles,
read back exactly by ``formats/cifar.py``."""

from __future__ import annotations

import numpy as np

from jepa_datamodules.catalog import get_spec
from jepa_datamodules.formats.cifar import open_split as open_cifar
from tests.helpers.fake_formats import write_cifar


def test_cifar_batches_are_protocol_2_pickles_read_back_exactly(tmp_path):
    rng = np.random.default_rng(0)
    spec = get_spec("cifar100")
    images = {split: rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8) for split, n in (("train", 10), ("test", 4))}
    labels = {"train": np.arange(10) * 9, "test": np.array([0, 5, 50, 99])}
    root = write_cifar(spec, tmp_path, images, labels)
    for name in [*spec.options["train_files"], *spec.options["test_files"], spec.options["meta_file"]]:
        assert (root / name).read_bytes()[:2] == b"\x80\x02"  # what Python 2's cPickle wrote upstream
    test = open_cifar(spec, tmp_path, "test")
    np.testing.assert_array_equal(test.images, images["test"])
    np.testing.assert_array_equal(test.labels, labels["test"])
    np.testing.assert_array_equal(open_cifar(spec, tmp_path, "test", label_type="coarse").labels, labels["test"] // 5)
