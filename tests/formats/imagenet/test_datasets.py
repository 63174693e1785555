"""``formats/imagenet/datasets.py``'s class lists: the packaged ImageNet-100 list (100 wnids,
checked against its sha256, refused when the checksum differs) and a user's list validated line
by line (comments and blanks allowed, a bad or repeated wnid named by its line)."""

from __future__ import annotations

import hashlib
import importlib.resources

import pytest

from jepa_datamodules.errors import ConfigError
from jepa_datamodules.formats.imagenet import IMAGENET100_SHA256, ImageNetSetupError, datasets, load_class_list


def test_packaged_imagenet100_list():
    wnids = load_class_list()
    assert len(wnids) == 100 and len(set(wnids)) == 100
    assert all(len(w) == 9 and w.startswith("n") and w[1:].isdigit() for w in wnids)
    data = importlib.resources.files("jepa_datamodules").joinpath("resources", "imagenet100.txt").read_bytes()
    assert hashlib.sha256(data).hexdigest() == IMAGENET100_SHA256
    assert wnids == data.decode().split()


def test_packaged_list_with_a_wrong_checksum_is_refused(monkeypatch):
    monkeypatch.setattr(datasets, "IMAGENET100_SHA256", "0" * 64)
    with pytest.raises(ImageNetSetupError, match="expected 0{64}"):
        load_class_list()


def test_user_class_list_is_validated_line_by_line(tmp_path):
    good = tmp_path / "mine.txt"
    good.write_text("# my classes\nn01440764\n\n  n01443537  # tench's friend\n")
    assert load_class_list(good) == ["n01440764", "n01443537"]

    bad = tmp_path / "bad.txt"
    bad.write_text("n01440764\n# comment\ngoldfish\n")
    with pytest.raises(ConfigError, match=r"line 3: 'goldfish' is not a WordNet id") as caught:
        load_class_list(bad)
    assert caught.value.setting == "class_list" and caught.value.path == bad
    repeated = tmp_path / "repeated.txt"
    repeated.write_text("n01440764\nn01443537\nn01440764\n")
    with pytest.raises(ValueError, match="line 3: n01440764 already appears on line 1"):
        load_class_list(repeated)
    with pytest.raises(ConfigError, match="class_list='.*missing.txt' cannot be read"):
        load_class_list(tmp_path / "missing.txt")
