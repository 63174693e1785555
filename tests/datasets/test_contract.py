"""The dataset contract: the same checks on every dataset of the catalog (torchvision's
``DatasetTestCase``), each on a tiny fake in its exact upstream format (tests/helpers/contract.py).

A dataset joins by being in the catalog: its fake is chosen by its format, its counts come
through ``$JEPA_CATALOG``. A format without a fake writer fails here with a sentence saying so.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import lightning
import numpy as np
import pytest
import torch
from PIL import Image

from jepa_datamodules import JEPADataModule, TinyJEPA
from tests.helpers.contract import TINY, build_datamodule, contract_cases, missing_writer

CASES = contract_cases()
each_dataset = pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
SIDE, PATCH, BATCH = TINY["image_size"], TINY["patch_size"], TINY["batch_size"]
#: The documented batch keys (README, "Batch format") with the default multi-block mask.
BATCH_KEYS = {"images", "labels", "indices", "context_masks", "target_masks", "epoch", "batch_index"}
#: Known failures of the contract, by case id: strict xfails, so a fix is noticed (remove the entry then).


@each_dataset
def test_every_dataset_has_a_fake_in_its_format(case):
    assert missing_writer(case) is None, missing_writer(case)


@each_dataset
def test_splits_hold_the_catalog_counts_and_labels_in_range(case, fake, contract):
    dm = build_datamodule(case, fake)
    assert dm.num_classes == fake.num_classes
    for path in fake.served:  # auto-download: fetched once, from the loopback mirror
        assert contract.server.count(path) == 1, path
    for split, count in fake.splits.items():
        labels = np.asarray(dm.open_split(split).labels)
        assert len(labels) == count, split
        assert labels.dtype.kind == "i" and labels.shape == (count,)
        assert int((labels == -1).sum()) == fake.unlabeled.get(split, 0), f"{split}: -1 only for unlabeled items"
        labeled = labels[labels != -1]
        assert ((labeled >= 0) & (labeled < dm.num_classes)).all(), f"{split}: labels outside 0..{dm.num_classes - 1}"


@each_dataset
def test_classes_name_every_label_and_a_batch_has_the_documented_shape(case, fake):
    dm = build_datamodule(case, fake)
    classes = dm.classes
    assert classes is not None and len(classes) == dm.num_classes == fake.num_classes
    assert len(set(classes)) == len(classes) and all(isinstance(name, str) and name for name in classes)
    assert dm.class_to_idx == {name: label for label, name in enumerate(classes)}

    item = dm.open_split(dm.spec.pretrain_split).load(0)  # a PIL image (files) or an (H, W, 3) array
    if isinstance(item, Image.Image):
        item.load()
        assert item.mode == "RGB"
    pixels = np.asarray(item)
    assert (pixels.dtype, pixels.ndim, pixels.shape[-1]) == (np.uint8, 3, 3) and min(pixels.shape[:2]) > 0

    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert BATCH_KEYS <= set(batch), f"missing {sorted(BATCH_KEYS - set(batch))}"
    assert batch["images"].shape == (BATCH, 3, SIDE, SIDE)
    assert batch["labels"].dtype == torch.int64 and batch["labels"].shape == (BATCH,)
    assert ((batch["labels"] >= -1) & (batch["labels"] < dm.num_classes)).all()
    cells = (SIDE // PATCH) ** 2
    # The default mask: one context block and four target blocks, patch indices into the grid.
    assert [m.shape[0] for m in batch["context_masks"]] == [BATCH]
    assert [m.shape[0] for m in batch["target_masks"]] == [BATCH] * 4
    for mask in [*batch["context_masks"], *batch["target_masks"]]:
        assert mask.dtype == torch.int64 and 0 < mask.shape[1] and 0 <= int(mask.min()) and int(mask.max()) < cells


def largest_data_file(dm: JEPADataModule) -> Path:
    """The largest file the verification stamp tracks (in a tracked folder: the files in it),
    an extracted one where there are any (the archives' own check is an md5), else an archive."""
    files = []
    for tracked in dm.data.tracked_files():
        path = dm.folder / tracked  # absolute entries stay as they are
        files += [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
    archives = {archive.filename for archive in dm.spec.archives}
    files = [p for p in files if not p.name.startswith(".")]
    assert files, f"{dm.spec.name} tracks no file"
    return max(files, key=lambda p: (p.name not in archives, p.stat().st_size, str(p)))


@each_dataset
def test_verify_passes_and_names_a_damaged_file(case, fake, tmp_path):
    report = build_datamodule(case, fake).verify(full=True)
    assert report.ok and not report.failures, report.summary()

    copy = tmp_path / "data"
    shutil.copytree(fake.data_dir, copy, symlinks=True)
    dm = build_datamodule(case, fake, data_dir=copy)
    victim = largest_data_file(dm)
    assert str(victim).startswith(str(copy))
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])  # a cut-off copy
    report = dm.verify(full=True)
    if fake.skips_unreadable:  # your own folder: an unreadable file is listed and skipped, not a failure
        assert report.ok and [name for name in report.skipped if name.endswith(victim.name)], report.table()
    else:
        assert not report.ok and victim.name in report.summary(), report.summary()


@pytest.mark.slow
@each_dataset
def test_a_short_trainer_run(case, fake, tmp_path):
    dm = build_datamodule(case, fake)
    model = TinyJEPA(SIDE, PATCH, max(dm.num_classes, 1), embed_dim=32, depth=1, num_heads=2, predictor_dim=16,
                     predictor_depth=1)
    trainer = lightning.Trainer(accelerator="cpu", devices=1, max_steps=2, limit_val_batches=1, num_sanity_val_steps=0,
                                logger=False, enable_checkpointing=False, enable_progress_bar=False,
                                enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(model, datamodule=dm)
    assert trainer.state.finished and trainer.global_step == 2
    assert len(model.losses) == 2 and np.isfinite(model.losses).all()
