"""``streaming/source.py``'s ``LitDataSource`` in a DataModule: batches from the chunks equal the
files' batches (full shuffle, or the files read in the same block order), a Trainer fits on them,
resuming mid-epoch gives the uninterrupted batches, and a folder that was never converted says
how to convert it."""

from __future__ import annotations

import lightning
import numpy as np
import pytest

from jepa_datamodules import TinyJEPA
from jepa_datamodules.cli.terms import HydraTerms, console_text
from tests.helpers.litdata import SYNTHETIC, synthetic
from tests.helpers.recorder import fit, interrupted_and_resumed
from tests.helpers.streams import assert_same_batches, files_in_block_order


def test_litdata_batches_equal_the_files_batches(converted):
    data_dir, chunks = converted
    # shuffle="full": the same permutation as the files.
    assert_same_batches(synthetic(data_dir, shuffle="full"),
                        synthetic(data_dir, format="litdata", input=str(chunks), shuffle="full"))
    # The default on chunks is chunk by chunk: the files read in the same block order give the same batches.
    streamed = synthetic(data_dir, format="litdata", input=str(chunks))
    assert_same_batches(files_in_block_order(synthetic(data_dir), streamed), streamed)


def test_trainer_fits_a_few_steps_on_litdata(converted, tmp_path):
    data_dir, chunks = converted
    dm = synthetic(data_dir, format="litdata", input=str(chunks))
    model = TinyJEPA(32, 4, 10, embed_dim=32, depth=1, num_heads=2, predictor_dim=16, predictor_depth=1)
    trainer = lightning.Trainer(max_steps=3, accelerator="cpu", logger=False, enable_progress_bar=False,
                                enable_model_summary=False, enable_checkpointing=False, limit_val_batches=1,
                                default_root_dir=tmp_path)
    trainer.fit(model, datamodule=dm)
    assert len(model.losses) == 3 and all(np.isfinite(model.losses))


def test_resuming_mid_epoch_on_litdata_gives_the_uninterrupted_batches(converted, tmp_path):
    data_dir, chunks = converted
    # The reference is the uninterrupted run on the dataset's own files: both formats give
    # the same stream, so this also checks that nothing in the format shifts it.
    reference = fit(synthetic(data_dir), 20, tmp_path / "reference").seen
    resumed = interrupted_and_resumed(lambda: synthetic(data_dir, 2, format="litdata", input=str(chunks),
                                                        shuffle="full"), tmp_path / "full", 20, checkpoint_at=5, stop_at=8)
    assert len(reference) == 20 > SYNTHETIC["num_train"] // SYNTHETIC["batch_size"]
    assert resumed == reference
    # Chunk by chunk (the default on chunks), with 2 workers resumed against 0 uninterrupted.
    blocks = fit(synthetic(data_dir, format="litdata", input=str(chunks)), 20, tmp_path / "blocks").seen
    assert blocks != reference
    assert interrupted_and_resumed(lambda: synthetic(data_dir, 2, format="litdata", input=str(chunks)),
                                   tmp_path / "resumed", 20, checkpoint_at=5, stop_at=8) == blocks


def test_reading_a_folder_that_was_never_converted_says_how_to_convert(tmp_path):
    dm = synthetic(tmp_path, format="litdata", input=str(tmp_path / "nothing-here"))
    dm.prepare_data()  # nothing to download in this format
    with pytest.raises(FileNotFoundError, match=r"is not a LitData dataset \(labels missing: .*\); allowed is the "
                                                 r"output of a conversion, `convert_to_litdata\(dm, output\)`") as error:
        dm.setup()
    # The console names the command that converts (tests/cli/test_terms.py renders every mark).
    assert "`jepa-prepare data=<name> format=litdata output=<where>`" in console_text(error.value, HydraTerms())
