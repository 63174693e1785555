"""``evaluation/subsets.py``: SimCLR's ImageNet 1 % / 10 % lists: packaged whole (count and upstream
sha256), mapped by file name onto a fake ImageNet whose train file names come from the list (folder
layout and Hugging Face parquet shards), ImageNet-100 by intersection, and missing files named."""

from __future__ import annotations

import gzip
import hashlib
import importlib.resources

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jepa_datamodules import EvalDataModule, ImageNet100DataModule, ImageNetDataModule, imagenet_subset
from jepa_datamodules.formats.hfparquet import imagenet1k_wnids
from tests.helpers.fake_formats import pattern_jpeg

# sha256 of google-research/simclr imagenet_subsets/{1,10}percent.txt at 383d4143 (computed from the upstream files).
UPSTREAM = {"1percent": (12_811, "71e82a48ba78252683ae334c4d019ebd5c6e855b9599c1389fbe83eb9549cf17"),
            "10percent": (128_116, "6d09de11e7bdaf5b1f3b1f249b6183695f97310cdd20f0c03e7235b6b9392091")}
CLASSES = ["n01440764", "n02096294", "n04235860"]  # three classes that appear in both lists
EXTRA_PER_CLASS = 3  # train images outside the list


@pytest.mark.parametrize("name", sorted(UPSTREAM))
def test_packaged_lists_are_upstreams_byte_for_byte(name):
    count, sha256 = UPSTREAM[name]
    names = imagenet_subset(name)
    assert len(names) == len(set(names)) == count
    assert len({n.split("_")[0] for n in names}) == 1000  # every class of ImageNet-1k
    packed = importlib.resources.files("jepa_datamodules").joinpath("resources", f"imagenet_{name}.txt.gz").read_bytes()
    assert hashlib.sha256(gzip.decompress(packed)).hexdigest() == sha256
    assert "\n".join(names) + "\n" == gzip.decompress(packed).decode()
    notice = importlib.resources.files("jepa_datamodules").joinpath("resources", "imagenet_subsets_NOTICE.txt").read_text()
    assert "github.com/google-research/simclr" in notice and "Apache License 2.0" in notice and sha256 in notice


def _listed(subset: str) -> dict[str, list[str]]:
    names = imagenet_subset(subset)
    return {wnid: [n for n in names if n.startswith(wnid + "_")] for wnid in CLASSES}


def _extras(wnid: str) -> list[str]:
    return [f"{wnid}_{900_000 + k}.JPEG" for k in range(EXTRA_PER_CLASS)]  # numbers beyond any ILSVRC file


def _folder_imagenet(root, subset):
    rng = np.random.default_rng(0)
    listed = _listed(subset)
    for wnid in CLASSES:
        for name in sorted(listed[wnid] + _extras(wnid)):
            path = root / "imagenet" / "train" / wnid / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(pattern_jpeg(rng, (40, 30)))
        for k in range(2):
            path = root / "imagenet" / "val" / wnid / f"ILSVRC2012_val_{CLASSES.index(wnid) * 2 + k + 1:08d}.JPEG"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(pattern_jpeg(rng, (40, 30)))
    (root / "imagenet100").mkdir(exist_ok=True)
    return listed


def _parquet_imagenet(root, subset):
    """The Hugging Face release's schema; train rows named ``<wnid>_<number>_<wnid>.JPEG`` as it ships them."""
    rng = np.random.default_rng(0)
    listed = _listed(subset)
    position = {w: i for i, w in enumerate(imagenet1k_wnids())}
    schema = pa.schema([("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])), ("label", pa.int64())])
    rows = {"train": [], "validation": []}
    for wnid in CLASSES:
        for name in sorted(listed[wnid] + _extras(wnid)):
            rows["train"].append((f"{name[:-5]}_{wnid}.JPEG", position[wnid]))
        rows["validation"] += [(f"ILSVRC2012_val_{position[wnid]:04d}{k}.JPEG", position[wnid]) for k in range(2)]
    folder = root / "imagenet" / "data"
    folder.mkdir(parents=True)
    for prefix, items in rows.items():
        table = pa.table({"image": [{"bytes": pattern_jpeg(rng, (40, 30)), "path": p} for p, _ in items],
                          "label": [label for _, label in items]}, schema=schema)
        pq.write_table(table, folder / f"{prefix}-00000-of-00001.parquet", row_group_size=50)
    (root / "imagenet100").mkdir(exist_ok=True)
    return listed


@pytest.mark.parametrize("source", ["folders", "parquet"])
@pytest.mark.parametrize("subset", ["1percent", "10percent"])
def test_imagenet100_takes_the_listed_files_of_its_classes(tmp_path, monkeypatch, source, subset):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    listed = (_folder_imagenet if source == "folders" else _parquet_imagenet)(tmp_path / "data", subset)
    class_list = tmp_path / "classes.txt"
    class_list.write_text("\n".join(CLASSES) + "\n")
    dm = ImageNet100DataModule(data_dir=tmp_path / "data", class_list=class_list, source=source, image_size=32,
                               patch_size=8, batch_size=16, num_workers=0, progress=False)
    edm = EvalDataModule(dm, protocol="knn", subset=subset)
    edm.setup()
    from jepa_datamodules.evaluation.subsets import item_names

    names = item_names(edm.train_source)
    assert sorted(names) == sorted(n for wnid in CLASSES for n in listed[wnid])  # the list's files, nothing else
    assert np.bincount(edm.train_source.labels, minlength=3).tolist() == [len(listed[w]) for w in CLASSES]
    for name, label in zip(names, edm.train_source.labels):
        assert CLASSES[label] == name.split("_")[0]  # each file keeps its own class's label
    assert len(edm.eval_source) == 6  # the evaluation split is whole
    served = sorted(i for batch in edm.train_dataloader() for i in batch["indices"].tolist())
    assert served == list(range(len(names)))


def test_imagenet1k_with_files_missing_names_them(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    _folder_imagenet(tmp_path / "data", "1percent")
    dm = ImageNetDataModule(data_dir=tmp_path / "data", source="folders", image_size=32, patch_size=8, num_workers=0, batch_size=8,
                            progress=False)
    present = sum(len(v) for v in _listed("1percent").values())
    with pytest.raises(ValueError) as error:
        EvalDataModule(dm, subset="1percent").setup()
    message = str(error.value)
    assert message.startswith(f"{12_811 - present:,} of the 12,811 files of subset='1percent' are not in the imagenet "
                              "train split (e.g. ")
    first_missing = next(n for n in imagenet_subset("1percent") if n.split("_")[0] not in CLASSES)
    assert first_missing in message and "\n" not in message
