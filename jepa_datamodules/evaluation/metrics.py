"""What a frozen-feature evaluation reports: weighted-kNN and logistic-regression top-1,
chance, a binomial confidence interval and per-class accuracy. Pure torch."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from ..errors import ConfigError, setting

#: DINO's eval_knn.py defaults (Caron et al., 2021): 20 neighbours, temperature 0.07.
KNN_K = 20
KNN_TEMPERATURE = 0.07


def check_knn_settings(k: Any, temperature: Any) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
        raise ConfigError(f"{setting('k', k)} is invalid; allowed is a positive whole number of neighbours (DINO uses "
                          "20).", setting="k", allowed="a positive whole number")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ConfigError(f"{setting('temperature', temperature)} is invalid; allowed is a number > 0 (DINO uses "
                          "0.07).", setting="temperature", allowed="a number > 0")


def knn_predict(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor,
                num_classes: int, k: int = KNN_K, temperature: float = KNN_TEMPERATURE,
                standardize: bool = True, chunk: int = 1024) -> torch.Tensor:
    """Weighted kNN on cosine similarity (DINO's ``knn_classifier``): each of the ``k`` nearest
    train features votes for its class with weight ``exp(similarity / temperature)``; returns
    the predicted class of every test feature. ``chunk`` test rows are scored at a time.

    ``standardize`` [True]: first subtract the train features' per-dimension mean and divide
    by their standard deviation, so that no dimension's scale decides the cosine (features
    that concatenate differently scaled parts, such as the tiny JEPA's mean and spread over
    patches: on an 8-step synthetic checkpoint kNN top-1 went from 0.145 to 0.254). False is
    DINO's exact procedure (L2 normalization only).
    """
    check_knn_settings(k, temperature)
    train_features, test_features = train_features.float(), test_features.float()
    if standardize:
        mean, std = train_features.mean(0), train_features.std(0).clamp_min(1e-6)
        train_features = (train_features - mean) / std
        test_features = (test_features - mean.to(test_features.device)) / std.to(test_features.device)
    bank = F.normalize(train_features, dim=1)
    labels = train_labels.to(bank.device)
    k = min(k, len(bank))
    predictions = []
    for start in range(0, len(test_features), chunk):
        queries = F.normalize(test_features[start:start + chunk].float().to(bank.device), dim=1)
        similarity, neighbour = (queries @ bank.T).topk(k, dim=1)
        votes = torch.zeros(len(queries), num_classes, device=bank.device)
        votes.scatter_add_(1, labels[neighbour], (similarity / temperature).exp())
        predictions.append(votes.argmax(1))
    return torch.cat(predictions) if predictions else torch.zeros(0, dtype=torch.long)


def train_linear_probe(features: torch.Tensor, labels: torch.Tensor, num_classes: int, epochs: int = 50,
                       lr: float = 1e-2, weight_decay: float = 1e-4, batch_size: int = 256,
                       seed: int = 0) -> torch.nn.Module:
    """Multinomial logistic regression on frozen ``features`` (on their device): features
    standardized with the train statistics (no learned scale, as MAE's BatchNorm before its
    linear probe), then one linear layer trained with AdamW and a cosine schedule, cross-entropy,
    ``epochs`` passes over shuffled mini-batches. Returns ``standardize -> linear`` as one module."""
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            # batch_size unmarked: on the console a marked batch_size is the DataModule's, not the probe's.
            shown = setting(name, value) if name != "batch_size" else f"batch_size={value!r}"
            raise ConfigError(f"{shown} is invalid; allowed is a positive whole number.", setting=name,
                              allowed="a positive whole number")
    if not lr > 0:
        raise ConfigError(f"{setting('lr', lr)} is invalid; allowed is a number > 0.", setting="lr", allowed="a number > 0")
    device = features.device
    features = features.float()
    mean, std = features.mean(0), features.std(0).clamp_min(1e-6)
    generator = torch.Generator().manual_seed(int(seed))
    linear = torch.nn.Linear(features.shape[1], num_classes).to(device)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(linear.weight.shape, generator=generator) * 0.01)
        linear.bias.zero_()
    probe = torch.nn.Sequential(_Standardize(mean, std), linear)
    optimizer = torch.optim.AdamW(linear.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * math.ceil(len(features) / batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(1, steps))
    labels = labels.to(device)
    for _ in range(epochs):
        order = torch.randperm(len(features), generator=generator).to(device)
        for start in range(0, len(features), batch_size):
            rows = order[start:start + batch_size]
            loss = F.cross_entropy(probe(features[rows]), labels[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    return probe.eval()


class _Standardize(torch.nn.Module):
    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def wilson_interval(correct: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson score interval for a binomial proportion (95 % by default; z = Phi^-1(0.975))."""
    if n <= 0:
        return (float("nan"), float("nan"))
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def chance_level(labels: torch.Tensor, num_classes: int) -> float:
    """What always answering the most frequent class scores on ``labels`` (1 / classes when balanced)."""
    if len(labels) == 0:
        return float("nan")
    return float(torch.bincount(labels.long().cpu(), minlength=num_classes).max()) / len(labels)


def per_class_accuracy(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int) -> list[float | None]:
    """Accuracy of each class (None where the class has no evaluation image)."""
    predictions, labels = predictions.cpu(), labels.cpu()
    totals = torch.bincount(labels, minlength=num_classes)
    hits = torch.bincount(labels[predictions == labels], minlength=num_classes)
    return [float(h) / float(t) if t else None for h, t in zip(hits.tolist(), totals.tolist())]


def accuracy_report(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict[str, Any]:
    """``top1``, ``correct``, ``n``, ``interval`` (Wilson 95 %), ``chance`` and ``per_class``."""
    correct = int((predictions.cpu() == labels.cpu()).sum())
    n = len(labels)
    return {"top1": correct / n if n else float("nan"), "correct": correct, "n": n,
            "interval": list(wilson_interval(correct, n)), "chance": chance_level(labels, num_classes),
            "per_class": per_class_accuracy(predictions, labels, num_classes)}
