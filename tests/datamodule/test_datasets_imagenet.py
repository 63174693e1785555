"""``datamodule/datasets.py``: ImageNet-1k and ImageNet-100 DataModules on tiny fakes in the official
formats."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jepa_datamodules import ImageNet100DataModule, ImageNetDataModule
from jepa_datamodules.formats.imagenet import ImageNetSetupError
from tests.helpers.fake_imagenet import make_imagenet_archives, make_imagenet_layout
from jepa_datamodules.storage.download import file_md5
from tests.helpers.fakes import catalog_override

WNIDS = ["n01440764", "n01443537", "n01484850", "n01491361", "n01494475", "n01496331"]
SMALL = dict(image_size=32, patch_size=4, batch_size=4, num_workers=0, progress=False)


def _catalog(tmp_path: Path, monkeypatch, archives_dir: Path | None, train: int, val: int) -> None:
    entry: dict = {"splits": {"train": train, "val": val}, "num_classes": len(WNIDS)}
    if archives_dir is not None:
        entry["archives"] = [{"filename": name, "md5": file_md5(archives_dir / name, progress=False), "size": (archives_dir / name).stat().st_size}
                             for name in ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar", "ILSVRC2012_devkit_t12.tar.gz")]
    monkeypatch.setenv("JEPA_CATALOG", str(catalog_override(tmp_path / "catalog.yaml", {"imagenet": entry})))


def test_prepare_from_official_archives_sorts_val_by_ground_truth(tmp_path, monkeypatch):
    folder = tmp_path / "data" / "imagenet"
    info = make_imagenet_archives(folder, WNIDS, train_per_class=3, val_per_class=2)
    _catalog(tmp_path, monkeypatch, folder, train=18, val=12)
    dm = ImageNetDataModule(data_dir=tmp_path / "data", **SMALL)
    dm.prepare_data()
    for name, wnid in info["val_assignment"].items():
        assert (folder / "val" / wnid / name).read_bytes() == info["val_bytes"][name]
    val = dm.open_split("val")
    assert len(val) == 12 and sorted(set(val.labels.tolist())) == list(range(6))
    # Labels follow sorted wnid order.
    for path, label in zip(val.paths, val.labels):
        assert Path(path).parts[0] == sorted(WNIDS)[label]
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert batch["images"].shape == (4, 3, 32, 32)


def test_ready_layout_needs_no_devkit(tmp_path, monkeypatch):
    make_imagenet_layout(tmp_path / "data" / "imagenet", WNIDS, train_per_class=2, val_per_class=1)
    _catalog(tmp_path, monkeypatch, None, train=12, val=6)
    dm = ImageNetDataModule(data_dir=tmp_path / "data", **SMALL)
    dm.prepare_data()
    assert dm.verify().ok
    assert (tmp_path / "data" / "imagenet" / ".jepa-verified.json").exists()


def test_missing_data_gives_the_manual_steps(tmp_path):
    dm = ImageNetDataModule(data_dir=tmp_path / "data", **SMALL)
    with pytest.raises(ImageNetSetupError) as error:
        dm.prepare_data()
    text = str(error.value)
    for needed in ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar", "ILSVRC2012_devkit_t12.tar.gz",
                   "`prepare_data()` of the imagenet DataModule"):
        assert needed in text
    assert error.value.path == tmp_path / "data" / "imagenet"


def test_damaged_archive_is_named(tmp_path, monkeypatch):
    folder = tmp_path / "data" / "imagenet"
    make_imagenet_archives(folder, WNIDS, train_per_class=1, val_per_class=1)
    _catalog(tmp_path, monkeypatch, folder, train=6, val=6)
    with open(folder / "ILSVRC2012_img_val.tar", "r+b") as handle:
        handle.seek(1000)
        handle.write(b"\xff" * 16)
    with pytest.raises(Exception, match="ILSVRC2012_img_val.tar is not the official ILSVRC2012_img_val.tar: it has "
                                        "the expected .* bytes but md5 .*, expected .* bytes with md5 "):
        ImageNetDataModule(data_dir=tmp_path / "data", **SMALL).prepare_data()


def test_imagenet100_is_an_index_over_the_parent(tmp_path, monkeypatch):
    parent = tmp_path / "data" / "imagenet"
    make_imagenet_layout(parent, WNIDS, train_per_class=2, val_per_class=1)
    _catalog(tmp_path, monkeypatch, None, train=12, val=6)
    subset = [WNIDS[4], WNIDS[1], WNIDS[2]]
    class_list = tmp_path / "subset.txt"
    class_list.write_text("\n".join(subset) + "\n")
    images_before = _count_images(tmp_path / "data")
    dm = ImageNet100DataModule(data_dir=tmp_path / "data", class_list=class_list, **SMALL)
    dm.prepare_data()
    assert dm.num_classes == 3
    train = dm.open_split("train")
    assert len(train) == 6 and sorted(set(train.labels.tolist())) == [0, 1, 2]
    for path, label in zip(train.paths, train.labels):
        assert Path(path).parts[0] == sorted(subset)[label]
    # No image copied or linked: only the stamp, the index caches and the lock are new.
    new_files = [p for p in (tmp_path / "data" / "imagenet100").rglob("*") if p.is_file()]
    assert all(p.suffix in (".json", ".npz") for p in new_files), new_files
    assert not any(p.is_symlink() for p in (tmp_path / "data").rglob("*"))
    assert _count_images(tmp_path / "data") == images_before


def _count_images(root: Path) -> int:
    return sum(1 for p in root.rglob("*") if p.suffix.lower() in (".jpeg", ".jpg", ".png"))


def test_shipped_cmc_list_loads_by_default(tmp_path):
    dm = ImageNet100DataModule(data_dir=tmp_path, **SMALL)
    assert dm.num_classes == 100 and len(set(dm.classes)) == 100


@pytest.mark.slow
@pytest.mark.parametrize("name", ["imagenet", "imagenet100"])
def test_jepa_fit_runs_on_the_fakes_from_the_command_line(tmp_path, name):
    data = tmp_path / "data"
    make_imagenet_archives(data / "imagenet", WNIDS, train_per_class=3, val_per_class=2)
    archives = data / "imagenet"
    entries = {"imagenet": {"splits": {"train": 18, "val": 12}, "num_classes": 6,
                            "archives": [{"filename": n, "md5": file_md5(archives / n, progress=False), "size": (archives / n).stat().st_size}
                                         for n in ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar",
                                                   "ILSVRC2012_devkit_t12.tar.gz")]}}
    catalog = catalog_override(tmp_path / "catalog.yaml", entries)
    class_list = tmp_path / "subset.txt"
    class_list.write_text("\n".join(WNIDS[:4]))
    extra = [f"data.class_list={class_list}"] if name == "imagenet100" else []
    result = subprocess.run(
        [str(Path(sys.executable).parent / "jepa-fit"), f"data={name}", f"paths.data_dir={data}",
         f"paths.log_dir={tmp_path / 'runs'}", "data.image_size=32", "data.patch_size=4", "data.batch_size=4",
         "data.num_workers=0", "mask.min_keep=4", "trainer.max_steps=2", "model.embed_dim=32", "model.depth=1",
         "model.predictor_dim=16", "model.predictor_depth=1", "model.num_heads=2", *extra],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
        env={**os.environ, "JEPA_CATALOG": str(catalog), "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"dataset:        {name}" in result.stdout and "steps:          2" in result.stdout


@pytest.mark.slow
def test_jepa_verify_names_a_truncated_jpeg(tmp_path, monkeypatch):
    data = tmp_path / "data"
    make_imagenet_layout(data / "imagenet", WNIDS, train_per_class=2, val_per_class=1)
    _catalog(tmp_path, monkeypatch, None, train=12, val=6)
    ImageNetDataModule(data_dir=data, **SMALL).prepare_data()
    victim = sorted((data / "imagenet" / "train" / WNIDS[2]).iterdir())[0]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    result = subprocess.run(
        [str(Path(sys.executable).parent / "jepa-verify"), "data=imagenet", "full=true", f"paths.data_dir={data}",
         f"paths.log_dir={tmp_path / 'runs'}"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300, env={**os.environ})
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{WNIDS[2]}/{victim.name}" in result.stdout + result.stderr
    assert "force=true" in result.stderr


def test_prepare_instructions_print_the_manual_steps(tmp_path):
    result = subprocess.run(
        [str(Path(sys.executable).parent / "jepa-prepare"), "data=imagenet", "instructions=true",
         f"paths.data_dir={tmp_path / 'data'}", f"paths.log_dir={tmp_path / 'runs'}"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    for needed in ("ILSVRC2012_img_train.tar", "ILSVRC2012_devkit_t12.tar.gz", str(tmp_path / "data" / "imagenet"),
                   "jepa-prepare data=imagenet"):
        assert needed in result.stdout
    assert not (tmp_path / "data" / "imagenet").exists() or not any((tmp_path / "data" / "imagenet").iterdir())
    assert not (tmp_path / "runs" / "jepa-prepare").exists()  # printing steps makes no run folder
