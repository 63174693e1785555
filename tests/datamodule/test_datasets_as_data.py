"""``datamodule/datasets.py``: datasets are data: each public DataModule name only fixes its dataset
and declares its own arguments, and what differs between datasets comes from the spec (catalog +
$JEPA_CATALOG)."""

from __future__ import annotations

import inspect
import shlex

import pytest

from jepa_datamodules.cli.terms import HydraTerms, console_text
import yaml

import jepa_datamodules
from jepa_datamodules import CIFAR10DataModule, JEPADataModule, STL10DataModule, SyntheticDataModule

ALIASES = [getattr(jepa_datamodules, name) for name in jepa_datamodules.__all__
           if inspect.isclass(getattr(jepa_datamodules, name))
           and issubclass(getattr(jepa_datamodules, name), JEPADataModule)
           and getattr(jepa_datamodules, name) is not JEPADataModule]


@pytest.mark.parametrize("alias", ALIASES, ids=lambda cls: cls.__name__)
def test_an_alias_names_its_dataset_and_declares_its_arguments_only(alias):
    own = {name for name in vars(alias) if not (name.startswith("__") and name != "__init__")}
    assert own <= {"spec_name", "__init__"}, f"{alias.__name__} defines {sorted(own - {'spec_name', '__init__'})}"
    assert alias.spec_name and alias.__doc__
    if "__init__" in vars(alias):  # LightningCLI and help() read the extra arguments from here
        extra = [p for p in inspect.signature(alias.__init__).parameters.values() if p.kind is p.KEYWORD_ONLY]
        assert extra and all(f"{p.name}:" in alias.__init__.__doc__ for p in extra)


def test_stl10_fold_range_comes_from_the_spec(tmp_path, monkeypatch):
    (tmp_path / "catalog.yaml").write_text(yaml.safe_dump({"stl10": {"options": {"folds": 3}}}))
    monkeypatch.setenv("JEPA_CATALOG", str(tmp_path / "catalog.yaml"))
    with pytest.raises(ValueError, match=r"^fold=3 is invalid; allowed is None or 0\.\.2 \(STL-10's predefined folds\)\.$"):
        STL10DataModule(data_dir=tmp_path, fold=3)
    assert STL10DataModule(data_dir=tmp_path, fold=2).hparams.fold == 2


def test_fold_with_litdata_is_refused_by_the_litdata_input(tmp_path):
    with pytest.raises(ValueError, match=r"^fold=1 is not available with format='litdata' \(the chunks hold whole "
                                         r"splits\); allowed is fold=None, or format='files'\.$"):
        STL10DataModule(data_dir=tmp_path, fold=1, format="litdata", input=str(tmp_path / "chunks"))


def test_a_dataset_option_outside_its_choices_is_one_sentence(tmp_path):
    with pytest.raises(ValueError, match=r"^Unknown value 'test' for argument train_split\. "
                                         r"Valid values are \{train, unlabeled, train\+unlabeled\}\.$"):
        STL10DataModule(data_dir=tmp_path, train_split="test")
    with pytest.raises(ValueError, match=r"^num_train=0 is invalid; allowed is a positive integer\.$"):
        SyntheticDataModule(data_dir=tmp_path, num_train=0)


def test_a_single_mirror_string_is_one_mirror_in_fetching_and_in_fix_hints(tmp_path):
    """Hydra's ``data.mirrors=http://host/m`` arrives as a string, not a list."""
    dm = CIFAR10DataModule(data_dir=tmp_path, mirrors="http://127.0.0.1:9/m", num_workers=0)
    assert dm.fetch_settings().mirrors == ("http://127.0.0.1:9/m",)
    assert "data.mirrors=[http://127.0.0.1:9/m]" in shlex.split(console_text(dm.fix_action(), HydraTerms()).strip("`"))
