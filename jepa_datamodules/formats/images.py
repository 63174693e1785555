"""What counts as an image file, and the one answer to "does it decode?".

Every format that lists image files (ImageNet's and Imagenette's class folders, Tiny-ImageNet,
your own folder) counts the names :func:`is_image_name` accepts, and every check that an image
is usable (verification, an own folder's skipping of damaged files, ``check_images``) asks
:func:`decode_problem`. Decoding itself is :func:`decode_image` (bytes -> an RGB-able image)
and :func:`rgb_pixels` (an opened image -> ``HxWx3`` uint8); both refuse truncated data even
where training code set Pillow's ``LOAD_TRUNCATED_IMAGES``.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from ..errors import UndecodableImage

__all__ = ["IMAGE_SUFFIXES", "is_image_name", "decode_image", "rgb_pixels", "decode_problem", "item_problem",
           "item_name", "strict_decoding"]

#: Suffixes counted as images, compared case-insensitively (ImageNet's files end in ".JPEG").
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".webp", ".bmp")

_JPEG_FORMATS = ("JPEG", "MPO")
_SOS, _EOI = b"\xff\xda", b"\xff\xd9"
# Modes Pillow converts to RGB without surprises; 16/32-bit grey is scaled to 8 bits first.
_WIDE_GREY = ("I", "I;16", "I;16B", "I;16L", "F")


def is_image_name(name: str) -> bool:
    """True for a file name with one of :data:`IMAGE_SUFFIXES` (any case) that is not hidden
    (hidden names, starting with ".", are staging or metadata, never images)."""
    return not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES)


@contextlib.contextmanager
def strict_decoding() -> Iterator[None]:
    """Pillow fails on truncated data inside the block: some training code sets
    ``LOAD_TRUNCATED_IMAGES`` globally, which pads a cut-off file with grey instead."""
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


def decode_image(data: bytes) -> Image.Image | np.ndarray:
    """An RGB-able image from a file's bytes, or :class:`UndecodableImage`.

    RGB and grayscale JPEGs come back as an undecoded ``PIL.Image`` over the bytes, so the
    view can ask libjpeg for a reduced size (see ``transforms.decode_pixels``); only their
    header is read here, plus a check that the scan ends with the end-of-image marker
    (a truncated JPEG does not). Everything else (PNG, WebP, BMP, CMYK JPEGs, ...) is
    decoded here, in full, to an ``HxWx3`` uint8 array, which also catches truncation.
    """
    try:
        image = Image.open(io.BytesIO(data))
        if image.format in _JPEG_FORMATS:
            # Entropy-coded data never holds FF D9 (FF is stuffed), so the marker after the
            # last start-of-scan is the real end of the image.
            if data.find(_EOI, max(0, data.rfind(_SOS))) < 0:
                raise UndecodableImage("JPEG data ends before its end-of-image marker (truncated file)")
            if image.mode in ("RGB", "L"):
                return image
        return rgb_pixels(image)
    except UndecodableImage:
        raise
    except UnidentifiedImageError:
        raise UndecodableImage("not an image file that Pillow can read") from None
    except Exception as error:  # Pillow reports damage with OSError, SyntaxError, ValueError, ...
        raise UndecodableImage(f"{type(error).__name__}: {error}") from None


def rgb_pixels(image: Image.Image) -> np.ndarray:
    """``image`` decoded in full to ``HxWx3`` uint8 (grey, CMYK, palette and RGBA converted,
    alpha dropped); truncated data raises (see :func:`strict_decoding`)."""
    with strict_decoding():
        image.load()
    if image.mode in _WIDE_GREY:
        grey = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or grey.max() > 255 else 255.0
        image = Image.fromarray(np.clip(grey * (255.0 / top), 0, 255).astype(np.uint8), "L")
    elif image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")  # Pillow's advice for palette transparency; alpha then dropped
    return np.asarray(image.convert("RGB"))


def decode_problem(item: Any, full: bool = True) -> str | None:
    """None when ``item`` is a usable RGB image, else why not, as a phrase.

    ``item`` is what a source holds: an ``HxWx3`` uint8 array (its bytes are touched, so a
    truncated memory map fails), an opened ``PIL.Image``, a file's encoded ``bytes``, or a
    file's path. ``full`` [True]: decode every pixel; False checks an RGB or grey JPEG's header
    and end-of-image marker only (what training relies on before decoding it at reduced size).
    """
    try:
        if isinstance(item, np.ndarray):
            if item.dtype != np.uint8 or item.ndim != 3 or item.shape[2] != 3:
                return f"array of {item.dtype} {item.shape}"
            np.asarray(item).sum()  # touches the bytes (memmaps fail here when truncated)
            return None
        if isinstance(item, (str, Path)):
            item = Path(item).read_bytes()
        if isinstance(item, (bytes, bytearray, memoryview)):
            item = decode_image(bytes(item))
        if isinstance(item, Image.Image) and full:
            rgb_pixels(item)
        return None
    except FileNotFoundError:
        return "file not found"
    except UndecodableImage as error:
        return str(error)
    except Exception as error:  # noqa: BLE001 - any failure to read or decode is the finding
        return f"{type(error).__name__}: {error}"


def item_problem(source: Any, index: int, full: bool = True) -> str | None:
    """:func:`decode_problem` of item ``index`` of ``source``, read as it is stored: its encoded
    bytes where it has them (``read_bytes``: nothing substituted for a damaged file), else
    what ``load`` gives. Reading errors are findings too."""
    try:
        item = source.read_bytes(index) if hasattr(source, "read_bytes") else source.load(index)
    except Exception as error:  # noqa: BLE001 - a file that cannot be read is the finding
        return "file not found" if isinstance(error, FileNotFoundError) else f"{type(error).__name__}: {error}"
    return decode_problem(item, full=full)


def item_name(source: Any, index: int) -> str:
    """How a report names item ``index``: the source's ``name(i)`` (a shard and row), its path
    relative to the source's root, or ``item <i>``."""
    if hasattr(source, "name"):
        return source.name(index)
    if hasattr(source, "paths"):
        return str(source.paths[index])
    return f"item {index}"
