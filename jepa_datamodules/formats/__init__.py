"""One module per on-disk format: how to read it, write a small copy, and prepare it.

The registry (``READERS``, in ``dataset.py``) maps a spec's ``reader`` to its module. Every
format module has

    open_split(spec, folder, split, **options) -> Source

where ``folder`` is the dataset's folder (``<data_dir>/<name>``) and ``options`` are the
format's own options (CIFAR-100's ``label_type``, STL-10's ``fold``, ...). A module whose
datasets need code beyond reading (generation, ImageNet's devkit, your own folder) also has
``dataset_type(spec)``, the :class:`Dataset` subclass that holds it. Modules are imported on
first use, so that reading CIFAR never imports pyarrow.
"""

from __future__ import annotations

from .dataset import READERS, Dataset, format_module, open_dataset, open_split, verify_dataset

__all__ = ["READERS", "Dataset", "format_module", "open_dataset", "open_split", "verify_dataset"]
