"""The formats' writers (the test fakes' and jepa-bench's stand-ins' one source of files) keep
the properties an outside reader relies on: CIFAR batches are Python 2 protocol pickles, the
devkit's class ids are not in wnid order, and packed archives are reproducible, hold their
folders and keep the member order asked for."""

from __future__ import annotations

import tarfile
import zipfile

import numpy as np
import pytest

from jepa_datamodules.catalog import get_spec
from jepa_datamodules.formats.cifar import open_split as open_cifar
from jepa_datamodules.formats.imagenet import parse_devkit
from tests.helpers.fake_formats import archive_members, pack_archive, pattern_jpeg, write_cifar
from tests.helpers.fake_imagenet import write_imagenet_archives


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


@pytest.mark.parametrize("name", ["a.tar.gz", "a.tgz", "a.tar", "a.zip"])
def test_packed_archives_are_reproducible_hold_folders_and_keep_the_order_asked(tmp_path, name):
    top = tmp_path / "src"
    for rel in ("top/b/2.txt", "top/a/1.txt", "top/c.txt"):
        (top / rel).parent.mkdir(parents=True, exist_ok=True)
        (top / rel).write_text(rel)
    members = archive_members(top)
    assert members == ["top/", "top/c.txt", "top/a/", "top/a/1.txt", "top/b/", "top/b/2.txt"]
    first = pack_archive(top, tmp_path / "one" / name).read_bytes()
    assert pack_archive(top, tmp_path / "two" / name).read_bytes() == first
    if name.endswith(("gz", "tgz")):
        assert first[4:8] == bytes(4)  # no time in the gzip header: tomorrow's run packs the same bytes
    reverse = pack_archive(top, tmp_path / "reverse" / name, order=members[::-1])
    if name.endswith(".zip"):
        with zipfile.ZipFile(reverse) as zf:
            assert zf.namelist() == members[::-1] and zf.read("top/a/1.txt") == b"top/a/1.txt"
    else:
        with tarfile.open(reverse) as tar:
            assert [m.name + ("/" if m.isdir() else "") for m in tar] == members[::-1]
            assert tar.extractfile("top/b/2.txt").read() == b"top/b/2.txt"
