"""``datamodule/settings.py``: the seed must be an integer, in one sentence."""

from __future__ import annotations

import pytest

from jepa_datamodules import SyntheticDataModule


@pytest.mark.parametrize("seed", [None, "0", 1.5, True])
def test_seed_must_be_an_integer(seed):
    with pytest.raises(ValueError, match=r"seed=.* is invalid; allowed is an integer"):
        SyntheticDataModule(seed=seed)
