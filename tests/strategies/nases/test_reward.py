"""NASES's reward (Eq. 1), reward pool normalisation, pool sampling and epsilon-greedy (Liu's NASES paper)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest, chisquare

from naslab.strategies.nases.reward import (
    EPSILON,
    SAMPLES_PER_UPDATE,
    WARMUP_ARCHITECTURES,
    RewardPool,
    explore,
    nases_reward,
)


def test_reward_is_eq_1_and_penalises_the_generalisation_gap() -> None:
    assert nases_reward(0.9, 0.95) == pytest.approx(0.85**3)  # 0.9 - (0.95 - 0.9), cubed
    assert nases_reward(0.8, 0.8) == pytest.approx(0.512)  # no gap: acc_val cubed
    assert nases_reward(0.3, 0.9) == pytest.approx(-0.027)  # overfitting can be negative
    # same validation accuracy, larger gap: less reward; better validation, same gap: more
    assert nases_reward(0.8, 0.99) < nases_reward(0.8, 0.85) < nases_reward(0.85, 0.9)
    with pytest.raises(ValueError, match=r"acc_train must be an accuracy in \[0, 1\], got 93"):
        nases_reward(0.9, 93)
    with pytest.raises(ValueError, match="acc_val"):
        nases_reward(float("nan"), 0.5)


def test_the_papers_constants() -> None:
    assert (WARMUP_ARCHITECTURES, SAMPLES_PER_UPDATE, EPSILON) == (10, 3, 0.1)


def test_pool_normalises_every_reward_against_all_stored_so_far() -> None:
    pool = RewardPool()
    for i, reward in enumerate([0.1, 0.5, 0.3]):
        pool.add([float(i)], reward)
    pool.normalise()
    first = [e.normalised for e in pool.entries]
    assert np.mean(first) == pytest.approx(0.0) and np.std(first) == pytest.approx(1.0)
    assert np.argsort(first).tolist() == [0, 2, 1]  # order of the raw rewards kept
    pool.add([3.0], 0.9)  # a better child arrives: the old entries are re-judged at the next normalise
    assert pool.entries[-1].normalised == 0.0 and [e.normalised for e in pool.entries[:3]] == first
    pool.normalise()
    assert pool.entries[1].normalised < first[1]
    assert [e.reward for e in pool.entries] == [0.1, 0.5, 0.3, 0.9]  # raw rewards are never overwritten
    flat = RewardPool()
    flat.add([0.0], 0.4)
    flat.add([1.0], 0.4)
    flat.normalise()
    assert [e.normalised for e in flat.entries] == [0.0, 0.0]
    with pytest.raises(ValueError, match="finite"):
        pool.add([0.0], float("inf"))


def test_pool_samples_three_distinct_entries_uniformly() -> None:
    pool = RewardPool()
    for i in range(6):
        pool.add([float(i)], i / 10)
    rng = np.random.default_rng(0)
    counts = np.zeros(6)
    for _ in range(3000):
        drawn = pool.sample(rng)
        ids = [int(e.action[0]) for e in drawn]
        assert len(ids) == SAMPLES_PER_UPDATE == len(set(ids))
        counts[ids] += 1
    assert chisquare(counts).pvalue > 1e-3  # each entry equally likely
    small = RewardPool()
    small.add([0.0], 0.1)
    assert len(small.sample(rng)) == 1


def test_epsilon_greedy_explores_ten_percent_of_the_time() -> None:
    rng = np.random.default_rng(1)
    hits = sum(explore(rng) for _ in range(20_000))
    assert binomtest(hits, 20_000, EPSILON).pvalue > 1e-3
    assert binomtest(hits, 20_000, 0.2).pvalue < 1e-6
    assert not any(explore(rng, 0.0) for _ in range(100)) and all(explore(rng, 1.0) for _ in range(100))
    with pytest.raises(ValueError, match="probability"):
        explore(rng, 1.5)


def test_pool_state_round_trip() -> None:
    pool = RewardPool()
    pool.add([0.2, 0.8], 0.3)
    pool.add([0.6, 0.1], 0.7)
    pool.normalise()
    restored = RewardPool()
    restored.load_state_dict(pool.state_dict())
    assert restored.entries == pool.entries
