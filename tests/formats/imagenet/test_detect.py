"""``formats/imagenet/detect.py``: ``detect_source`` recognises each starting point (the
archives, a ready layout, train with a flat val folder or tar, nothing usable), and with nothing
usable the error gives step-by-step instructions, in Python's words and the console's, writing
nothing."""

from __future__ import annotations

import shutil
import tarfile

import pytest

from jepa_datamodules.cli.terms import HydraTerms, console_text
from jepa_datamodules.formats.imagenet import ImageNetSetupError, detect_source, prepare_imagenet
from tests.formats.imagenet.conftest import WNIDS
from tests.helpers.fake_imagenet import DEVKIT, TRAIN_TAR, VAL_TAR, make_imagenet_archives, make_imagenet_layout


def test_detect_source_recognises_each_starting_point(tmp_path):
    assert detect_source(tmp_path / "does-not-exist") is None
    empty = tmp_path / "empty"
    empty.mkdir()
    assert detect_source(empty) is None

    archives = tmp_path / "archives"
    make_imagenet_archives(archives, WNIDS[:2])
    assert detect_source(archives) == "archives"
    (archives / DEVKIT).unlink()  # the val tar cannot be sorted without the devkit
    assert detect_source(archives) is None

    layout = tmp_path / "layout"
    make_imagenet_layout(layout, WNIDS[:2])
    assert detect_source(layout) == "layout"

    flat = tmp_path / "flat"
    make_imagenet_layout(flat, WNIDS[:2], val_per_class=0)
    assert detect_source(flat) is None  # train alone is not enough
    make_imagenet_archives(tmp_path / "src", WNIDS[:2])
    shutil.copy(tmp_path / "src" / DEVKIT, flat / DEVKIT)
    shutil.copy(tmp_path / "src" / VAL_TAR, flat / VAL_TAR)
    assert detect_source(flat) == "flat_val"  # val as the tar
    with tarfile.open(flat / VAL_TAR) as tar:
        tar.extractall(flat / "val", filter="data")
    (flat / VAL_TAR).unlink()
    assert detect_source(flat) == "flat_val"  # val as a flat folder


def test_missing_data_gives_step_by_step_instructions(tmp_path):
    root = tmp_path / "imagenet"
    root.mkdir()
    (root / TRAIN_TAR).write_bytes(b"")  # only one of the three files: still not usable
    with pytest.raises(ImageNetSetupError) as caught:
        prepare_imagenet(root, progress=False)
    message = str(caught.value)
    for needed in (TRAIN_TAR, VAL_TAR, DEVKIT, "138 GB", "6.3 GB", "2.5 MB", "image-net.org",
                   "$JEPA_DATA_DIR", str(root)):
        assert needed in message
    assert "train/<wnid>" in message and "val/<wnid>" in message
    assert caught.value.path == root
    # Python speaks Python; the console gives the command line.
    assert "Run `prepare_data()` of the imagenet DataModule" in message and "point\n     data_dir at" in message
    console = console_text(caught.value, HydraTerms())
    assert "Run `jepa-prepare data=imagenet`" in console and "point\n     paths.data_dir at" in console
    assert sorted(p.name for p in root.iterdir()) == [TRAIN_TAR]  # nothing was written
