"""errors.py: one base for every error the package raises, exported kinds, and messages whose
settings and fixes a Python caller reads in Python's terms."""

from __future__ import annotations

import pytest

import jepa_datamodules
from jepa_datamodules import CIFAR10DataModule, ConfigError, JEPADataError
from jepa_datamodules.errors import action, render, setting, with_options

KINDS = ["ConfigError", "StorageError", "DownloadError", "ExtractError", "FormatError", "MissingFilesError",
         "OwnFolderError", "UndecodableImage", "ImageNetSetupError", "VerificationError", "PrepareAllError"]


@pytest.mark.parametrize("name", KINDS)
def test_every_kind_is_exported_and_derives_from_the_one_base(name):
    kind = getattr(jepa_datamodules, name)
    assert issubclass(kind, JEPADataError) and name in jepa_datamodules.__all__


def test_configuration_errors_stay_value_errors_and_missing_files_file_not_found():
    assert issubclass(ConfigError, ValueError)
    assert issubclass(jepa_datamodules.MissingFilesError, FileNotFoundError)
    with pytest.raises(ValueError, match=r"^batch_size=0 is invalid"):
        CIFAR10DataModule(batch_size=0)


def test_a_message_is_read_in_python_terms_and_keeps_its_facts(tmp_path):
    error = JEPADataError(f"{setting('data_dir', str(tmp_path))} is read-only; point {setting('data_dir')} at a "
                          f"writable folder or run {with_options(action('prepare', 'cifar10'), force=True)}.",
                          setting="data_dir", path=tmp_path, allowed="a writable folder")
    assert str(error) == (f"data_dir='{tmp_path}' is read-only; point data_dir at a writable folder or run "
                          "`prepare_data()` of the cifar10 DataModule with force=True.")
    assert (error.setting, error.path, error.allowed) == ("data_dir", tmp_path, "a writable folder")
    assert "\ue000" not in str(error)  # no mark leaks to a Python caller


def test_verify_actions_are_method_calls_and_text_without_marks_is_unchanged():
    assert render(action("verify", "stl10", {"fold": 3}, full=True)) == \
        "`verify(full=True)` of the stl10 DataModule with fold=3"
    assert render("Valid values are {train, test}.") == "Valid values are {train, test}."


def test_with_options_takes_only_an_action():
    with pytest.raises(TypeError):
        with_options(setting("data_dir"), force=True)


def test_an_error_crosses_processes_with_its_marks_and_facts(tmp_path):
    """A DataLoader worker or a DDP rank sends its error pickled: the console must still be
    able to speak it as overrides, and a VerificationError keep its report."""
    import pickle

    from jepa_datamodules.cli.terms import HydraTerms, console_text

    error = ConfigError(f"{setting('seed', None)} is invalid", setting="seed", allowed="an integer")
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is ConfigError and str(again) == "seed=None is invalid" == repr(again)[len("ConfigError('"):-2]
    assert console_text(again, HydraTerms()) == "seed=null is invalid" and again.allowed == "an integer"
    report = CIFAR10DataModule(data_dir=tmp_path).verify()
    failed = pickle.loads(pickle.dumps(jepa_datamodules.VerificationError(report)))
    assert failed.report.dataset == "cifar10" and "jepa-prepare data=cifar10" in console_text(failed, HydraTerms())
