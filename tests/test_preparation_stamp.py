"""The stamp and verification in ``preparation.py``: a truncated or deleted generated file is
generated again, a damaged label file is one sentence at setup and ``jepa-verify full=true``
removes the stamp so the next prepare checks again, and a failed verification never stamps."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from jepa_datamodules import CIFAR10DataModule, SyntheticDataModule
from jepa_datamodules.cli.terms import HydraTerms, console_text
from jepa_datamodules.formats.base import FormatError
from jepa_datamodules.storage.verify import STAMP_NAME, VerificationError
from tests.helpers.storage import last_error, mirror, run_cli  # noqa: F401 - mirror: a fixture

EXTRACTED = "cifar-10-python"
SMALL = dict(image_size=32, patch_size=4, batch_size=8, num_workers=0, progress=False)
TINY_SYNTHETIC = dict(num_train=64, num_test=32, batch_size=16, num_workers=0, progress=False)
TINY_SYNTHETIC_ARGS = ["data=synthetic", "data.num_train=64", "data.num_test=32", "data.batch_size=16",
                       "data.num_workers=0"]


def test_truncated_generated_file_is_regenerated_like_a_deleted_one(data_dir):
    dm = SyntheticDataModule(data_dir=data_dir, **TINY_SYNTHETIC)
    dm.prepare_data()
    images = dm.folder / "train_images.npy"
    original = images.read_bytes()
    for damage in ("delete", "truncate"):
        if damage == "delete":
            images.unlink()
        else:
            os.truncate(images, len(original) // 2)
        SyntheticDataModule(data_dir=data_dir, **TINY_SYNTHETIC).prepare_data()
        assert images.read_bytes() == original, damage  # generated again, from the same seed
        assert (dm.folder / STAMP_NAME).is_file()


def _damage_a_label_keeping_size_and_mtime(path: Path, index: int, value: int) -> None:
    before = path.stat()
    labels = np.load(path, mmap_mode="r+")
    labels[index] = value
    labels.flush()
    del labels
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


@pytest.mark.slow
def test_damaged_label_file_is_one_sentence_at_setup_and_verify_removes_the_stamp(data_dir, tmp_path):
    dm = SyntheticDataModule(data_dir=data_dir, **TINY_SYNTHETIC)
    dm.prepare_data()
    labels = dm.folder / "train_labels.npy"
    _damage_a_label_keeping_size_and_mtime(labels, 17, 200)  # bit rot: the stamp still matches

    fresh = SyntheticDataModule(data_dir=data_dir, **TINY_SYNTHETIC)
    fresh.prepare_data()  # stat only: it cannot see this
    with pytest.raises(FormatError) as error:
        fresh.setup("fit")
    assert str(error.value) == (
        f"The labels of synthetic train ({labels}) are damaged: 1 of 64 outside (e.g. 200 at item 17), allowed is "
        f"0..9; run `verify(full=True)` of the synthetic DataModule with data_dir='{data_dir}', num_train=64, "
        f"num_test=32 to find the damaged file.")
    assert console_text(error.value, HydraTerms()).endswith(
        f"run `jepa-verify data=synthetic paths.data_dir={data_dir} data.num_train=64 data.num_test=32 "
        f"full=true` to find the damaged file.")

    args = [*TINY_SYNTHETIC_ARGS, f"paths.data_dir={data_dir}"]
    fit = run_cli("jepa-fit", *args, "trainer.max_steps=2", cwd=tmp_path)
    assert fit.returncode == 2
    assert last_error(fit.stderr).startswith(f"The labels of synthetic train ({labels}) are damaged")
    verify = run_cli("jepa-verify", *args, "full=true", cwd=tmp_path)
    assert verify.returncode == 1
    assert "train_labels.npy" in last_error(verify.stderr)
    assert not (dm.folder / STAMP_NAME).exists()  # removed: the next prepare checks again
    for attempt in range(2):  # ... and refuses each time, never stamping broken data
        with pytest.raises(VerificationError):
            SyntheticDataModule(data_dir=data_dir, **TINY_SYNTHETIC).prepare_data()
        assert not (dm.folder / STAMP_NAME).exists(), attempt


def test_failed_verification_writes_no_stamp_and_the_next_prepare_checks_again(mirror, data_dir):
    server, _ = mirror
    dm = CIFAR10DataModule(data_dir=data_dir, mirrors=[server.url], keep_archives=False, **SMALL)
    dm.prepare_data()
    (dm.folder / STAMP_NAME).unlink()  # e.g. extracted by hand, or by another tool
    batch = dm.folder / EXTRACTED / "cifar-10-batches-py" / "data_batch_3"
    os.truncate(batch, batch.stat().st_size // 2)
    for attempt in range(2):
        with pytest.raises(VerificationError, match="data_batch_3"):
            CIFAR10DataModule(data_dir=data_dir, mirrors=[server.url], keep_archives=False, **SMALL).prepare_data()
        assert not (dm.folder / STAMP_NAME).exists(), attempt
