"""Batch buffers that cross from a DataLoader worker to the main process without a copy."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch.utils.data import get_worker_info

__all__ = ["batch_buffer"]


def batch_buffer(shape: Sequence[int], dtype: torch.dtype, shared: bool | None = None) -> torch.Tensor:
    """An uninitialised contiguous tensor of ``shape`` and ``dtype`` on the CPU.

    ``shared``: allocate it in shared memory [None: when called inside a loader worker]. A
    batch written straight into shared memory reaches the main process as it is (as
    ``default_collate`` does it), instead of being copied there once more when it is sent.
    """
    if shared is None:
        shared = get_worker_info() is not None
    nbytes = math.prod(shape) * torch.empty(0, dtype=dtype).element_size()
    storage = torch.UntypedStorage._new_shared(nbytes) if shared else torch.UntypedStorage(nbytes)
    return torch.empty(0, dtype=dtype).set_(storage).view(*shape)
