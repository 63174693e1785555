"""Which samples form which batch, on which rank, in which epoch.

``EpochBatchSampler`` hands the DataLoader whole batches (``BatchKey``) rather than
single indices, so a loader worker builds a complete batch and the collate function
knows (epoch, batch index, rank) -- which is what seeds the masks and augmentations.
Consequences a user can rely on:

* Every rank gets a disjoint shard of a per-epoch permutation (seeded by seed + epoch),
  and all ranks get the same number of batches, so DDP never hangs at epoch end.
* Random draws depend on (seed, epoch, batch, rank, sample), never on the number of
  workers or on which worker ran, so a run is reproducible and resumable.
* ``start_batch`` lets a resumed run continue mid-epoch without repeats or skips, even when
  the trainer's epoch count differs from the stream's (``resume_at``).
* A loop that never calls ``set_epoch`` (lightly's examples, most hand-written loops) still
  gets a new order, new views and new masks each epoch: every pass after the first that has
  no ``set_epoch`` (or ``resume_at``) before it is the next epoch. A Trainer's own
  ``set_epoch`` calls and resume positions decide wherever they are made.

Block-aware order (``order="blocks"``): a source whose items are cheap to read in groups
(a parquet row group, a LitData chunk) declares them as ``blocks``, one block id per item.
Each epoch then permutes the blocks (seeded by seed + epoch), lays their items end to end,
cuts that sequence into one contiguous share per rank (so a block is read by one rank, save
at most one at each share's edge), and shuffles the items inside each window of
``window`` consecutive blocks of a share (seeded by seed + epoch + rank). A loader worker
thus needs about ``window`` blocks at a time instead of one block per item, and a batch
still mixes items of ``window`` blocks. Every guarantee above holds in both orders:
each index at most once per epoch (the same padding rule), equal batch counts per rank,
disjoint ranks, order independent of the workers, a new order every epoch, exact resume.
This is the idea of FFCV's quasi-random order, LitData's chunk shuffling and WebDataset's
shard shuffling, with the order still a pure function of (seed, epoch, rank).

It subclasses ``DistributedSampler`` so that Lightning recognises it as already
distributed and does not wrap it in a sampler of its own.

``EpochDataLoader`` is the DataLoader that goes with it. It reads the sampler only when
the first batch is asked for: Lightning creates the loader's iterator *before* it calls
``set_epoch`` (and loader workers fetch ahead as soon as an iterator exists), so an eager
iterator would start a resumed run in the wrong epoch. It also exposes the stream
position through ``state_dict`` / ``load_state_dict``, so Lightning treats it as
resumable and applies the saved position before the first batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler
from ..errors import ConfigError


@dataclass(frozen=True)
class BatchKey:
    """What a loader worker needs to build one batch deterministically."""

    indices: tuple[int, ...]
    epoch: int
    batch_index: int
    rank: int
    #: Blocks the next few batches of this rank need, in order of need (``lookahead``).
    upcoming: tuple[int, ...] = ()


def mix_seed(*parts: int) -> int:
    """A 63-bit seed that depends on every part (numpy's SeedSequence hashing)."""
    state = np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts] + [len(parts)]).generate_state(2, np.uint32)
    return int(state[0]) << 31 ^ int(state[1])


def seeded_generator(*parts: int) -> torch.Generator:
    generator = torch.Generator()
    generator.manual_seed(mix_seed(*parts))
    return generator


#: The orders a shuffled sampler can follow (see the module docstring).
ORDERS = ("full", "blocks")


class EpochBatchSampler(DistributedSampler):
    """Batches of indices for one rank; see the module docstring.

    ``shuffle=True`` permutes the dataset each epoch: the whole of it (``order="full"``) or
    block by block (``order="blocks"``, with ``blocks`` the block id of every item and
    ``window`` the blocks mixed together); ``drop_last=True`` drops the incomplete final
    batch (and, across ranks, the remainder that cannot be split evenly); with
    ``drop_last=False`` the permutation is padded by wrapping around (at most
    ``num_replicas - 1`` items) so every rank gets the same number of batches.
    ``lookahead``: how many batches ahead each batch names the blocks they need
    (``BatchKey.upcoming``), so a source can fetch them before they are asked for.
    """

    def __init__(self, num_samples: int, batch_size: int, *, shuffle: bool, drop_last: bool, seed: int = 0,
                 num_replicas: int = 1, rank: int = 0, order: str = "full", blocks: np.ndarray | None = None,
                 window: int = 8, lookahead: int = 0):
        # DistributedSampler.__init__ insists on a process group; this sampler takes its
        # world explicitly, so the parent is only used as a type Lightning recognises.
        if batch_size <= 0:
            raise ConfigError(f"batch_size={batch_size} is invalid; allowed is a positive integer.",
                              setting="batch_size", allowed="a positive integer")
        if not 0 <= rank < num_replicas:
            raise ConfigError(f"rank={rank} is outside 0..{num_replicas - 1}.")
        self.dataset_size = int(num_samples)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = int(seed)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        if order not in ORDERS:
            raise ConfigError(f"Unknown value '{order}' for argument order. Valid values are {{{', '.join(ORDERS)}}}.",
                              allowed=ORDERS)
        if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window <= 0:
            raise ConfigError(f"shuffle_window={window} is invalid; allowed is a positive integer (blocks mixed together).",
                              setting="shuffle_window", allowed="a positive integer")
        if order == "blocks" and blocks is None:
            raise ConfigError("order='blocks' needs the block id of every item; this source declares no blocks.")
        if blocks is not None and len(blocks) != self.dataset_size:
            raise ConfigError(f"blocks has {len(blocks)} entries for {self.dataset_size} items; allowed is one block id per item.")
        self.order = order
        self.window = int(window)
        self.lookahead = int(lookahead)
        self.blocks = None if blocks is None else np.asarray(blocks, dtype=np.int64)
        self._groups: list[np.ndarray] | None = None
        self.epoch = 0
        self.start_batch = 0
        # Our epoch minus the trainer's, fixed when a resumed run starts (see resume_at).
        self.epoch_offset = 0
        self._resumed = False
        # Whether a pass has run, and whether set_epoch / resume_at said where the next one is.
        self._passes = 0
        self._epoch_given = False

    def resume_at(self, epoch: int, next_batch: int) -> None:
        """Continue the stream at ``next_batch`` of ``epoch``, whatever epoch the trainer counts.

        When ``max_steps`` ends a run mid-epoch, Lightning counts that epoch as finished and
        starts the next one on resume; the stream position recorded by the DataModule wins:
        the next ``set_epoch`` (Lightning's first epoch after the resume) fixes the offset
        between its epoch numbers and ours, so no batch is skipped or repeated.
        """
        self.epoch, self.start_batch = int(epoch), int(next_batch)
        self._resumed = True
        self._epoch_given = True

    def set_epoch(self, epoch: int) -> None:
        self._epoch_given = True
        if self._resumed:
            self._resumed = False
            self.epoch_offset = self.epoch - int(epoch)
            return
        epoch = int(epoch) + self.epoch_offset
        if epoch != self.epoch:
            self.start_batch = 0
        self.epoch = epoch

    def batches_per_epoch(self) -> int:
        per_rank = self.dataset_size / self.num_replicas
        if self.drop_last:
            return int(per_rank) // self.batch_size
        return math.ceil(math.ceil(per_rank) / self.batch_size)

    def __len__(self) -> int:
        # The whole epoch, even when resuming at ``start_batch``: Lightning restores its own
        # count of the batches already run and ends the epoch when that count reaches len().
        return self.batches_per_epoch()

    def _kept(self, order: np.ndarray) -> np.ndarray:
        """``order`` cut (``drop_last``) or wrapped around to the items all ranks share evenly."""
        if self.drop_last:
            return order[:self.batches_per_epoch() * self.batch_size * self.num_replicas]
        total = math.ceil(self.dataset_size / self.num_replicas) * self.num_replicas
        return np.resize(order, total)  # wrap around: pads with the first items

    def epoch_order(self, epoch: int) -> np.ndarray:
        """This rank's indices for ``epoch``, in order."""
        if self.shuffle and self.order == "blocks":
            return self._block_order(epoch)
        if self.shuffle:
            order = np.random.default_rng(mix_seed(self.seed, epoch, 0x5A3)).permutation(self.dataset_size)
        else:
            order = np.arange(self.dataset_size)
        # Strided sharding keeps every rank's share a uniform sample of the permutation.
        return self._kept(order)[self.rank::self.num_replicas]

    def _block_order(self, epoch: int) -> np.ndarray:
        """Blocks permuted, dealt to ranks as contiguous shares, items mixed within windows of blocks."""
        if self._groups is None:
            by_block = np.argsort(self.blocks, kind="stable")
            _, starts = np.unique(self.blocks[by_block], return_index=True)
            self._groups = np.split(by_block, starts[1:])
        groups = self._groups
        permuted = np.random.default_rng(mix_seed(self.seed, epoch, 0xB10C)).permutation(len(groups))
        sequence = np.concatenate([groups[b] for b in permuted]) if groups else np.zeros(0, dtype=np.int64)
        position = np.repeat(np.arange(len(groups)), [len(groups[b]) for b in permuted])  # block's place in the order
        sequence, position = self._kept(sequence), self._kept(position)
        share = len(sequence) // self.num_replicas
        mine = slice(self.rank * share, (self.rank + 1) * share)
        sequence, window = sequence[mine], position[mine] // self.window
        mixing = np.random.default_rng(mix_seed(self.seed, epoch, self.rank, 0x3A1)).random(len(sequence))
        return sequence[np.lexsort((mixing, window))]

    def __iter__(self):
        if self._passes and not self._epoch_given:  # a new pass with no set_epoch: the next epoch
            self.epoch, self.start_batch = self.epoch + 1, 0
        self._passes, self._epoch_given = self._passes + 1, False
        self._resumed = False  # iterating without a set_epoch first: epochs count from here as given
        order = self.epoch_order(self.epoch)
        start, self.start_batch = self.start_batch, 0
        size = self.batch_size
        for batch_index in range(start, self.batches_per_epoch()):
            chunk = order[batch_index * size:(batch_index + 1) * size]
            if len(chunk) == 0:
                break
            upcoming: tuple[int, ...] = ()
            if self.lookahead and self.blocks is not None:
                ahead = self.blocks[order[(batch_index + 1) * size:(batch_index + 1 + self.lookahead) * size]]
                upcoming = tuple(int(b) for b in dict.fromkeys(ahead.tolist()))
            yield BatchKey(tuple(int(i) for i in chunk), self.epoch, batch_index, self.rank, upcoming)


class EpochDataLoader(DataLoader):
    """A ``DataLoader`` over an ``EpochBatchSampler`` whose iteration starts lazily.

    ``position`` returns ``{"epoch", "next_batch"}`` of the last batch *delivered* to
    training (the DataModule records it on delivery, because workers prefetch ahead);
    without it, ``state_dict`` reports where the sampler would start.
    """

    def __init__(self, *args: Any, position: Callable[[], dict[str, int]] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if not isinstance(self.sampler, EpochBatchSampler):
            raise ConfigError(f"EpochDataLoader needs an EpochBatchSampler, got {type(self.sampler).__name__}.")
        self.position = position

    def __iter__(self) -> Iterator[Any]:
        return _DeferredIterator(self)

    def state_dict(self) -> dict[str, int]:
        if self.position is not None:
            state = self.position()
            return {"epoch": int(state["epoch"]), "next_batch": int(state["next_batch"])}
        return {"epoch": self.sampler.epoch, "next_batch": self.sampler.start_batch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Start at ``state["next_batch"]`` of ``state["epoch"]`` (see ``EpochBatchSampler.resume_at``)."""
        self.sampler.resume_at(state["epoch"], state["next_batch"])


class _DeferredIterator:
    """Creates the real DataLoader iterator (workers, prefetching) on the first ``next``."""

    def __init__(self, loader: EpochDataLoader):
        self.loader = loader
        self.iterator: Iterator[Any] | None = None

    def __iter__(self) -> _DeferredIterator:
        return self

    def __len__(self) -> int:
        return len(self.loader)

    def __next__(self) -> Any:
        if self.iterator is None:
            self.iterator = DataLoader.__iter__(self.loader)
        return next(self.iterator)
