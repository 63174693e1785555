"""``evaluation/metrics.py``: the numbers jepa-eval prints: weighted kNN, the logistic-regression
probe, the Wilson interval, chance and per-class accuracy."""

from __future__ import annotations

import math

import pytest
import torch

from jepa_datamodules.evaluation.metrics import (
    accuracy_report, knn_predict, train_linear_probe, wilson_interval,
)


def _clusters(n_per_class: int, classes: int, dim: int, spread: float, seed: int):
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=generator) * 3
    labels = torch.arange(classes).repeat_interleave(n_per_class)
    return centres[labels] + spread * torch.randn(len(labels), dim, generator=generator), labels


@pytest.mark.parametrize("standardize", [True, False])
def test_knn_classifies_separated_clusters_and_votes_by_similarity(standardize):
    train, train_labels = _clusters(30, 5, 16, 0.5, seed=0)
    test, test_labels = _clusters(10, 5, 16, 0.5, seed=0)
    predictions = knn_predict(train, train_labels, test + 0.1, 5, k=10, temperature=0.07, standardize=standardize)
    assert (predictions == test_labels).float().mean() > 0.95
    # One close neighbour of class 1 outweighs two far ones of class 0 at a low temperature.
    bank = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.1, 1.0]])
    query = torch.tensor([[0.95, 0.05]])
    assert knn_predict(bank, torch.tensor([1, 0, 0]), query, 2, k=3, temperature=0.01, standardize=False).item() == 1
    with pytest.raises(ValueError, match=r"^k=0 is invalid; allowed is a positive whole number"):
        knn_predict(train, train_labels, test, 5, k=0)


def test_linear_probe_learns_what_is_linearly_separable_and_not_noise():
    features, labels = _clusters(40, 4, 8, 1.0, seed=1)
    test, test_labels = _clusters(20, 4, 8, 1.0, seed=1)
    probe = train_linear_probe(features, labels, 4, epochs=30, seed=0)
    with torch.no_grad():
        assert (probe(test).argmax(1) == test_labels).float().mean() > 0.9
    noise = torch.randn(160, 8, generator=torch.Generator().manual_seed(2))
    probe = train_linear_probe(noise[:120], labels[:120], 4, epochs=30)
    with torch.no_grad():
        assert (probe(noise[120:]).argmax(1) == labels[120:]).float().mean() < 0.6


def test_wilson_interval_and_report():
    low, high = wilson_interval(50, 100)  # the textbook example: 0.404 .. 0.596
    assert math.isclose(low, 0.4038, abs_tol=1e-4) and math.isclose(high, 0.5962, abs_tol=1e-4)
    assert wilson_interval(0, 20)[0] == 0.0 and wilson_interval(20, 20)[1] == 1.0
    report = accuracy_report(torch.tensor([0, 1, 1, 2, 2, 0]), torch.tensor([0, 1, 2, 2, 2, 2]), 4)
    assert report["top1"] == 4 / 6 and report["correct"] == 4 and report["n"] == 6
    assert report["chance"] == 4 / 6  # the most frequent class, 2, is 4 of 6
    assert report["per_class"] == [1.0, 1.0, 0.5, None]
