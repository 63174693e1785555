"""``pipeline/sampling.py``: the block-aware training order (``order="blocks"``) keeps every promise of
the full permutation: each index at most once per epoch with the same padding rule, equal batch
counts on disjoint ranks, a new order every epoch, a pure function of (seed, epoch, rank); and it
reads few blocks at a time while batches still mix classes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jepa_datamodules.pipeline.sampling import EpochBatchSampler


def blocks_of(sizes: list[int]) -> np.ndarray:
    return np.repeat(np.arange(len(sizes)), sizes)


def max_open_blocks(sequence: np.ndarray) -> int:
    first = {b: i for i, b in reversed(list(enumerate(sequence.tolist())))}
    last = {b: i for i, b in enumerate(sequence.tolist())}
    return max(sum(first[b] <= p < last[b] for b in first) for p in range(0, len(sequence), 7))


def samplers(size, world, batch, drop_last, blocks, window=2, seed=3, order="blocks"):
    return [EpochBatchSampler(size, batch, shuffle=True, drop_last=drop_last, seed=seed, num_replicas=world, rank=r,
                              order=order, blocks=blocks, window=window) for r in range(world)]


def epoch_batches(group, epoch):
    for sampler in group:
        sampler.set_epoch(epoch)
    return [[key.indices for key in sampler] for sampler in group]


@settings(max_examples=150, deadline=None)
@given(sizes=st.lists(st.integers(1, 40), min_size=1, max_size=20), world=st.integers(1, 4),
       batch=st.integers(1, 12), drop_last=st.booleans(), window=st.integers(1, 5), epoch=st.integers(0, 4))
def test_block_order_keeps_the_sampler_guarantees(sizes, world, batch, drop_last, window, epoch):
    blocks = blocks_of(sizes)
    size = len(blocks)
    group = samplers(size, world, batch, drop_last, blocks, window)
    per_rank = epoch_batches(group, epoch)
    assert {len(b) for b in per_rank} == {len(group[0])}  # equal on every rank, and len() tells the truth
    items = [i for batches in per_rank for indices in batches for i in indices]
    if drop_last:
        assert len(items) == len(set(items))
        assert size - len(items) < world * batch
    else:
        assert set(items) == set(range(size))
        assert len(items) - size < world  # the same padding rule as the full permutation
    rank_sets = [{i for indices in batches for i in indices} for batches in per_rank]
    if drop_last:
        for a in range(world):
            for b in range(a + 1, world):
                assert not rank_sets[a] & rank_sets[b]  # disjoint ranks
    # The same (seed, epoch) gives the same order, batch for batch.
    assert epoch_batches(samplers(size, world, batch, drop_last, blocks, window), epoch) == per_rank


def test_each_rank_reads_about_its_window_of_blocks_at_a_time():
    blocks = blocks_of([50] * 40)  # 2,000 items in 40 blocks of 50 (parquet row groups, say)
    for world in (1, 2):
        for sampler in samplers(len(blocks), world, 16, True, blocks, window=4):
            sampler.set_epoch(1)
            order = np.concatenate([np.asarray(k.indices) for k in sampler])
            # What a reader must hold at once: blocks begun and not yet finished. A loader
            # worker's cache of window + 1 blocks therefore reads each block once.
            assert max_open_blocks(blocks[order]) <= 4 + 1
            touched = len(set(blocks[order].tolist()))
            assert touched <= 40 // world + 1  # a rank reads its share of the blocks, not all of them


def test_full_order_touches_every_block_in_every_stretch():
    # The contrast that makes the block order worth having: a full permutation needs nearly
    # one block per item.
    blocks = blocks_of([50] * 40)
    sampler = samplers(len(blocks), 1, 16, True, blocks, order="full")[0]
    sampler.set_epoch(1)
    order = np.concatenate([np.asarray(k.indices) for k in sampler])
    assert max_open_blocks(blocks[order]) > 30


def test_a_new_block_order_every_epoch_and_another_seed_gives_another():
    blocks = blocks_of([10] * 12)
    first = epoch_batches(samplers(120, 2, 8, True, blocks), 0)
    assert first != epoch_batches(samplers(120, 2, 8, True, blocks), 1)
    assert first != epoch_batches(samplers(120, 2, 8, True, blocks, seed=4), 0)


def test_batches_of_a_class_sorted_source_mix_classes():
    # 8 classes stored class after class (an own folder converted in folder order): each
    # block holds one class. A window of 8 blocks puts >= 4 distinct labels in a batch of 64.
    per_class_blocks, block_size = 4, 100
    blocks = blocks_of([block_size] * (8 * per_class_blocks))
    labels = blocks // per_class_blocks
    sampler = samplers(len(blocks), 1, 64, True, blocks, window=8)[0]
    distinct = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        distinct += [len(set(labels[list(key.indices)].tolist())) for key in sampler]
    assert np.mean(distinct) >= 4
    narrow = samplers(len(blocks), 1, 64, True, blocks, window=1)[0]
    narrow.set_epoch(0)
    assert np.mean([len(set(labels[list(k.indices)].tolist())) for k in narrow]) < 2.5  # what a window buys


def test_resume_mid_epoch_continues_the_block_order():
    blocks = blocks_of([7] * 15)
    whole = samplers(105, 1, 5, True, blocks)[0]
    whole.set_epoch(2)
    expected = [k.indices for k in whole]
    resumed = samplers(105, 1, 5, True, blocks)[0]
    resumed.resume_at(2, 9)
    resumed.set_epoch(0)  # the trainer's own epoch count after a resume
    assert [k.indices for k in resumed] == expected[9:]


def test_upcoming_names_the_blocks_the_next_batches_need():
    blocks = blocks_of([6] * 10)
    sampler = EpochBatchSampler(60, 4, shuffle=True, drop_last=True, seed=0, order="blocks", blocks=blocks,
                                window=2, lookahead=2)
    keys = list(sampler)
    for position, key in enumerate(keys[:-2]):
        needed = {int(blocks[i]) for k in keys[position + 1:position + 3] for i in k.indices}
        assert set(key.upcoming) == needed
    assert keys[-1].upcoming == ()


@pytest.mark.parametrize("kwargs, message", [
    (dict(order="blocks", blocks=None), r"order='blocks' needs the block id of every item"),
    (dict(order="chunks", blocks=np.zeros(10)), r"Unknown value 'chunks' for argument order. Valid values are \{full, blocks\}"),
    (dict(order="blocks", blocks=np.zeros(10), window=0), r"shuffle_window=0 is invalid; allowed is a positive integer"),
    (dict(order="blocks", blocks=np.zeros(9)), r"blocks has 9 entries for 10 items"),
])
def test_bad_order_arguments_are_one_sentence(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EpochBatchSampler(10, 2, shuffle=True, drop_last=True, **kwargs)
