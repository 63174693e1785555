"""``pipeline/sampling.py``: ``EpochBatchSampler`` over DDP ranks gives every rank the same
number of batches from one permutation, repeating or dropping only what the padding rule says."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from jepa_datamodules.pipeline.sampling import EpochBatchSampler


@settings(max_examples=200, deadline=None)
@given(size=st.integers(1, 300), world=st.integers(1, 8), batch=st.integers(1, 16), drop_last=st.booleans(),
       epoch=st.integers(0, 5))
def test_every_rank_gets_the_same_number_of_batches_from_one_permutation(size, world, batch, drop_last, epoch):
    samplers = [EpochBatchSampler(size, batch, shuffle=True, drop_last=drop_last, seed=3, num_replicas=world, rank=r)
                for r in range(world)]
    for sampler in samplers:
        sampler.set_epoch(epoch)
    per_rank = [list(s) for s in samplers]
    counts = {len(batches) for batches in per_rank}
    assert counts == {len(samplers[0])}  # equal on every rank, and len() tells the truth
    items = [i for batches in per_rank for key in batches for i in key.indices]
    if drop_last:
        assert len(items) == len(set(items))  # nothing repeated
        assert size - len(items) < world * batch  # only a remainder smaller than one global batch is dropped
    else:
        assert set(items) == set(range(size))  # everything seen; padding repeats < world items
        assert len(items) - size < world
    for rank, batches in enumerate(per_rank):
        assert all(key.rank == rank and key.epoch == epoch for key in batches)
        assert [key.batch_index for key in batches] == list(range(len(batches)))
