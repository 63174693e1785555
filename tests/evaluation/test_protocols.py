"""``evaluation/protocols.py``: EvalDataModule's protocols as a user sees them: dataset order, every
item exactly once (also split over ranks), deterministic eval views vs. augmented linear-probe
views, no masks, unlabelled images left out, and one sentence for each bad argument."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jepa_datamodules import EvalDataModule, STL10DataModule, SyntheticDataModule


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """A prepared synthetic dataset: 90 train, 37 test images (37: no batch size divides it)."""
    dm = SyntheticDataModule(data_dir=tmp_path_factory.mktemp("data"), num_train=90, num_test=37, batch_size=8,
                             num_workers=0, progress=False)
    dm.prepare_data()
    return dm


def _epoch(loader, epoch=0):
    loader.sampler.set_epoch(epoch)
    return list(loader)


def test_knn_protocol_reads_both_splits_in_order_once_with_eval_views_and_no_masks(synthetic):
    edm = EvalDataModule(synthetic, protocol="knn", batch_size=8)
    edm.setup()
    for loader, size, split in ((edm.train_dataloader(), 90, "train"), (edm.val_dataloader(), 37, "test")):
        batches = _epoch(loader)
        assert all(set(b) == {"images", "labels", "indices"} for b in batches)  # no masks, nothing else
        indices = torch.cat([b["indices"] for b in batches]).tolist()
        assert indices == list(range(size))  # dataset order, every item once, last batch kept (no drop_last)
        assert [len(b["indices"]) for b in batches][-1] == size - 8 * (size // 8)
        labels = torch.cat([b["labels"] for b in batches]).numpy()
        np.testing.assert_array_equal(labels, synthetic.open_split(split).labels)
        # The DataModule's own eval view (resize + centre crop): the same pixels as its test loader.
        again = _epoch(loader, epoch=3)
        assert all(torch.equal(a["images"], b["images"]) for a, b in zip(batches, again))
    own = next(iter(synthetic.test_dataloader()))
    first = edm.val_dataloader()
    assert torch.equal(next(iter(first))["images"], own["images"])


def test_linear_protocol_augments_and_shuffles_train_but_not_eval(synthetic):
    edm = EvalDataModule(synthetic, protocol="linear", batch_size=8, seed=3)
    knn = EvalDataModule(synthetic, protocol="knn", batch_size=8)
    train0, train1 = _epoch(edm.train_dataloader(), 0), _epoch(edm.train_dataloader(), 1)
    order0 = torch.cat([b["indices"] for b in train0])
    order1 = torch.cat([b["indices"] for b in train1])
    assert sorted(order0.tolist()) == sorted(order1.tolist()) == list(range(90))  # each item once per epoch
    assert order0.tolist() != list(range(90)) and order0.tolist() != order1.tolist()  # reshuffled per epoch
    plain = torch.cat([b["images"] for b in _epoch(knn.train_dataloader())])
    views0 = torch.cat([b["images"] for b in train0])[order0.argsort()]
    views1 = torch.cat([b["images"] for b in train1])[order1.argsort()]
    assert not torch.equal(views0, plain) and not torch.equal(views0, views1)  # random crops + flips, per epoch
    # Same seed, same epoch: the same views (reproducible probe training).
    repeat = torch.cat([b["images"] for b in _epoch(EvalDataModule(synthetic, protocol="linear", batch_size=8,
                                                                   seed=3).train_dataloader(), 0)])
    assert torch.equal(repeat, torch.cat([b["images"] for b in train0]))
    evaluation = [_epoch(edm.val_dataloader(), e) for e in (0, 1)]
    knn_eval = _epoch(knn.val_dataloader())
    for a, b, c in zip(*evaluation, knn_eval):
        assert torch.equal(a["images"], b["images"]) and torch.equal(a["images"], c["images"])


def test_stl10_unlabelled_images_never_enter_an_evaluation_split(served, data_dir):
    server, fakes = served
    dm = STL10DataModule(data_dir=data_dir, mirrors=[server.url], image_size=96, patch_size=8, batch_size=8,
                         num_workers=0, progress=False)  # pre-training reads train+unlabeled (20 + 30)
    dm.prepare_data()
    edm = EvalDataModule(dm, protocol="knn")
    edm.setup()
    assert len(dm.datasets["train"]) == 50 and (dm.datasets["train"].source.labels == -1).sum() == 30
    assert (len(edm.train_source), len(edm.eval_source)) == (20, 10)
    labels = torch.cat([b["labels"] for b in _epoch(edm.train_dataloader())])
    assert len(labels) == 20 and bool((labels >= 0).all())


@pytest.mark.parametrize("kwargs, message", [
    ({"protocol": "finetune"}, "Unknown value 'finetune' for argument protocol. Valid values are {knn, linear}."),
    ({"shots": 0}, "shots=0 is invalid; allowed is a positive whole number"),
    ({"shots": -3}, "shots=-3 is invalid; allowed is a positive whole number"),
    ({"subset": "1percent"}, "subset='1percent' is one of SimCLR's ImageNet-1k label subsets, and synthetic has none"),
    ({"subset": "5percent"}, "Unknown value '5percent' for argument subset. Valid values are {1percent, 10percent}."),
])
def test_bad_arguments_are_one_sentence(synthetic, kwargs, message):
    with pytest.raises(ValueError) as error:
        EvalDataModule(synthetic, **kwargs)
    assert message in str(error.value) and str(error.value).count("\n") == 0
