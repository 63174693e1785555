"""Small datasets written in the exact upstream formats, for tests that never touch the
internet. Each builder returns what it wrote so tests can compare pixels and labels.

CIFAR "python version": a tar.gz holding ``cifar-10-batches-py/`` (``data_batch_1..5``,
``test_batch``, ``batches.meta``) or ``cifar-100-python/`` (``train``, ``test``, ``meta``);
each batch a protocol-2 pickle of a dict whose ``data`` is an ``(N, 3072)`` uint8 array
(red plane, green plane, blue plane, each 32x32 row-major).

STL-10 binary: a tar.gz holding ``stl10_binary/`` with ``*_X.bin`` (each image three 96x96
planes stored column-major), ``*_y.bin`` (uint8 labels, 1-based), ``fold_indices.txt``
(10 lines of 0-based train indices) and ``class_names.txt``.

Imagenette: a .tgz holding ``imagenette2-320/{train,val}/<wnid>/*.JPEG``. Tiny-ImageNet-200: a
.zip holding ``tiny-imagenet-200/`` with ``wnids.txt``, ``train/<wnid>/images/*.JPEG``, a flat
``val/images/`` labelled by ``val/val_annotations.txt`` and unlabeled ``test/images/``.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
import yaml


@dataclass
class FakeArchive:
    path: Path
    md5: str
    size: int
    splits: dict[str, np.ndarray] = field(default_factory=dict)  # split -> (N, H, W, 3) uint8
    labels: dict[str, np.ndarray] = field(default_factory=dict)  # split -> (N,) int64, as the loader reports them


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _add_bytes(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(payload))


def _random_images(rng: np.random.Generator, count: int, side: int) -> np.ndarray:
    return rng.integers(0, 256, (count, side, side, 3), dtype=np.uint8)


def make_cifar(out_dir: Path, kind: str = "cifar10", per_batch: int = 20, test_count: int = 30,
               seed: int = 0) -> FakeArchive:
    """CIFAR-10 (5 train batches of ``per_batch``) or CIFAR-100 (one train file of
    ``5 * per_batch``); every class appears in every split when counts allow."""
    rng = np.random.default_rng(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    classes = 10 if kind == "cifar10" else 100
    top = "cifar-10-batches-py" if kind == "cifar10" else "cifar-100-python"
    archive = out_dir / ("cifar-10-python.tar.gz" if kind == "cifar10" else "cifar-100-python.tar.gz")

    def batch(count: int, name: str) -> tuple[dict, np.ndarray, np.ndarray]:
        images = _random_images(rng, count, 32)
        fine = rng.permutation(np.arange(count) % classes).astype(np.int64)
        content = {"batch_label": name, "data": images.transpose(0, 3, 1, 2).reshape(count, 3072),
                   "filenames": [f"img_{i}.png" for i in range(count)]}
        if kind == "cifar10":
            content["labels"] = [int(v) for v in fine]
        else:
            content["fine_labels"] = [int(v) for v in fine]
            content["coarse_labels"] = [int(v) // 5 for v in fine]
        return content, images, fine

    members: dict[str, bytes] = {}
    train_images, train_labels = [], []
    if kind == "cifar10":
        for k in range(1, 6):
            content, images, labels = batch(per_batch, f"training batch {k} of 5")
            members[f"{top}/data_batch_{k}"] = pickle.dumps(content, protocol=2)
            train_images.append(images)
            train_labels.append(labels)
        test_content, test_images, test_labels = batch(test_count, "testing batch 1 of 1")
        members[f"{top}/test_batch"] = pickle.dumps(test_content, protocol=2)
        members[f"{top}/batches.meta"] = pickle.dumps(
            {"num_cases_per_batch": per_batch, "num_vis": 3072,
             "label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]},
            protocol=2)
    else:
        content, images, labels = batch(5 * per_batch, "training batch 1 of 1")
        members[f"{top}/train"] = pickle.dumps(content, protocol=2)
        train_images.append(images)
        train_labels.append(labels)
        test_content, test_images, test_labels = batch(test_count, "testing batch 1 of 1")
        members[f"{top}/test"] = pickle.dumps(test_content, protocol=2)
        members[f"{top}/meta"] = pickle.dumps(
            {"fine_label_names": [f"fine{i}" for i in range(100)], "coarse_label_names": [f"coarse{i}" for i in range(20)]},
            protocol=2)
    with tarfile.open(archive, "w:gz") as tar:
        for name, payload in members.items():
            _add_bytes(tar, name, payload)
    return FakeArchive(archive, md5_of(archive), archive.stat().st_size,
                       {"train": np.concatenate(train_images), "test": test_images},
                       {"train": np.concatenate(train_labels), "test": test_labels})


def make_stl10(out_dir: Path, train: int = 20, test: int = 10, unlabeled: int = 30, seed: int = 0) -> FakeArchive:
    rng = np.random.default_rng(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    archive = out_dir / "stl10_binary.tar.gz"
    images = {"train": _random_images(rng, train, 96), "test": _random_images(rng, test, 96),
              "unlabeled": _random_images(rng, unlabeled, 96)}
    labels = {"train": rng.permutation(np.arange(train) % 10), "test": rng.permutation(np.arange(test) % 10)}
    members: dict[str, bytes] = {}
    for split, pixels in images.items():
        # (N, H, W, C) -> per image C planes stored column by column: (N, C, W, H) in C order.
        members[f"stl10_binary/{split}_X.bin"] = np.ascontiguousarray(pixels.transpose(0, 3, 2, 1)).tobytes()
    for split, values in labels.items():
        members[f"stl10_binary/{split}_y.bin"] = (values + 1).astype(np.uint8).tobytes()
    folds = [np.sort(rng.choice(train, size=max(1, train // 2), replace=False)) for _ in range(10)]
    members["stl10_binary/fold_indices.txt"] = "".join(" ".join(map(str, f)) + " \n" for f in folds).encode()
    names = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
    members["stl10_binary/class_names.txt"] = ("\n".join(names) + "\n").encode()
    with tarfile.open(archive, "w:gz") as tar:
        for name, payload in members.items():
            _add_bytes(tar, name, payload)
    fake = FakeArchive(archive, md5_of(archive), archive.stat().st_size,
                       dict(images), {k: v.astype(np.int64) for k, v in labels.items()})
    fake.labels["unlabeled"] = np.full(unlabeled, -1, dtype=np.int64)
    fake.folds = folds  # type: ignore[attr-defined]
    return fake


# ----------------------------------------- Imagenette (.tgz) and Tiny-ImageNet-200 (.zip)
# Imagenette's ten wnids (as in the upstream archive); Tiny-ImageNet's fake keeps four classes.
IMAGENETTE_WNIDS = ["n01440764", "n02102040", "n02979186", "n03000684", "n03028079",
                    "n03394916", "n03417042", "n03425413", "n03445777", "n03888257"]
TINY_WNIDS = ["n09193705", "n01443537", "n07873807", "n02124075"]  # wnids.txt is not sorted upstream


def jpeg(rng: np.random.Generator, size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def _written(archive: Path, written: dict[str, dict[str, str]]) -> FakeArchive:
    fake = FakeArchive(archive, md5_of(archive), archive.stat().st_size)
    fake.written = written  # type: ignore[attr-defined]
    return fake


def make_imagenette(out_dir: Path, seed: int = 0) -> FakeArchive:
    """imagenette2-320.tgz holding imagenette2-320/{train,val}/<wnid>/*.JPEG (and its noisy-labels
    csv); ``.written`` is {split: {path under the split: wnid}}."""
    rng = np.random.default_rng(seed)
    written: dict[str, dict[str, str]] = {"train": {}, "val": {}}
    archive = out_dir / "imagenette2-320.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        for split, per_class in (("train", 2), ("val", 1)):
            for wnid in reversed(IMAGENETTE_WNIDS):  # archive order is not label order
                for i in range(per_class):
                    name = f"{wnid}/{'ILSVRC2012_val_' if split == 'val' else wnid + '_'}{seed}{i:04d}.JPEG"
                    payload = jpeg(rng, (48, 32))
                    _add_bytes(tar, f"imagenette2-320/{split}/{name}", payload)
                    written[split][name] = wnid
        csv = b"path,noisy_labels_0,is_valid\n"
        _add_bytes(tar, "imagenette2-320/noisy_imagenette.csv", csv)
    return _written(archive, written)


def make_tinyimagenet(out_dir: Path, seed: int = 0) -> FakeArchive:
    """tiny-imagenet-200.zip in the CS231n layout; ``.written`` is {split: {relpath: wnid}}
    (relpaths under tiny-imagenet-200/, wnid "" for the unlabeled test images)."""
    rng = np.random.default_rng(seed)
    written: dict[str, dict[str, str]] = {"train": {}, "val": {}, "unlabeled": {}}
    archive = out_dir / "tiny-imagenet-200.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        root = "tiny-imagenet-200"
        zf.writestr(f"{root}/wnids.txt", "\n".join(TINY_WNIDS) + "\n")
        zf.writestr(f"{root}/words.txt", "".join(f"{w}\tsomething\n" for w in TINY_WNIDS))
        for wnid in TINY_WNIDS:
            boxes = []
            for i in range(3):
                rel = f"train/{wnid}/images/{wnid}_{i}.JPEG"
                zf.writestr(f"{root}/{rel}", jpeg(rng, (64, 64)))
                written["train"][rel] = wnid
                boxes.append(f"{wnid}_{i}.JPEG\t0\t0\t63\t63\n")
            zf.writestr(f"{root}/train/{wnid}/{wnid}_boxes.txt", "".join(boxes))
        lines = []
        for i in range(8):
            wnid = TINY_WNIDS[(3 * i) % len(TINY_WNIDS)]  # every class, not in label order
            rel = f"val/images/val_{i}.JPEG"
            zf.writestr(f"{root}/{rel}", jpeg(rng, (64, 64)))
            written["val"][rel] = wnid
            lines.append(f"val_{i}.JPEG\t{wnid}\t1\t2\t60\t61\n")
        zf.writestr(f"{root}/val/val_annotations.txt", "".join(lines))
        for i in range(5):
            rel = f"test/images/test_{i}.JPEG"
            zf.writestr(f"{root}/{rel}", jpeg(rng, (64, 64)))
            written["unlabeled"][rel] = ""
    return _written(archive, written)


def catalog_override(path: Path, entries: dict[str, dict]) -> Path:
    """Write a ``$JEPA_CATALOG`` file: dataset name -> spec fields to replace."""
    path.write_text(yaml.safe_dump(entries))
    return path


def archive_override(name: str, fake: FakeArchive, splits: dict[str, int]) -> dict:
    # No upstream URLs: a test must never reach past the loopback mirror to the internet.
    return {name: {"archives": [{"filename": fake.path.name, "md5": fake.md5, "size": fake.size, "urls": []}],
                   "splits": splits}}
