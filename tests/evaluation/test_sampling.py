"""``evaluation/sampling.py``: ``EvalBatchSampler``'s ranks together read every item of a split
exactly once, whatever the size, batch, world size, shuffle and epoch."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from jepa_datamodules.evaluation.sampling import EvalBatchSampler


@settings(max_examples=60, deadline=None)
@given(size=st.integers(1, 200), batch=st.integers(1, 17), world=st.integers(1, 5), shuffle=st.booleans(),
       epoch=st.integers(0, 3))
def test_ranks_together_read_every_item_exactly_once(size, batch, world, shuffle, epoch):
    seen = []
    for rank in range(world):
        sampler = EvalBatchSampler(size, batch, shuffle=shuffle, seed=1, num_replicas=world, rank=rank)
        sampler.set_epoch(epoch)
        keys = list(sampler)
        assert len(keys) == len(sampler)
        seen += [i for key in keys for i in key.indices]
    assert sorted(seen) == list(range(size))  # no padding duplicates, nothing dropped
