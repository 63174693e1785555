"""``cli/fitting.py``: the probe's "above chance" verdict: its p-value is P(X >= correct) for X ~
Binomial(n, chance), checked against an exact rational computation (no scipy needed)."""

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


def test_above_chance_only_when_the_validation_set_supports_it():
    # 3 training steps on the synthetic set: 0.118 on 1,024 images is within chance's spread.
    smoke = chance_verdict(0.118, 1024, 0.1)
    assert not smoke["above"] and 0.01 < smoke["p_value"] < 0.1
    assert smoke["text"].startswith("not distinguishable from chance 0.100 (n=1,024 validation images, one-sided")
    assert 0.118 < smoke["needed"] < 0.13
    # After `make demo` (256 steps): 0.431 on the same 1,024 images is far above it.
    demo = chance_verdict(0.431, 1024, 0.1)
    assert demo["above"] and demo["p_value"] < 1e-6
    assert demo["text"] == "above chance 0.100 (n=1,024 validation images, one-sided binomial p < 0.001)"
    # The same accuracy on 20 images proves nothing.
    assert not chance_verdict(0.2, 20, 0.1)["above"]
    # One image (a small folder's 1 % carve-out): no accuracy can pass, so no threshold above 1 is printed.
    tiny = chance_verdict(1.0, 1, 0.5)
    assert not tiny["above"] and tiny["needed"] is None
    assert tiny["text"].startswith("not tested, too few validation images (n=1; even 1 of 1 right")
