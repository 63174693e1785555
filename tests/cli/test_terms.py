"""cli/terms.py: the library's marked settings and fixes, spoken as the console's overrides."""

from __future__ import annotations

from jepa_datamodules.cli.terms import COMMAND_KEYS, HydraTerms, console_text
from jepa_datamodules.errors import ConfigError, action, render, setting


def test_a_setting_is_spoken_as_its_override_with_or_without_a_value():
    text = f"point {setting('data_dir')} at a folder, or set {setting('root', '/x')} and {setting('seed', 3)}"
    assert console_text(text, HydraTerms()) == "point paths.data_dir at a folder, or set data.root=/x and seed=3"
    assert render(text) == "point data_dir at a folder, or set root='/x' and seed=3"


def test_a_conversion_is_spoken_as_jepa_prepare_with_format_litdata():
    fix = action("convert", "cifar10", {"data_dir": "/d"}, force=True)
    assert console_text(fix, HydraTerms()) == \
        "`jepa-prepare data=cifar10 paths.data_dir=/d format=litdata output=<where> force=true`"
    assert render(fix) == "`convert_to_litdata(dm, output)` of the cifar10 DataModule with data_dir='/d', force=True"
    # A dataset the library cannot name stays a placeholder, not a quoted word.
    assert console_text(action("convert", "<name>"), HydraTerms()) == \
        "`jepa-prepare data=<name> format=litdata output=<where>`"


def test_a_command_speaks_its_own_settings_by_their_keys():
    error = ConfigError(f"{setting('k', 0)} is invalid; allowed is {setting('shots', None)} or more.")
    assert console_text(error, HydraTerms(keys=COMMAND_KEYS["jepa-eval"])) == \
        "eval.knn.k=0 is invalid; allowed is eval.shots=null or more."
    assert str(error) == "k=0 is invalid; allowed is shots=None or more."
    # Elsewhere a name is the DataModule's.
    assert console_text(error, HydraTerms()).startswith("data.k=0 is invalid")
