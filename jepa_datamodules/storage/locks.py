"""One inter-process lock per dataset folder (DDP ranks, parallel jobs, a teammate's run)."""

from __future__ import annotations

from pathlib import Path

import filelock

from .files import lock_path

__all__ = ["dataset_lock"]


def dataset_lock(folder: Path, timeout: float = -1) -> filelock.FileLock:
    """Inter-process lock for one dataset folder; use as ``with dataset_lock(folder): ...``.

    The lock file is ``folder.parent / f".{folder.name}.lock"`` (so deleting or replacing the dataset
    folder does not remove it); the parent folder is created if needed. Not re-entrant: code that
    runs under it (a Dataset's ``build()`` during ``prepare``) must not take it again, or it waits
    for itself.

    Args:
        folder: the dataset folder to protect.
        timeout: seconds to wait when acquiring; default -1 = wait forever. A lock not acquired in
            time raises ``filelock.Timeout``.
    """
    lock = lock_path(Path(folder))
    lock.parent.mkdir(parents=True, exist_ok=True)
    return filelock.FileLock(str(lock), timeout=timeout)
