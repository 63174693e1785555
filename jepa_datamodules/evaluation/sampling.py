"""Evaluation order: every item of a split exactly once, over any number of DDP ranks.

Pre-training pads or drops items so that every rank gets as many batches as the others
(``pipeline/sampling.py``); an accuracy measured that way counts some images twice or not
at all. Here rank ``r`` of ``w`` reads items ``r, r + w, r + 2w, ...`` of the (fixed or
per-epoch shuffled) order and nothing else: shards differ by at most one item, and the
union over the ranks is the split, each item once. Evaluation loops need no collective per
step, so uneven batch counts cannot hang a run.
"""

from __future__ import annotations

import math

import numpy as np

from ..pipeline.sampling import EpochBatchSampler, mix_seed

_EVAL_SHUFFLE_STREAM = 0xE7A1


class EvalBatchSampler(EpochBatchSampler):
    """Whole batches of one rank's uneven shard; see the module docstring.

    ``shuffle=False`` (kNN banks, evaluation splits): the dataset order, ``0..N-1``.
    ``shuffle=True`` (the linear protocol's training split): a permutation seeded by
    ``(seed, epoch)``, the same on every rank, then sharded the same way.
    """

    def __init__(self, num_samples: int, batch_size: int, *, shuffle: bool = False, seed: int = 0,
                 num_replicas: int = 1, rank: int = 0):
        super().__init__(num_samples, batch_size, shuffle=shuffle, drop_last=False, seed=seed,
                         num_replicas=num_replicas, rank=rank)

    def shard_size(self) -> int:
        """Items this rank reads per epoch."""
        return len(range(self.rank, self.dataset_size, self.num_replicas))

    def batches_per_epoch(self) -> int:
        return math.ceil(self.shard_size() / self.batch_size)

    def epoch_order(self, epoch: int) -> np.ndarray:
        if self.shuffle:
            order = np.random.default_rng(mix_seed(self.seed, epoch, _EVAL_SHUFFLE_STREAM)).permutation(self.dataset_size)
        else:
            order = np.arange(self.dataset_size)
        return order[self.rank::self.num_replicas]
