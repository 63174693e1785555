"""The probe's "above chance" verdict: its p-value is P(X >= correct) for X ~ Binomial(n,
chance), checked against an exact rational computation (no scipy needed)."""

from __future__ import annotations

from fractions import Fraction
from math import comb

import pytest

from jepa_datamodules.cli.fitting import binomial_tails, chance_verdict


def _exact_tail(n: int, p: Fraction, k: int) -> float:
    return float(sum(comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(k, n + 1)))


@pytest.mark.parametrize("n, chance, correct", [(20, Fraction(1, 10), 4), (20, Fraction(1, 10), 0),
                                                (50, Fraction(1, 4), 20), (10, Fraction(1, 2), 10),
                                                (300, Fraction(1, 100), 9)])
def test_p_value_is_the_chance_of_at_least_as_many_correct(n, chance, correct):
    verdict = chance_verdict(correct / n, n, float(chance))
    assert verdict["p_value"] == pytest.approx(_exact_tail(n, chance, correct), rel=1e-9)
    assert binomial_tails(n, float(chance))[correct] == pytest.approx(_exact_tail(n, chance, correct), rel=1e-9)


def test_needed_is_the_smallest_accuracy_whose_p_value_passes():
    n, chance = 100, Fraction(1, 10)
    needed = chance_verdict(0.1, n, float(chance))["needed"]
    k = round(needed * n)
    assert _exact_tail(n, chance, k) <= 0.01 < _exact_tail(n, chance, k - 1)
    assert chance_verdict(k / n, n, 0.1)["above"] and not chance_verdict((k - 1) / n, n, 0.1)["above"]
