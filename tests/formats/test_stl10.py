"""``formats/stl10.py``: STL-10 from its upstream binary archive: splits, orientation, folds, the unlabeled union,
and loader memory that does not grow with the split size."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import numpy as np
import pytest

from jepa_datamodules import STL10DataModule

SMALL = dict(image_size=32, patch_size=4, batch_size=4, num_workers=0, progress=False)


def test_every_split_reads_back_exactly(served, data_dir):
    server, fakes = served
    fake = fakes["stl10"]
    dm = STL10DataModule(data_dir=data_dir, mirrors=[server.url], **SMALL)
    dm.prepare_data()
    for split in ("train", "test", "unlabeled"):
        source = dm.open_split(split)
        assert len(source) == len(fake.labels[split])
        # Orientation: the binary is column-major, so a wrong transpose fails here.
        for index in (0, len(source) - 1):
            np.testing.assert_array_equal(source.load(index), fake.splits[split][index])
        np.testing.assert_array_equal(source.labels, fake.labels[split])
    union = dm.open_split("train+unlabeled")
    assert len(union) == 50
    np.testing.assert_array_equal(union.labels[:20], fake.labels["train"])
    assert (union.labels[20:] == -1).all()
    np.testing.assert_array_equal(union.load(20), fake.splits["unlabeled"][0])


def test_pretraining_defaults_to_the_union_and_folds_select_indices(served, data_dir):
    server, fakes = served
    fake = fakes["stl10"]
    dm = STL10DataModule(data_dir=data_dir, mirrors=[server.url], **SMALL)
    dm.prepare_data()
    dm.setup()
    assert len(dm.datasets["train"]) == 50 and len(dm.datasets["val"]) == 10
    folded = STL10DataModule(data_dir=data_dir, train_split="train", fold=3, **SMALL)
    source = folded.open_split("train")
    np.testing.assert_array_equal(source.indices, fake.folds[3])
    np.testing.assert_array_equal(source.labels, fake.labels["train"][fake.folds[3]])
    np.testing.assert_array_equal(source.load(1), fake.splits["train"][fake.folds[3][1]])


def test_bad_split_and_fold(tmp_path):
    with pytest.raises(ValueError, match="Valid values are {train, unlabeled, train\\+unlabeled}"):
        STL10DataModule(data_dir=tmp_path, train_split="everything", **SMALL)
    with pytest.raises(ValueError, match="fold=10 is invalid; allowed is None or 0..9"):
        STL10DataModule(data_dir=tmp_path, fold=10, **SMALL)


def _write_layout(folder: Path, unlabeled: int) -> None:
    root = folder / "stl10" / "stl10_binary" / "stl10_binary"
    root.mkdir(parents=True)
    image = 3 * 96 * 96
    (root / "train_X.bin").write_bytes(np.zeros(10 * image, np.uint8).tobytes())
    (root / "train_y.bin").write_bytes(np.arange(1, 11, dtype=np.uint8).tobytes())
    (root / "test_X.bin").write_bytes(np.zeros(10 * image, np.uint8).tobytes())
    (root / "test_y.bin").write_bytes(np.arange(1, 11, dtype=np.uint8).tobytes())
    with open(root / "unlabeled_X.bin", "wb") as handle:
        chunk = np.random.default_rng(0).integers(0, 256, 500 * image, dtype=np.uint8).tobytes()
        for _ in range(unlabeled // 500):
            handle.write(chunk)
    (root / "fold_indices.txt").write_text("0 1\n" * 10)


def _children_anon_rss_kb() -> int:
    """Anonymous resident memory of this process's children (the loader workers).

    A split copied into a worker is anonymous memory; pages of the file itself are page
    cache shared by every process, so they are not counted here."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if int(fields.get("PPid", "0").strip()) == os.getpid():
            total += int(fields.get("RssAnon", "0 kB").split()[0])
    return total


@pytest.mark.slow
def test_loader_memory_does_not_grow_with_the_unlabeled_split(tmp_path):
    peaks = {}
    for unlabeled in (1000, 8000):  # 28 MB vs 221 MB of pixels
        _write_layout(tmp_path / str(unlabeled), unlabeled)
        dm = STL10DataModule(data_dir=tmp_path / str(unlabeled), train_split="unlabeled", image_size=32, patch_size=4,
                             batch_size=16, num_workers=2, persistent_workers=True, progress=False)
        dm.setup()
        iterator = iter(dm.train_dataloader())
        for _ in range(8):
            next(iterator)
        peaks[unlabeled] = _children_anon_rss_kb()
        del iterator
    assert peaks[1000] > 0
    # A loader that copied the split into each worker would grow by ~2 x 193 MB.
    assert peaks[8000] - peaks[1000] < 40 * 1024, peaks
