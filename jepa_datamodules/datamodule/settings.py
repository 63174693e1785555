"""The constructor's defaults and the checks and conversions of its arguments that need no dataset."""

from __future__ import annotations

import os
from typing import Any, Mapping

import numpy as np

from ..errors import ConfigError, setting
from ..pipeline.masks import MaskGenerator, MultiBlockMaskGenerator


def _default_mask() -> MaskGenerator:
    """The I-JEPA multi-block recipe, as conf/mask/multiblock.yaml. Generators are never changed
    in place (``with_grid`` returns a copy), so one shared default is safe. Where jsonargparse is
    installed it is a lazy instance, which LightningCLI can write into its config.yaml (a plain
    instance is saved as "Unable to serialize instance ...")."""
    try:
        from jsonargparse import lazy_instance
    except ImportError:
        return MultiBlockMaskGenerator()
    return lazy_instance(MultiBlockMaskGenerator)


DEFAULT_MASK = _default_mask()
#: Where the views may be built (``views_on``) and the training orders (``shuffle``).
VIEWS_ON = ("workers", "device", "auto")
SHUFFLES = ("auto", "full", "blocks")


def plain(value: Any) -> Any:
    """``value`` as built-in types only: str for paths, dict/list for OmegaConf containers."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping) or type(value).__name__ == "DictConfig":
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(plain(v) for v in value)
    if isinstance(value, list) or type(value).__name__ == "ListConfig":
        return [plain(v) for v in value]
    return value


#: The most loader processes ``num_workers=None`` starts: more rarely speeds a JEPA input pipeline up.
DEFAULT_MAX_WORKERS = 8


def fitted_workers() -> int:
    """``num_workers=None``: the CPUs this process may use (its affinity, e.g. a SLURM allocation), at
    most :data:`DEFAULT_MAX_WORKERS`; never more than torch's DataLoader suggests for the machine."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(DEFAULT_MAX_WORKERS, cpus))


def check_seed(seed: Any) -> None:
    """Refuse a seed that is not an integer, in one sentence."""
    # lightning-hydra-template's `seed: null` would otherwise fail much later, in a loader worker.
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ConfigError(f"{setting('seed', seed)} is invalid; allowed is an integer (e.g. {setting('seed', 0)}): it "
                          "seeds the split, the shuffles, the augmentations and the masks.", setting="seed",
                          allowed="an integer")
