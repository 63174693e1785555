"""``formats/ownfolder.py`` (data=imagefolder): your own images, labelled by class folders or not, on fakes in the exact layouts."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from jepa_datamodules import ImageFolderDataModule
from jepa_datamodules.cli.terms import HydraTerms, console_text
from jepa_datamodules.notices import Notice
from jepa_datamodules.pipeline.masks import MultiBlockMaskGenerator
from jepa_datamodules.formats import ownfolder
from jepa_datamodules.formats.ownfolder import STATE_NAME
from jepa_datamodules.pipeline.transforms import decode_pixels
from tests.helpers.fake_ownimages import make_labelled_folder, make_unlabeled_folder

SMALL = dict(image_size=32, patch_size=4, batch_size=4, num_workers=0, progress=False)
BIN = Path(sys.executable).parent
TINY = ["data.image_size=32", "data.patch_size=4", "data.batch_size=4", "data.num_workers=0", "mask.min_keep=4",
        "trainer.max_steps=2", "model.embed_dim=32", "model.depth=1", "model.predictor_dim=16",
        "model.predictor_depth=1", "model.num_heads=2"]


@pytest.fixture(autouse=True)
def _data_dir_in_tmp(tmp_path, monkeypatch):
    """The DataModules' default data_dir ("data", where the folders' index and stamp go) inside the test's folder."""
    monkeypatch.chdir(tmp_path)


def tree(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Every entry under ``folder`` with its mode and bytes: what "left byte for byte unchanged" compares."""
    return {str(p.relative_to(folder)): (p.stat().st_mode, p.read_bytes() if p.is_file() else b"")
            for p in sorted(folder.rglob("*"))}


def pixels(source, index: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the skip warning of the corrupt file
        return decode_pixels(source.load(index))


def test_labelled_nested_folder_gives_sorted_class_labels_and_the_written_pixels(tmp_path):
    written = make_labelled_folder(tmp_path / "mine")
    dm = ImageFolderDataModule(root=tmp_path / "mine", **SMALL)
    dm.prepare_data()
    assert dm.classes == ["cat", "dog"] and dm.num_classes == 2
    train = dm.open_split("train")
    # Hidden files, hidden folders and the .txt are not images; the corrupt JPEG is listed (and skipped later).
    assert sorted(train.paths) == sorted([*written["train"], *written["corrupt"]])
    for index, path in enumerate(train.paths):
        if path in written["train"]:
            label, expected = written["train"][path]
            assert train.labels[index] == label, path
            np.testing.assert_array_equal(pixels(train, index), expected, err_msg=path)  # CMYK, L, P, RGBA -> RGB
    val = dm.open_split("val")
    assert dict(zip(val.paths, val.labels.tolist())) == {p: label for p, (label, _) in written["val"].items()}
    dm.setup()
    assert {k: len(v) for k, v in dm.datasets.items()} == {"train": 11, "val": 2, "test": 2}


def test_undecodable_file_is_listed_and_skipped_without_changing_batch_size_or_order(tmp_path):
    written = make_labelled_folder(tmp_path / "mine")
    dm = ImageFolderDataModule(root=tmp_path / "mine", seed=3, mask=MultiBlockMaskGenerator(min_keep=4),
                               **{**SMALL, "batch_size": 3})
    report = dm.verify()
    assert report.ok and report.skipped == ["train/dog/truncated.jpg"]
    assert report.verdict() == "usable, 1 unreadable file skipped (train/dog/truncated.jpg)"
    skipped = [c for c in report.checks if c.skipped]
    assert [c.name for c in skipped] == ["unreadable train/dog/truncated.jpg"]
    assert "truncated" in skipped[0].found
    train = dm.open_split("train")
    bad = train.paths.index("dog/truncated.jpg")
    # Its stand-in is the next image of the same class, cyclically: dog/ is last, so the first dog image.
    first_dog = train.paths.index("dog/f.JPEG")
    with pytest.warns(UserWarning, match="Skipping .*truncated.jpg"):
        stand_in = decode_pixels(train.load(bad))
    np.testing.assert_array_equal(stand_in, written["train"]["dog/f.JPEG"][1])
    assert train.load_encoded(bad) == train.read_bytes(first_dog)
    # Two whole epochs in a loader worker: every batch full (drop_last), the same batches each run.
    runs = []
    for _ in range(2):
        fresh = ImageFolderDataModule(root=tmp_path / "mine", seed=3, mask=MultiBlockMaskGenerator(min_keep=4),
                                      **{**SMALL, "batch_size": 3, "num_workers": 1})
        fresh.setup()
        loader = fresh.train_dataloader()
        batches = []
        for epoch in range(2):
            loader.sampler.set_epoch(epoch)
            batches += [(b["indices"].tolist(), b["images"].clone()) for b in loader]
        runs.append(batches)
        assert all(len(indices) == 3 for indices, _ in batches) and len(batches) == 2 * ((11 - 1) // 3)
    for (indices_a, images_a), (indices_b, images_b) in zip(*runs):
        assert indices_a == indices_b
        assert np.array_equal(images_a.numpy(), images_b.numpy())


def test_unlabeled_nested_folder_and_the_seeded_val_carve_out(tmp_path):
    written = make_unlabeled_folder(tmp_path / "photos", count=40)
    dm = ImageFolderDataModule(root=tmp_path / "photos", **SMALL)
    assert dm.hparams.val_fraction == 0.01  # no val/ folder: the default carve-out
    dm.setup()
    train = dm.open_split("train")
    assert sorted(train.paths) == sorted(written) and (train.labels == -1).all() and dm.num_classes == 0
    for index, path in enumerate(train.paths):
        np.testing.assert_array_equal(pixels(train, index), written[path], err_msg=path)
    sizes = {k: len(v) for k, v in dm.datasets.items()}
    assert sizes == {"train": 39, "val": 1, "test": 1}
    again = ImageFolderDataModule(root=tmp_path / "photos", **SMALL)
    again.setup()
    assert again.datasets["val"].source.indices.tolist() == dm.datasets["val"].source.indices.tolist()
    other_seed = ImageFolderDataModule(root=tmp_path / "photos", seed=5, val_fraction=0.25, **SMALL)
    other_seed.setup()
    val, rest = other_seed.datasets["val"].source.indices, other_seed.datasets["train"].source.indices
    assert len(val) == 10 and not set(val) & set(rest) and len(set(val) | set(rest)) == 40
    assert "1% of train, seeded" in dm.val_description


def test_labels_argument_says_what_it_means(tmp_path):
    make_labelled_folder(tmp_path / "mine", val=False)
    none = ImageFolderDataModule(root=tmp_path / "mine", labels="none", **SMALL)
    assert (none.open_split("train").labels == -1).all() and none.num_classes == 0
    make_unlabeled_folder(tmp_path / "photos")
    with pytest.raises(ValueError, match=r"labels='folders' needs every image inside a class folder, but .*img_000.jpg"):
        ImageFolderDataModule(root=tmp_path / "photos", labels="folders", **SMALL).open_split("train")
    # Without train/, auto reads first-level folders as classes only when every image sits directly in one.
    for name in ("a", "b"):
        make_unlabeled_folder(tmp_path / "flatclasses" / name, count=4)
    # make_unlabeled_folder nests some images deeper: that is not a class layout.
    assert ImageFolderDataModule(root=tmp_path / "flatclasses", **SMALL).num_classes == 0
    with pytest.raises(ValueError, match=r"Unknown value 'yes' for argument labels. Valid values are \{auto, folders, none\}"):
        ImageFolderDataModule(root=tmp_path / "mine", labels="yes", **SMALL)
    with pytest.raises(ValueError, match="val_fraction=0 leaves no validation images"):
        ImageFolderDataModule(root=tmp_path / "mine", val_fraction=0.0, **SMALL)
    with pytest.raises(FileNotFoundError, match="does not exist; point root at the folder") as missing:
        ImageFolderDataModule(root=tmp_path / "nowhere", **SMALL).prepare_data()
    assert "point data.root at the folder" in console_text(missing.value, HydraTerms())  # the console's words
    assert not (tmp_path / "nowhere").exists()  # nothing created where there was nothing


def test_index_and_stamp_live_under_data_dir_and_the_folder_is_left_as_it_was(tmp_path):
    make_labelled_folder(tmp_path / "mine")
    before = tree(tmp_path / "mine")
    dm = ImageFolderDataModule(root=tmp_path / "mine", data_dir=tmp_path / "data", **SMALL)
    dm.prepare_data()
    dm.setup()
    assert tree(tmp_path / "mine") == before  # nothing of ours inside the user's folder
    assert dm.folder.parent == tmp_path / "data" / STATE_NAME and dm.folder.name.startswith("mine-")
    assert (dm.folder / ".index-train.npz").is_file()
    cat = tmp_path / "mine" / "train" / "cat"
    (cat / "new.jpg").write_bytes((cat / "a.jpg").read_bytes())
    assert len(ImageFolderDataModule(root=tmp_path / "mine", data_dir=tmp_path / "data", **SMALL).open_split("train")) == 12
    # Another folder of the same name elsewhere keeps its own index.
    make_unlabeled_folder(tmp_path / "other" / "mine", count=5)
    other = ImageFolderDataModule(root=tmp_path / "other" / "mine", data_dir=tmp_path / "data", **SMALL)
    assert other.folder != dm.folder and other.folder.parent == dm.folder.parent


def test_a_damaged_index_is_a_notice_and_the_folder_is_listed_again(tmp_path):
    make_labelled_folder(tmp_path / "mine")
    dm = ImageFolderDataModule(root=tmp_path / "mine", data_dir=tmp_path / "data", **SMALL)
    listed = len(dm.open_split("train"))
    (dm.folder / ".index-train.npz").write_bytes(b"half an index")
    with pytest.warns(Notice, match=r"The image-folder index .*\.index-train\.npz is unreadable .*; the folder is listed again"):
        again = ImageFolderDataModule(root=tmp_path / "mine", data_dir=tmp_path / "data", **SMALL).open_split("train")
    assert len(again) == listed


def test_read_only_data_dir_keeps_the_index_in_the_user_cache(tmp_path, monkeypatch):
    source, mounted = tmp_path / "src", tmp_path / "ro"
    make_labelled_folder(source)
    (source / "data").mkdir()
    mounted.mkdir()
    if subprocess.run(["mount", "--bind", "-o", "ro", str(source), str(mounted)], capture_output=True).returncode:
        pytest.skip("a read-only bind mount needs mount privileges")
    try:
        assert not os.access(mounted, os.W_OK)
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
        dm = ImageFolderDataModule(root=mounted, data_dir=mounted / "data", **SMALL)
        dm.prepare_data()
        dm.setup()
        assert str(dm.folder).startswith(str(tmp_path / "cache" / "jepa_datamodules" / "imagefolder"))
        assert (dm.folder / ".index-train.npz").is_file() and len(dm.datasets["train"]) == 11
        assert not any((source / "data").iterdir())
    finally:
        subprocess.run(["umount", str(mounted)], check=True)


@pytest.mark.slow
def test_jepa_fit_and_verify_on_your_own_folder_from_the_command_line(tmp_path):
    make_labelled_folder(tmp_path / "mine")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    common = [f"paths.data_dir={tmp_path / 'data'}", f"paths.log_dir={tmp_path / 'runs'}"]
    verify = subprocess.run([str(BIN / "jepa-verify"), "data=imagefolder", f"data.root={tmp_path / 'mine'}", *common],
                            capture_output=True, text=True, cwd=tmp_path, timeout=300, env=env)
    assert verify.returncode == 0, verify.stderr[-3000:]
    assert "unreadable train/dog/truncated.jpg" in verify.stdout
    assert verify.stdout.splitlines()[0] == f"imagefolder at {tmp_path / 'mine'}"  # the user's folder, not our state
    assert verify.stdout.splitlines()[-1] == "ok: imagefolder is usable, 1 unreadable file skipped (train/dog/truncated.jpg)"
    fit = subprocess.run([str(BIN / "jepa-fit"), "data=imagefolder", f"data.root={tmp_path / 'mine'}", *common, *TINY],
                         capture_output=True, text=True, cwd=tmp_path, timeout=600, env=env)
    assert fit.returncode == 0, fit.stderr[-3000:]
    assert "dataset:        imagefolder" in fit.stdout and "steps:          2" in fit.stdout
    assert "val:            the val/ folder of" in fit.stdout
    # 2 validation images cannot show a 2-class probe above chance: said so, no impossible threshold.
    assert "probe accuracy: " in fit.stdout and "not tested, too few validation images (n=2;" in fit.stdout
    assert "needs >=" not in fit.stdout
    make_unlabeled_folder(tmp_path / "photos", count=40)
    fit = subprocess.run([str(BIN / "jepa-fit"), "data=imagefolder", f"data.root={tmp_path / 'photos'}", *common, *TINY],
                         capture_output=True, text=True, cwd=tmp_path, timeout=600, env=env)
    assert fit.returncode == 0, fit.stderr[-3000:]
    assert "probe accuracy: none (unlabeled images)" in fit.stdout
    assert "val:            1% of train, seeded (seed 0), no val/ folder used" in fit.stdout


@pytest.mark.slow
def test_resuming_mid_epoch_on_your_own_folder_gives_the_uninterrupted_batches(tmp_path):
    from tests.helpers.recorder import fit, interrupted_and_resumed

    make_labelled_folder(tmp_path / "mine")  # 11 training images, one of them undecodable

    def make():
        return ImageFolderDataModule(root=tmp_path / "mine", mask=MultiBlockMaskGenerator(min_keep=4),
                                     **{**SMALL, "batch_size": 3})

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the skip warning
        uninterrupted = fit(make(), 8, tmp_path / "reference").seen
        resumed = interrupted_and_resumed(make, tmp_path, 8, checkpoint_at=2, stop_at=4)
    assert len(uninterrupted) == 8 and {epoch for epoch, *_ in uninterrupted} == {0, 1, 2}
    assert resumed == uninterrupted  # same samples, masks and pixels, stand-in included


def test_prepare_data_checks_a_sample_and_jepa_verify_every_file(tmp_path, monkeypatch):
    make_labelled_folder(tmp_path / "mine")
    dm = ImageFolderDataModule(root=tmp_path / "mine", **SMALL)
    read: list[int] = []
    original = type(dm.open_split("train")).read_bytes
    monkeypatch.setattr(type(dm.open_split("train")), "read_bytes", lambda self, i: read.append(i) or original(self, i))
    monkeypatch.setattr(ownfolder, "PREPARE_SAMPLE", 4)
    dm.prepare_data()
    assert len(read) == 4 + 2  # 4 of 11 train files, both val files
    read.clear()
    dm.verify()
    assert len(read) == 11 + 2
