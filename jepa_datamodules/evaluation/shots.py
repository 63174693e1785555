"""Low-shot training sets: exactly N labelled images per class, seeded and stable."""

from __future__ import annotations

import numpy as np

from ..pipeline.sampling import mix_seed
from ..errors import ConfigError, setting

_SHOTS_STREAM = 0x5407


def check_shots(shots: object) -> int | None:
    """``shots`` as an int, or None; anything but a positive whole number is one sentence."""
    if shots is None:
        return None
    if isinstance(shots, bool) or not isinstance(shots, (int, np.integer)) or shots <= 0:
        raise ConfigError(f"{setting('shots', shots)} is invalid; allowed is a positive whole number of labelled "
                          f"images per class (e.g. {setting('shots', 5)}), or {setting('shots', None)} for the whole "
                          "labelled train split.", setting="shots", allowed="a positive whole number or None")
    return int(shots)


def few_shot_indices(labels: np.ndarray, shots: int, seed: int, num_classes: int, what: str = "the train split") -> np.ndarray:
    """Sorted positions of exactly ``shots`` items of each class ``0..num_classes-1`` in ``labels``.

    Each class draws from its own generator, seeded by ``(seed, class)``: a class's pick does
    not depend on the others, the same seed always gives the same subset, another seed
    another one. Items labelled -1 (unlabelled) are never picked. A class with fewer than
    ``shots`` items is refused in one sentence naming it and its count.
    """
    shots = check_shots(shots)
    labels = np.asarray(labels)
    counts = np.bincount(labels[labels >= 0], minlength=num_classes)[:num_classes]
    short = np.flatnonzero(counts < shots)
    if len(short):
        cls = int(short[0])
        raise ConfigError(f"{setting('shots', shots)} needs {shots} labelled images of every class, but class {cls} "
                          f"of {what} has {int(counts[cls])} ({len(short)} class(es) short); allowed is "
                          f"{setting('shots')} <= {int(counts.min())}.", setting="shots",
                          allowed=f"at most {int(counts.min())}")
    picked = []
    for cls in range(num_classes):
        members = np.flatnonzero(labels == cls)
        rng = np.random.default_rng(mix_seed(seed, cls, _SHOTS_STREAM))
        picked.append(rng.choice(members, size=shots, replace=False))
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, dtype=np.int64)
