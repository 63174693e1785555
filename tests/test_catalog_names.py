"""``jepa_datamodules.catalog``: an unknown dataset name lists the valid ones."""

from __future__ import annotations

import pytest

from jepa_datamodules.catalog import get_spec


def test_unknown_dataset_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"Unknown dataset 'cifar11'. Valid values are \{synthetic, cifar10, cifar100"):
        get_spec("cifar11")
