"""Ranking metrics against values worked out by hand, ties included.

pairwise_accuracy and hamming_distance are NAO's predictor and decoder metrics (renqianluo/NAO_pytorch
NAO_V1/utils.py: a pair counts when both lists order it ">=" or both "<"); kendall_tau is tau-b.
"""

from __future__ import annotations

import math

import pytest

from naslab.rank_agreement import hamming_distance, kendall_tau, pairwise_accuracy

# Two lists with a tie in each: truth ties items 1 and 2, predicted ties items 2 and 3.
TRUTH = [1.0, 2.0, 2.0, 3.0]
PREDICTED = [1.0, 3.0, 2.0, 2.0]


def test_pairwise_accuracy_by_hand_with_ties() -> None:
    # pairs (i, j), i < j: truth order / predicted order
    # (0,1) < / <  same   (0,2) < / <  same   (0,3) < / <  same
    # (1,2) >= / >= same  (1,3) < / >= differ (2,3) < / >= differ (2 >= 2 counts as ">=")
    assert pairwise_accuracy(TRUTH, PREDICTED) == pytest.approx(4 / 6)
    assert pairwise_accuracy([1, 2, 3], [3, 2, 1]) == 0.0
    assert pairwise_accuracy([1, 2, 3], [10, 20, 30]) == 1.0
    assert math.isnan(pairwise_accuracy([1.0], [2.0]))
    with pytest.raises(ValueError, match="equal lengths"):
        pairwise_accuracy([1, 2], [1, 2, 3])


def test_kendall_tau_b_by_hand_with_ties() -> None:
    # concordant: (0,1) (0,2) (0,3) = 3; discordant: (1,3) = 1; tied in truth only: (1,2); in predicted only: (2,3)
    # tau-b = (C - D) / sqrt((C + D + T_truth) (C + D + T_predicted)) = 2 / sqrt(5 * 5)
    assert kendall_tau(TRUTH, PREDICTED) == pytest.approx(0.4)
    # without ties tau-b is tau-a: (C - D) / n(n-1)/2; [1,2,3,4] vs [2,1,3,4]: C = 5, D = 1
    assert kendall_tau([1, 2, 3, 4], [2, 1, 3, 4]) == pytest.approx(4 / 6)
    # and pairwise accuracy is then (tau + 1) / 2
    assert pairwise_accuracy([1, 2, 3, 4], [2, 1, 3, 4]) == pytest.approx((4 / 6 + 1) / 2)
    assert math.isnan(kendall_tau([1.0], [1.0]))


def test_hamming_distance_is_the_mean_count_of_differing_positions() -> None:
    assert hamming_distance([[0, 1, 2], [1, 1, 1]], [[0, 2, 2], [0, 0, 0]]) == pytest.approx((1 + 3) / 2)
    assert hamming_distance([[4, 4]], [[4, 4]]) == 0.0
    assert math.isnan(hamming_distance([], []))
    with pytest.raises(ValueError, match="equal shapes"):
        hamming_distance([[0, 1]], [[0, 1, 2]])
