"""``formats/tinyimagenet.py``: Tiny-ImageNet-200 downloaded as its upstream zip from the loopback
mirror, every split's labels as written (val's from ``val_annotations.txt``, -1 for the unlabeled
test images), and a val image the annotations do not list named rather than given a made-up
label."""

from __future__ import annotations

import pytest

from jepa_datamodules import TinyImageNetDataModule
from tests.helpers.fakes import TINY_WNIDS
from tests.helpers.storage import assert_labels, mirror, prepared  # noqa: F401 - mirror: a fixture

SMALL = dict(batch_size=4, num_workers=0, progress=False)


def test_tinyimagenet_downloads_the_zip_and_reads_val_labels_from_the_annotations(mirror, tmp_path):
    dm, written = prepared(TinyImageNetDataModule, mirror, tmp_path, "tiny-imagenet-200.zip", **SMALL)
    assert dm.hparams.image_size == 64 and dm.hparams.patch_size == 8
    for split in ("train", "val", "unlabeled"):
        source = dm.open_split(split)
        assert_labels(source, written[split], TINY_WNIDS)
        assert source.load(0).size == (64, 64)
    # A val image that the annotations do not list is named, not read with a made-up label.
    root = dm.folder / dm.spec.data_root
    (root / "val" / "images" / "val_99.JPEG").write_bytes((root / "val" / "images" / "val_0.JPEG").read_bytes())
    with pytest.raises(Exception, match=r"1 image\(s\) of .*val_99\.JPEG\) have no line in .*val_annotations\.txt"):
        dm.open_split("val")
