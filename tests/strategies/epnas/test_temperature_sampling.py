"""EPNAS's sampling law: frequencies follow p^(1/tau), tau = 1 is proportional, tau -> 0 greedy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from naslab.strategies.epnas.temperature_sampling import sampling_probabilities, temperature, temperature_sample

PREDICTIONS = np.array([0.9, 0.7, 0.5, 0.3, 0.1])


@pytest.mark.parametrize("tau", [0.5, 1.0, 3.0])
def test_draws_follow_the_stated_law(tau: float) -> None:
    """Chi-square goodness of fit of 20,000 single draws against p_i^(1/tau) / sum_j p_j^(1/tau)."""
    rng = np.random.default_rng(0)
    draws = [int(temperature_sample(PREDICTIONS, 1, tau, rng)[0]) for _ in range(20_000)]
    observed = np.bincount(draws, minlength=len(PREDICTIONS))
    p = PREDICTIONS / PREDICTIONS.sum()
    law = p ** (1 / tau) / (p ** (1 / tau)).sum()
    assert stats.chisquare(observed, law * len(draws)).pvalue > 1e-3
    # and the law is not a near miss of another temperature: tau = 1 and tau = 3 differ measurably
    other = p ** (1 / (tau * 2)) / (p ** (1 / (tau * 2))).sum()
    assert stats.chisquare(observed, other * len(draws)).pvalue < 1e-6


def test_tau_one_is_proportional_tau_to_zero_greedy_tau_large_uniform() -> None:
    assert sampling_probabilities(PREDICTIONS, 1.0) == pytest.approx(PREDICTIONS / PREDICTIONS.sum())
    greedy = sampling_probabilities(PREDICTIONS, 1e-4)
    assert greedy[0] == pytest.approx(1.0) and greedy[1:].sum() < 1e-12  # no underflow to NaN either
    assert sampling_probabilities(PREDICTIONS, 1e6) == pytest.approx(np.full(5, 0.2), abs=1e-5)
    rng = np.random.default_rng(1)
    assert sorted(temperature_sample(PREDICTIONS, 2, 1e-4, rng)) == [0, 1]  # the top 2: PNAS's choice


def test_sampling_k_gives_distinct_candidates_and_handles_edges() -> None:
    rng = np.random.default_rng(2)
    chosen = temperature_sample(PREDICTIONS, 3, 2.0, rng)
    assert len(set(chosen.tolist())) == 3
    assert temperature_sample(PREDICTIONS, 9, 2.0, rng).tolist() == [0, 1, 2, 3, 4]  # all, best first
    zeros = np.array([0.0, 0.4, 0.0])
    assert temperature_sample(zeros, 2, 1.0, rng)[0] == 1  # a zero prediction comes only after the rest
    assert sampling_probabilities([0.0, 0.0], 1.0) == pytest.approx([0.5, 0.5])
    for bad, match in (([], "non-empty"), ([0.5, -0.1], ">= 0"), ([0.5, float("nan")], "finite")):
        with pytest.raises(ValueError, match=match):
            sampling_probabilities(bad, 1.0)
    with pytest.raises(ValueError, match="temperature"):
        sampling_probabilities(PREDICTIONS, 0.0)


def test_temperature_decays_towards_one() -> None:
    taus = [temperature(i, start=5.0, decay=0.5) for i in range(5)]
    assert taus == [5.0, 3.0, 2.0, 1.5, 1.25]
    assert temperature(50) == pytest.approx(1.0) and temperature(50) >= 1.0
    with pytest.raises(ValueError):
        temperature(0, start=0.5)
    # an end below 1 sharpens the last progressions towards the greedy top K
    assert [temperature(i, 5.0, 0.25, end=0.1) for i in range(3)] == pytest.approx([5.0, 1.325, 0.40625])
    assert temperature(60, 5.0, 0.25, end=0.1) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="0 < end <= start"):
        temperature(0, 5.0, 0.5, end=0.0)
