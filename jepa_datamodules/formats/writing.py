"""What every format's writer shares: sample images, in-memory tars, archive packing.

Each format module ends with a public ``write_*`` function that writes a small copy of its
exact upstream on-disk format; the test fakes and ``jepa-bench``'s stand-ins both call those.
This module holds the parts they have in common:

* :func:`balanced_labels`: every class in every split, shuffled;
* :func:`smooth_pixels` / :func:`pattern_jpeg`: smooth random colour blocks (plus noise, as a
  small JPEG): cheap images for tests;
* :func:`texture_bank` / :func:`photo_like`: ImageNet-like photos (1/f texture, shapes), whose
  file sizes and decode times are close to real ones (the benchmark's stand-ins);
* :func:`tar_bytes`: an uncompressed tar of named byte strings (archives within archives,
  as ImageNet's train tar holds one tar per class);
* :func:`pack_archive`: a written folder as ``.tar``, ``.tar.gz`` / ``.tgz`` or ``.zip``.

Archives are byte-identical across runs for the same files (fixed mtimes, sorted members).
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from ..errors import ConfigError

# A fixed date (ILSVRC2012's release year) keeps written archives byte-identical across runs.
ARCHIVE_MTIME = 1_338_000_000


def smooth_pixels(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """``(height, width, 3)`` uint8 RGB pixels of ``size`` = (width, height): random colour
    blocks of about 8x8 pixels, bilinearly upsampled (smooth, so they compress like a photo)."""
    width, height = size
    coarse = rng.integers(0, 256, size=(max(2, height // 8), max(2, width // 8), 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse, "RGB").resize((width, height), Image.BILINEAR))


def balanced_labels(count: int, classes: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` int64 labels with every class as often as the count allows, in a shuffled order
    (so a small copy holds every class the verifier counts)."""
    return rng.permutation(np.arange(count) % classes).astype(np.int64)


def pattern_jpeg(rng: np.random.Generator, size: tuple[int, int] = (80, 60), quality: int = 90) -> bytes:
    """A random RGB JPEG of ``size`` = (width, height) (default 80x60).

    Upsampled coarse colour blocks plus noise: it compresses like a photo (a few kB), and
    any two calls give different bytes, so a misplaced file is detectable.
    """
    smooth = smooth_pixels(rng, size).astype(np.int16)
    noisy = np.clip(smooth + rng.integers(-20, 21, size=smooth.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noisy, "RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def texture_bank(rng: np.random.Generator, count: int = 4, side: int = 640) -> list[np.ndarray]:
    """Fields with a 1/f amplitude spectrum (that of natural images), unit variance.

    Crops of these give :func:`photo_like` images detail at every scale, and with it file
    sizes and decode times close to ImageNet's (flat colours would decode far faster).
    """
    fy = np.fft.fftfreq(side)[:, None]
    fx = np.fft.rfftfreq(side)[None, :]
    radius = np.hypot(fy, fx)
    radius[0, 0] = 1.0
    bank = []
    for _ in range(count):
        spectrum = (rng.normal(size=radius.shape) + 1j * rng.normal(size=radius.shape)) / radius
        spectrum[0, 0] = 0.0
        field = np.fft.irfft2(spectrum, s=(side, side))
        bank.append((field / field.std()).astype(np.float32))
    return bank


def photo_like(rng: np.random.Generator, bank: list[np.ndarray], width: int, height: int) -> Image.Image:
    """A smooth colour field, a few flat shapes, then 1/f texture from ``bank`` (amplitude 45 of 255)."""
    from PIL import ImageDraw

    corners = rng.integers(0, 256, (3, 4, 3), dtype=np.uint8)
    canvas = Image.fromarray(corners).resize((width, height), Image.BICUBIC)
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(3, 8))):
        x0, y0 = rng.uniform(-50, width), rng.uniform(-50, height)
        box = (x0, y0, x0 + rng.uniform(width / 15, width / 1.5), y0 + rng.uniform(height / 15, height / 1.5))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    texture = bank[int(rng.integers(len(bank)))]
    if texture.shape[0] < height or texture.shape[1] < width:
        raise ConfigError(f"a {width}x{height} photo-like image needs a texture bank of at least that side.")
    top = int(rng.integers(0, texture.shape[0] - height + 1))
    left = int(rng.integers(0, texture.shape[1] - width + 1))
    pixels = np.asarray(canvas, dtype=np.float32) + 45.0 * texture[top:top + height, left:left + width, None]
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def write_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path``, creating its parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def tar_bytes(files: Mapping[str, bytes] | Iterable[tuple[str, bytes]]) -> bytes:
    """An uncompressed GNU tar holding ``files`` in the given order: a name ending in ``/``
    is a folder (its bytes are ignored), any other a regular file.

    Names are written verbatim, without any checks, so hostile names work too.
    """
    items = files.items() if isinstance(files, Mapping) else files
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in items:
            info = tarfile.TarInfo(name.rstrip("/") if name.endswith("/") else name)
            info.mtime = ARCHIVE_MTIME
            if name.endswith("/"):
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def gzip_bytes(data: bytes) -> bytes:
    """``data`` gzip-compressed with a fixed header time (so archives stay byte-identical)."""
    return gzip.compress(data, mtime=0)


def archive_members(folder: Path) -> list[str]:
    """Every folder and file under ``folder`` as a posix path, each folder before its contents."""
    found = []
    for top, dirs, files in os.walk(folder):
        dirs.sort()
        rel = Path(top).relative_to(folder)
        if rel != Path("."):
            found.append(rel.as_posix() + "/")
        found += [(rel / name).as_posix() for name in sorted(files)]
    return found


def pack_archive(folder: Path, archive: Path, order: Sequence[str] | None = None) -> Path:
    """Pack everything under ``folder`` into ``archive`` (``.zip``, ``.tar``, ``.tar.gz`` or ``.tgz``).

    Member names are relative to ``folder``, folders included (as upstream archives have
    them). ``order`` lists member names (folders end with ``/``) to write in that order
    instead of sorted, e.g. to check that a reader does not rely on archive order.
    """
    folder, archive = Path(folder), Path(archive)
    names = list(order) if order is not None else archive_members(folder)
    archive.parent.mkdir(parents=True, exist_ok=True)
    if archive.suffix == ".zip":
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
            for name in names:
                info = zipfile.ZipInfo(name, date_time=(2012, 5, 26, 0, 0, 0))
                info.external_attr = (0o40755 if name.endswith("/") else 0o100644) << 16
                zf.writestr(info, b"" if name.endswith("/") else (folder / name).read_bytes())
        return archive
    data = tar_bytes((name, b"" if name.endswith("/") else (folder / name).read_bytes()) for name in names)
    archive.write_bytes(gzip_bytes(data) if archive.name.endswith((".tar.gz", ".tgz")) else data)
    return archive
