"""EPNAS's sampling law: K architectures drawn by predicted score, sharpened or flattened by a temperature.

EPNAS (arXiv:1808.00391, Sec. 3) relaxes PNAS's greedy top-K: from the surrogate's predictions s_i, the
normalised p_i = s_i / sum_j s_j is turned into the sampling probability p_i^(1/tau) / sum_j p_j^(1/tau),
"with temperature tau decaying quickly to one as the number of iterations increases": a high tau
explores (tau -> infinity is uniform), tau = 1 samples in proportion to the predictions, and tau -> 0
is PNAS's greedy choice. Computed in log space, so tiny temperatures do not underflow.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def sampling_probabilities(predictions: Sequence[float], tau: float) -> np.ndarray:
    """p_i^(1/tau) / sum_j p_j^(1/tau) for p = predictions / sum(predictions).

    Predictions must be >= 0 (the surrogate's sigmoid outputs); zeros are never drawn unless every
    prediction is zero, which gives the uniform law.
    """
    p = np.asarray(predictions, dtype=np.float64)
    if p.ndim != 1 or len(p) == 0:
        raise ValueError(f"sampling needs a non-empty list of predictions, got shape {p.shape}")
    if not np.all(np.isfinite(p)) or np.any(p < 0):
        raise ValueError("predictions must be finite and >= 0 (predicted accuracies)")
    if not tau > 0:
        raise ValueError(f"the sampling temperature must be > 0, got {tau}")
    if not p.any():
        return np.full(len(p), 1.0 / len(p))
    with np.errstate(divide="ignore"):
        logits = np.log(p / p.sum()) / tau  # normalising first changes nothing but keeps the logs small
    logits -= logits.max()
    weights = np.exp(logits)
    return weights / weights.sum()


def temperature_sample(predictions: Sequence[float], k: int, tau: float, rng: np.random.Generator) -> np.ndarray:
    """Indices of `k` distinct candidates drawn without replacement under `sampling_probabilities`.

    Drawing without replacement is successive draws from the law renormalised over what is left (the
    first draw follows the law exactly). With `k` at least the number of candidates, all of them are
    returned, best predicted first. Candidates of probability 0 (a zero prediction, or one that a tiny
    temperature rounds to 0) come only after every other one, best predicted first, so tau -> 0 is
    exactly the greedy top-k.
    """
    probabilities = sampling_probabilities(predictions, tau)
    n = len(probabilities)
    if k < 0:
        raise ValueError(f"cannot sample {k} architectures")
    if k >= n:
        return np.argsort(-np.asarray(predictions, dtype=np.float64), kind="stable")
    drawable = int(np.count_nonzero(probabilities))
    if k <= drawable:
        return rng.choice(n, size=k, replace=False, p=probabilities)
    first = rng.choice(n, size=drawable, replace=False, p=probabilities)
    zero = np.flatnonzero(probabilities == 0)
    rest = zero[np.argsort(-np.asarray(predictions, dtype=np.float64)[zero], kind="stable")][: k - drawable]
    return np.concatenate([first, rest])


def temperature(iteration: int, start: float = 5.0, decay: float = 0.5, end: float = 1.0) -> float:
    """The temperature of progressive iteration `iteration` (0-based): end + (start - end) * decay^iteration.

    EPNAS gives no schedule beyond "decaying quickly to one" (`end` = 1: proportional to the normalised
    predictions) and "fully trusting the surrogate function at the end"; this one starts at `start` and
    halves the distance to `end` each iteration by default (5, 3, 2, 1.5, 1.25 over 5 iterations). An
    `end` below 1 sharpens the last progressions towards the surrogate's top K (tau -> 0 is greedy).
    """
    if not 0 < end <= start or not 0 <= decay < 1:
        raise ValueError(
            f"temperature needs 0 < end <= start and 0 <= decay < 1, got start={start}, end={end}, decay={decay}"
        )
    return end + (start - end) * decay**iteration
