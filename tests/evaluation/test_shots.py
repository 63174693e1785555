"""``evaluation/shots.py``: shots=N: exactly N labelled train images per class, the same for a seed,
another for another seed, refused in one sentence when a class has fewer; the evaluation split stays
whole."""

from __future__ import annotations

import numpy as np
import pytest

from jepa_datamodules import EvalDataModule, SyntheticDataModule


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    dm = SyntheticDataModule(data_dir=tmp_path_factory.mktemp("data"), num_train=120, num_test=30, batch_size=16,
                             num_workers=0, progress=False)
    dm.prepare_data()
    return dm


def _picked(dm, shots, seed, protocol="knn"):
    edm = EvalDataModule(dm, protocol=protocol, shots=shots, seed=seed)
    edm.setup()
    return edm, edm.train_source.indices.copy()


def test_exactly_n_per_class_stable_for_a_seed_different_for_another(synthetic):
    labels = synthetic.open_split("train").labels
    edm, picked = _picked(synthetic, 3, seed=0)
    assert np.bincount(labels[picked], minlength=10).tolist() == [3] * 10
    assert np.bincount(edm.train_source.labels, minlength=10).tolist() == [3] * 10
    assert len(set(picked.tolist())) == 30 and len(edm.eval_source) == 30  # eval split untouched
    assert np.array_equal(_picked(synthetic, 3, seed=0)[1], picked)  # stable: a new object, the same pick
    assert np.array_equal(_picked(synthetic, 3, seed=0, protocol="linear")[1], picked)  # whatever the protocol
    other = _picked(synthetic, 3, seed=1)[1]
    assert not np.array_equal(other, picked) and np.bincount(labels[other], minlength=10).tolist() == [3] * 10
    # The loader serves exactly those images, each once.
    served = sorted(i for batch in edm.train_dataloader() for i in batch["indices"].tolist())
    assert served == list(range(30))


def test_more_shots_than_a_class_has_is_refused_naming_the_class(synthetic):
    counts = np.bincount(synthetic.open_split("train").labels, minlength=10)
    too_many = int(counts.min()) + 1
    edm = EvalDataModule(synthetic, shots=too_many)
    with pytest.raises(ValueError) as error:
        edm.setup()
    message = str(error.value)
    assert f"shots={too_many} needs {too_many} labelled images of every class, but class {int(counts.argmin())}" in message
    assert f"allowed is shots <= {int(counts.min())}" in message and "\n" not in message
