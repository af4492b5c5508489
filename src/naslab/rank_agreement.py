"""How well one ranking of architectures agrees with another (predictor vs measured, shared vs stand-alone).

`pairwise_accuracy` is NAO's predictor metric (NAO arXiv:1808.07233, Sec. 4.1 and the authors' code): the
fraction of unordered pairs that the two score lists put in the same order. Without ties it equals
(Kendall tau + 1) / 2, and `kendall_tau` is scipy's. `shared_ranking.csv` (`search.rank_all`) holds a
weight-sharing search's score of every architecture, for a study report to rank against its table.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import stats


def pairwise_accuracy(truth: Sequence[float], predicted: Sequence[float]) -> float:
    """Fraction of pairs (i < j) ordered alike: both i >= j, or both i < j. NaN for fewer than 2."""
    a, b = np.asarray(truth, dtype=float), np.asarray(predicted, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"pairwise accuracy needs equal lengths, got {a.shape} and {b.shape}")
    if len(a) < 2:
        return float("nan")
    i, j = np.triu_indices(len(a), k=1)
    same = (a[i] >= a[j]) == (b[i] >= b[j])
    return float(same.mean())


def kendall_tau(truth: Sequence[float], predicted: Sequence[float]) -> float:
    """Kendall's tau-b (scipy); NaN for fewer than 2 items or a constant list."""
    if len(truth) < 2:
        return float("nan")
    return float(stats.kendalltau(truth, predicted).statistic)


def hamming_distance(a: Sequence[Sequence[int]], b: Sequence[Sequence[int]]) -> float:
    """Mean number of positions at which paired token sequences differ (NAO's decoder metric)."""
    x, y = np.asarray(a), np.asarray(b)
    if x.shape != y.shape:
        raise ValueError(f"hamming distance needs equal shapes, got {x.shape} and {y.shape}")
    if len(x) == 0:
        return float("nan")
    return float((x != y).sum(axis=1).mean())


SHARED_RANKING_FILE = "shared_ranking.csv"


def write_shared_ranking(path: Path, keys: Sequence[str], readable: Sequence[str], scores: Sequence[float]) -> Path:
    """One row per architecture: its space key, readable form and shared-weight score."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["key", "genotype", "shared_score"])
    writer.writerows(zip(keys, readable, (f"{s:.6f}" for s in scores)))
    path.write_text(out.getvalue())
    return path


def read_shared_ranking(path: str | Path) -> dict[str, float]:
    """key -> shared-weight score from a `shared_ranking.csv`; a one-line error for a malformed file."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    try:
        return {row["key"]: float(row["shared_score"]) for row in rows}
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path} is not a shared ranking (key, genotype, shared_score): {err}") from None
