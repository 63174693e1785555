"""The embedded synthetic dataset: labeled images with real spatial structure.

Each class is a kind of layout (a disk, a square, a ring, stripes in one direction, a
checkerboard, ...) drawn at a random position and scale, in random colours, over a
noisy textured background. Predicting a hidden block from its context therefore needs
spatial reasoning, and a linear probe on learned features can tell the classes apart,
while colour alone cannot (colours are drawn independently of the class).

Generation is deterministic for a seed, vectorised over images, and written to disk
like a downloaded dataset so it goes through the same prepare / verify path.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..catalog import DatasetSpec, dataset_folder
from ..choices import check_positive
from ..progress import progress_bar
from ..storage.files import remove_path, staging_folder
from .base import ArraySource
from .dataset import Dataset
from ..errors import ConfigError, setting

CLASS_NAMES = (
    "disk", "square", "ring", "cross", "horizontal-stripes",
    "vertical-stripes", "checkerboard", "diagonal-stripes", "triangle", "two-dots",
)


def _shape_masks(kind: int, yy: np.ndarray, xx: np.ndarray, cy, cx, radius, period) -> np.ndarray:
    """Foreground mask (N, H, W) for one class; all geometry in pixels."""
    dy, dx = yy - cy, xx - cx
    inside = np.maximum(np.abs(dy), np.abs(dx)) <= radius
    if kind == 0:
        return dy**2 + dx**2 <= radius**2
    if kind == 1:
        return inside
    if kind == 2:
        dist = np.sqrt(dy**2 + dx**2)
        return (dist <= radius) & (dist >= 0.55 * radius)
    if kind == 3:
        arm = np.maximum(radius * 0.3, 1.0)
        return ((np.abs(dy) <= arm) | (np.abs(dx) <= arm)) & inside
    if kind == 4:
        return ((yy // period) % 2 == 0) & inside
    if kind == 5:
        return ((xx // period) % 2 == 0) & inside
    if kind == 6:
        return (((yy // period) + (xx // period)) % 2 == 0) & inside
    if kind == 7:
        return (((yy + xx) // period) % 2 == 0) & inside
    if kind == 8:
        return (dy >= -radius) & (dy <= radius) & (np.abs(dx) <= (dy + radius) / 2)
    if kind == 9:
        offset = radius * 0.6
        small = (radius * 0.4) ** 2
        return ((dy + offset) ** 2 + (dx + offset) ** 2 <= small) | ((dy - offset) ** 2 + (dx - offset) ** 2 <= small)
    raise ConfigError(f"Unknown synthetic class {kind}; valid classes are 0..{len(CLASS_NAMES) - 1}.")


def render(labels: np.ndarray, resolution: int, rng: np.random.Generator,
           done: Callable[[int], None] | None = None) -> np.ndarray:
    """Draw one image per label: returns ``(N, resolution, resolution, 3)`` uint8.

    ``done(n)``, if given, is called after each class with the number of images just drawn.
    """
    count = len(labels)
    images = np.empty((count, resolution, resolution, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:resolution, 0:resolution].astype(np.float32)
    yy, xx = yy[None], xx[None]
    for kind in np.unique(labels):
        rows = np.flatnonzero(labels == kind)
        n = len(rows)
        radius = rng.uniform(0.22, 0.42, (n, 1, 1)) * resolution
        cy = rng.uniform(radius[:, 0, 0], resolution - radius[:, 0, 0])[:, None, None]
        cx = rng.uniform(radius[:, 0, 0], resolution - radius[:, 0, 0])[:, None, None]
        period = np.maximum(np.round(rng.uniform(0.06, 0.12, (n, 1, 1)) * resolution), 1)
        mask = _shape_masks(int(kind), yy, xx, cy, cx, radius, period)
        background = rng.uniform(0, 255, (n, 1, 1, 3))
        foreground = rng.uniform(0, 255, (n, 1, 1, 3))
        # Keep foreground and background apart so every shape is visible.
        too_close = np.abs(foreground - background).sum(-1, keepdims=True) < 150
        foreground = np.where(too_close, 255 - background, foreground)
        # Low-frequency background texture: a smooth gradient in a random direction.
        angle = rng.uniform(0, 2 * np.pi, (n, 1, 1))
        ramp = (np.cos(angle) * yy + np.sin(angle) * xx) / resolution
        picture = np.where(mask[..., None], foreground, background + 40 * ramp[..., None])
        picture = picture + rng.normal(0, 12, picture.shape)
        images[rows] = np.clip(picture, 0, 255).astype(np.uint8)
        if done is not None:
            done(n)
    return images


def generate(folder: Path, *, num_train: int, num_test: int, resolution: int, num_classes: int, seed: int,
             progress: bool | None = None) -> None:
    """Write ``{train,test}_{images,labels}.npy`` into ``folder`` atomically (modes from the umask).

    ``progress``: images drawn so far, as ``progress.py`` decides [None = a bar on a terminal,
    plain lines otherwise; False = silent].
    """
    if not 2 <= num_classes <= len(CLASS_NAMES):
        raise ConfigError(f"{setting('num_classes', num_classes)} is not supported by the synthetic dataset; allowed is "
                          f"2..{len(CLASS_NAMES)}.", setting="num_classes", allowed=f"2..{len(CLASS_NAMES)}")
    if resolution < 8:
        raise ConfigError(f"{setting('resolution', resolution)} is too small for the synthetic dataset; allowed is 8 or "
                          "more pixels.", setting="resolution", allowed="8 or more")
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    staging = staging_folder(folder)
    try:
        with progress_bar(num_train + num_test, f"generate synthetic {resolution}px", unit="images",
                          progress=progress) as bar:
            for split, count in (("train", num_train), ("test", num_test)):
                # Balanced classes, shuffled so that any prefix is balanced too.
                labels = rng.permutation(np.arange(count) % num_classes).astype(np.int64)
                np.save(staging / f"{split}_images.npy", render(labels, resolution, rng, bar.update))
                np.save(staging / f"{split}_labels.npy", labels)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staging, folder)
    finally:
        if staging.exists():
            remove_path(staging)


def is_complete(folder: Path, *, num_train: int, num_test: int, resolution: int) -> bool:
    """True when every generated file is there whole: its ``.npy`` header promises the shape of
    this setting and the file holds every byte of it. Reads only the headers.

    A truncated file is as good as a missing one: both are simply generated again.
    """
    expected = {"train_images": (num_train, resolution, resolution, 3), "train_labels": (num_train,),
                "test_images": (num_test, resolution, resolution, 3), "test_labels": (num_test,)}
    for name, shape in expected.items():
        path = Path(folder) / f"{name}.npy"
        try:
            with open(path, "rb") as handle:
                version = np.lib.format.read_magic(handle)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                header = read_header(handle)  # (shape, fortran order, dtype)
                data_start = handle.tell()
            size = path.stat().st_size
        except (OSError, ValueError):
            return False
        found_shape, _, dtype = header
        if tuple(found_shape) != shape or size != data_start + int(np.prod(shape)) * dtype.itemsize:
            return False
    return True


class SyntheticDataset(Dataset):
    """The generated dataset in one setting (options ``num_train`` [4096], ``num_test`` [1024],
    ``resolution`` [32] pixels, ``num_classes`` [10]), under ``<data_dir>/synthetic/<setting>``;
    preparing it generates it."""

    DEFAULTS = {"num_train": 4096, "num_test": 1024, "resolution": 32, "num_classes": 10}

    def __init__(self, spec: DatasetSpec, data_dir: Any, *, num_train: int = 4096, num_test: int = 1024,
                 resolution: int = 32, num_classes: int = 10, **rest: Any):
        self.setting = {"num_train": num_train, "num_test": num_test, "resolution": resolution, "num_classes": num_classes}
        for key, value in self.setting.items():
            check_positive(key, value)
        super().__init__(spec.replace(splits={"train": num_train, "test": num_test}, num_classes=num_classes,
                                      resolution=resolution), data_dir, **rest)

    @property
    def folder(self) -> Path:
        s = self.setting
        name = f"{s['resolution']}px-{s['num_classes']}c-{s['num_train']}-{s['num_test']}-seed{self.seed}"
        return dataset_folder(self.data_dir, self.spec) / name

    def pending_writes(self) -> str | None:
        s = self.setting
        if is_complete(self.folder, num_train=s["num_train"], num_test=s["num_test"], resolution=s["resolution"]):
            return None
        # A truncated file is regenerated like a missing one: nothing of it is the user's.
        return f"the generated synthetic images and labels ({s['num_train']} + {s['num_test']} images)"

    def build(self, force: bool = False) -> dict[str, str]:
        if force or self.pending_writes() is not None:
            generate(self.folder, seed=self.seed, progress=self.progress, **self.setting)
        return {}

    def settings(self) -> dict[str, Any]:
        return {key: value for key, value in self.setting.items() if value != self.DEFAULTS[key]}

    @property
    def classes(self) -> list[str]:
        """The generator's shapes and textures in label order (``num_classes`` takes the first ones)."""
        return list(CLASS_NAMES[:self.setting["num_classes"]])


def dataset_type(spec: DatasetSpec) -> type[Dataset]:
    return SyntheticDataset


def open_split(spec: DatasetSpec, folder: Path, split: str) -> ArraySource:
    """One generated split: the images memory-mapped, the labels in memory."""
    images = np.load(folder / f"{split}_images.npy", mmap_mode="r")
    labels = np.load(folder / f"{split}_labels.npy")
    source = ArraySource(images, labels)
    source.label_files = [folder / f"{split}_labels.npy"]
    return source

