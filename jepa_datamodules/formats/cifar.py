"""CIFAR-10 / CIFAR-100 "python version": pickled batches of uint8 rows -> one array source.

::

    cifar-10-batches-py/data_batch_1 .. data_batch_5, test_batch     (CIFAR-10)
    cifar-100-python/train, test                                     (CIFAR-100)

Each batch is a protocol-2 pickle of a dict: ``data`` (N x 3072 uint8: the red 32x32 plane,
then green, then blue) and the labels (``labels``; CIFAR-100: ``fine_labels`` and
``coarse_labels``). Format option: ``label_type`` (CIFAR-100's granularity, as the spec's
``label_keys`` name them).
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from ..catalog import DatasetSpec
from ..choices import check_choice
from ..errors import FormatError, action, setting
from .base import ArraySource
from .dataset import Dataset

# The CIFAR "python version" batches are pickles of a dict holding a uint8 array, lists
# of ints and byte strings. Unpickling can run arbitrary code, so only the globals that
# such a file needs to rebuild a numpy array are admitted.
_CIFAR_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # how Python 3 spells a byte string in protocol-2 pickles
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _CIFAR_PICKLE_GLOBALS:
            raise FormatError(
                f"{self.source_name} refers to '{module}.{name}', which a CIFAR batch never contains; "
                "refusing to unpickle it (the file is corrupt or was tampered with: delete it and prepare the dataset "
                "again).", path=self.source_name
            )
        return super().find_class(module, name)


def load_cifar_pickle(path: Path) -> dict[str, Any]:
    """Read one CIFAR batch with the restricted unpickler; keys come back as ``str``."""
    with open(path, "rb") as handle:
        unpickler = _RestrictedUnpickler(io.BufferedReader(handle), encoding="latin1")
        unpickler.source_name = str(path)
        try:
            content = unpickler.load()
        except FormatError:
            raise
        except Exception as error:  # truncated or garbage bytes
            raise FormatError(f"{path} is not a readable CIFAR batch ({error}).", path=path) from error
    if not isinstance(content, dict):
        raise FormatError(f"{path} holds a {type(content).__name__}, not the dict a CIFAR batch is.", path=path)
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in content.items()}


class CifarDataset(Dataset):
    """CIFAR-10/100 on disk; option ``label_type`` (CIFAR-100: ``"fine"`` or ``"coarse"``, as the
    spec's ``label_keys`` name them). The spec stays the one of the files, so a copy verified
    with fine labels is trusted with coarse ones too."""

    def __init__(self, spec: DatasetSpec, data_dir: Any, *, label_type: str = "fine", **rest: Any):
        check_choice("label_type", label_type, spec.options["label_keys"])
        super().__init__(spec, data_dir, **rest)
        self.options = {"label_type": label_type}

    @property
    def num_classes(self) -> int:
        """The spec's ``num_classes`` for fine labels; ``options["num_classes"][label_type]`` for others (coarse: 20)."""
        label_type = self.options["label_type"]
        if label_type == "fine":
            return self.spec.num_classes
        return self.spec.options["num_classes"][label_type]


def dataset_type(spec: DatasetSpec) -> type[Dataset]:
    return CifarDataset


def class_names(spec: DatasetSpec, folder: Path, label_type: str = "fine") -> list[str] | None:
    """The names in the meta batch (``batches.meta``' ``label_names``; CIFAR-100's ``meta``:
    ``fine_label_names`` or ``coarse_label_names``), in label order; None where it has none."""
    if not (folder / spec.data_root / spec.options["meta_file"]).is_file():
        return None
    meta = load_cifar_pickle(folder / spec.data_root / spec.options["meta_file"])
    names = meta.get(spec.options["class_names_key"][label_type])
    return None if names is None else [n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names]


def open_split(spec: DatasetSpec, folder: Path, split: str, label_type: str = "fine") -> ArraySource:
    """CIFAR-10/100 ``train`` or ``test`` as one ``(N, 32, 32, 3)`` uint8 array."""
    files = spec.options[f"{split}_files"]
    label_key = spec.options["label_keys"][label_type]
    images, labels = [], []
    for name in files:
        batch = load_cifar_pickle(folder / spec.data_root / name)
        data = np.asarray(batch["data"], dtype=np.uint8)
        # Rows are 3072 bytes: the red 32x32 plane, then green, then blue.
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        if label_key not in batch:
            raise FormatError(f"{folder / spec.data_root / name} has no {label_key} (it has "
                              f"{', '.join(sorted(k for k in batch if k.endswith('labels')))}), which "
                              f"{setting('label_type', label_type)} reads; use a {setting('label_type')} its file "
                              f"holds, or run {action('prepare', spec.name, force=True)} if the file is damaged.",
                              setting="label_type", path=folder / spec.data_root / name)
        labels.append(np.asarray(batch[label_key], dtype=np.int64))
    source = ArraySource(np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels))
    source.label_files = [folder / spec.data_root / name for name in files]
    return source
