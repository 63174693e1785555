"""``cli/apps.py``: a user's mistake met while a console script runs (a folder smaller than a
batch, a file as the image folder, a checkpoint of another model, a bad setting) is one
``error:`` sentence with exit status 2 (1 for a failed verification), printed once by rank 0
of a DDP run; a multirun goes on past a failed job and names it at the end."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.console import one_error_line, run_command as _cli, typed as cli


def tree(folder: Path) -> dict[str, tuple[int, int, bytes]]:
    return {str(p.relative_to(folder)): (p.stat().st_mode, p.stat().st_mtime_ns, p.read_bytes() if p.is_file() else b"")
            for p in sorted(folder.rglob("*"))}


@pytest.mark.slow
def test_a_folder_smaller_than_a_batch_is_refused_and_left_byte_for_byte_unchanged(tmp_path):
    from tests.helpers.fake_ownimages import make_labelled_folder, make_unlabeled_folder

    make_unlabeled_folder(tmp_path / "photos", count=40)
    make_labelled_folder(tmp_path / "mine")
    photos, mine = tree(tmp_path / "photos"), tree(tmp_path / "mine")
    # The README's command with the defaults (batch 128, drop_last): 39 training images give no step.
    refused = cli("jepa-fit", "data=imagefolder", f"data.root={tmp_path / 'photos'}", cwd=tmp_path)
    line = one_error_line(refused)
    assert "data.batch_size=128 with data.drop_last=true gives no training batch" in line and "has 39 images" in line
    assert "data.batch_size=39 or less" in line
    verified = cli("jepa-verify", "data=imagefolder", f"data.root={tmp_path / 'mine'}", cwd=tmp_path)
    assert verified.returncode == 0, verified.stderr[-2000:]
    assert "usable, 1 unreadable file skipped" in verified.stdout
    # Neither the failing command nor the verification wrote anything into the user's folders.
    assert tree(tmp_path / "photos") == photos and tree(tmp_path / "mine") == mine


def test_a_file_as_the_image_folder_is_named_as_a_file(tmp_path):
    (tmp_path / "photo.jpg").write_bytes(b"not a folder")
    line = one_error_line(cli("jepa-verify", "data=imagefolder", f"data.root={tmp_path / 'photo.jpg'}", cwd=tmp_path))
    assert line == f"error: Image folder {tmp_path / 'photo.jpg'} is a file, not a folder; point data.root at the " \
                   "folder that holds your images."


def test_advice_for_a_broken_own_folder_never_offers_a_download(tmp_path):
    """Nothing can be fetched for your own images: the fix names the folder, not `force=true`."""
    (tmp_path / "empty" / "train" / "cat").mkdir(parents=True)
    result = cli("jepa-verify", "data=imagefolder", f"data.root={tmp_path / 'empty'}", cwd=tmp_path)
    assert result.returncode == 1
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error: imagefolder failed 1 check(s) (read train); ")
    assert "force=true" not in error and "fetch" not in error and str(tmp_path / "empty") in error


TINY_MODEL = ["data.num_train=64", "data.num_test=16", "data.batch_size=8", "data.num_workers=0",
              "trainer.max_steps=1", "model.depth=1", "model.num_heads=2", "model.predictor_dim=16",
              "model.predictor_depth=1"]


@pytest.mark.slow
def test_a_checkpoint_of_another_model_is_one_sentence(tmp_path):
    first = cli("jepa-fit", "data=synthetic", "model.embed_dim=32", *TINY_MODEL, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    (checkpoint,) = (tmp_path / "runs").rglob("*.ckpt")
    line = one_error_line(cli("jepa-fit", "data=synthetic", "model.embed_dim=64", *TINY_MODEL,
                              f"ckpt_path={checkpoint}", cwd=tmp_path))
    assert line.startswith(f"error: ckpt_path={checkpoint} was saved by a run of another dataset or model (")
    assert "is [" in line and "there, [" in line and "model.* settings it was trained with" in line
    line = one_error_line(cli("jepa-fit", "data=synthetic", *TINY_MODEL, f"ckpt_path={tmp_path / 'gone.ckpt'}",
                              cwd=tmp_path))
    assert line.startswith(f"error: ckpt_path={tmp_path / 'gone.ckpt'} does not exist;")


@pytest.mark.slow
def test_a_multirun_goes_on_past_a_failed_job_and_names_it_at_the_end(tmp_path):
    result = cli("jepa-prepare", "--multirun", "data=imagefolder,synthetic", "data.progress=false", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "synthetic: ready and verified at" in result.stdout  # the job after the failure still ran
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 2 and errors[0].startswith(f"error: Image folder {tmp_path / 'data' / 'imagefolder'} does not")
    assert errors[1] == ("error: 1 of 2 jobs failed (data=imagefolder data.progress=False), each with its sentence "
                         "above; the other 1 completed.")


@pytest.mark.parametrize(("env", "printed"), [({}, True), ({"LOCAL_RANK": "0", "NODE_RANK": "0"}, True),
                                              ({"LOCAL_RANK": "1", "NODE_RANK": "0"}, False), ({"RANK": "3"}, False)])
def test_an_error_of_a_ddp_run_is_printed_once_by_rank_zero(env, printed, monkeypatch, capsys):
    """Every rank of a DDP run meets the same mistake: each exits with its status, only rank 0 prints it."""
    from jepa_datamodules.cli import apps

    for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as stop:
        apps._fail("batch_size=0 is invalid; allowed is a positive integer.")
    assert stop.value.code == 2
    assert capsys.readouterr().err == ("error: batch_size=0 is invalid; allowed is a positive integer.\n" if printed else "")


def test_cli_user_error_is_one_sentence(tmp_path):
    result = _cli("jepa-prepare", "data=cifar10", "data.batch_size=0", f"paths.data_dir={tmp_path}", cwd=tmp_path)
    assert result.returncode == 2
    # The console names the setting as it is typed there (str(error) in Python says batch_size=0).
    assert result.stderr.strip().splitlines()[-1].startswith("error: data.batch_size=0 is invalid")
    assert "Traceback" not in result.stderr
