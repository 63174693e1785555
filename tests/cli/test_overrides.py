"""``cli/overrides.py``: mistakes on the command line, typed into the console scripts as a user
types them: each is one ``error:`` sentence naming the close valid value, exit status 2, and
nothing of Hydra's own block (search path, option lists that offer ``_base_``, "Set the
environment variable HYDRA_FULL_ERROR")."""

from __future__ import annotations

import pytest

from tests.helpers.console import one_error_line, run_command as _cli, typed as cli


@pytest.mark.parametrize(("command", "args", "named"), [
    ("jepa-fit", ["data=cifar-10"], "did you mean data=cifar10?"),
    ("jepa-prepare", ["data=stl-10"], "did you mean data=stl10?"),
    ("jepa-verify", ["data=imagenet-100"], "did you mean data=imagenet100?"),
    ("jepa-fit", ["mask=multiblok"], "did you mean mask=multiblock?"),
    ("jepa-fit", ["data.batchsize=8"], "did you mean data.batch_size"),
    ("jepa-fit", ["+data.batchsize=8"], "did you mean data.batch_size"),
    ("jepa-fit", ["trainer.max_epoch=2"], "did you mean trainer.max_epochs"),
    ("jepa-fit", ["dat=cifar10"], "did you mean data=cifar10?"),
    ("jepa-fit", ["data=cifar10", "data.variant=160"], "data.variant is not a setting of data"),
    ("jepa-fit", ["--multirun", "data=synthetic,cifr100"], "did you mean data=cifar100?"),
])
def test_a_mistyped_option_or_key_is_one_sentence_with_the_close_value(command, args, named, tmp_path):
    line = one_error_line(cli(command, *args, cwd=tmp_path))
    assert named in line
    assert "_base_" not in line
    assert not (tmp_path / "runs").exists()  # refused before Hydra made a run folder


def test_the_shared_base_config_is_not_a_dataset(tmp_path):
    line = one_error_line(cli("jepa-fit", "data=_base_", cwd=tmp_path))
    assert line.startswith("error: Unknown dataset '_base_' for data. Valid values are {all-auto, cifar10,")
    assert "synthetic" in line and "it is not a choice" in line


def test_an_unknown_key_without_a_close_one_says_where_the_keys_are_listed(tmp_path):
    line = one_error_line(cli("jepa-fit", "+data.colour=1", cwd=tmp_path))
    assert "data.colour is not a setting of data" in line and "--cfg job" in line
    # A key of the user's own where Hydra can add one (the trainer takes more than its YAML lists) still works.
    shown = cli("jepa-fit", "+trainer.precision=32", "--cfg", "job", cwd=tmp_path)
    assert shown.returncode == 0 and "precision: 32" in shown.stdout, shown.stderr[-2000:]


def test_a_bad_environment_setting_is_one_sentence(tmp_path):
    line = one_error_line(cli("jepa-prepare", "data=synthetic", cwd=tmp_path, env={"JEPA_PROGRESS_MIN_SECONDS": "abc"}))
    assert line == "error: JEPA_PROGRESS_MIN_SECONDS='abc' is invalid; allowed is a number of seconds, 0 or more."


def test_each_mistake_on_the_line_gets_its_own_sentence(tmp_path):
    result = cli("jepa-fit", "data=cifar100", "data.batchsize=8", "data.labeltype=coarse", cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        "error: data.batchsize is not a setting of data; did you mean data.batch_size or data.patch_size? "
        "(`--cfg job` lists every setting.)",
        "error: data.labeltype is not a setting of data; did you mean data.label_type? (`--cfg job` lists every setting.)",
    ]


def test_cli_unknown_dataset_lists_options(tmp_path):
    result = _cli("jepa-prepare", "data=cifar11", cwd=tmp_path)
    assert result.returncode != 0
    assert "cifar10" in result.stderr and "cifar100" in result.stderr and "synthetic" in result.stderr
