"""``pipeline/sampling.py``: a resumed stream (``resume_at``) that is iterated without a ``set_epoch``
first, as a plain loop does, has used up its resume: the next ``set_epoch`` moves on to that epoch,
it does not take it for the trainer's first epoch after a resume and replay the resumed one."""

from __future__ import annotations

from jepa_datamodules.pipeline.sampling import EpochBatchSampler


def test_iterating_after_resume_at_ends_the_resumed_state():
    sampler = EpochBatchSampler(40, 4, shuffle=True, drop_last=True, seed=3)
    sampler.resume_at(2, 7)
    rest = list(sampler)
    assert [(key.epoch, key.batch_index) for key in rest] == [(2, 7), (2, 8), (2, 9)]
    sampler.set_epoch(3)
    following = list(sampler)
    assert [(key.epoch, key.batch_index) for key in following] == [(3, b) for b in range(10)]
    fresh = EpochBatchSampler(40, 4, shuffle=True, drop_last=True, seed=3)
    fresh.set_epoch(3)
    assert [key.indices for key in following] == [key.indices for key in fresh]
