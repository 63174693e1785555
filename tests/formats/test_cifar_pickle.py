"""``formats/cifar.py``: a CIFAR batch file that would run code when unpickled is refused."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from jepa_datamodules.formats.base import FormatError
from jepa_datamodules.formats.cifar import load_cifar_pickle


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_malicious_pickle_is_refused(tmp_path):
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({"data": np.zeros((1, 3072), np.uint8), "labels": [_Exploit()]}, protocol=2))
    with pytest.raises(FormatError, match="refusing to unpickle"):
        load_cifar_pickle(path)
