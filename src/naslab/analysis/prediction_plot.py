"""Predicted vs measured score of the architectures a model-based strategy proposed (NAO, EPNAS).

Whether the predictor can be trusted is the question behind every model-based search; the
scatter answers it at a glance: points on the diagonal, a predictor worth its gradient; a cloud,
a search that is random search with extra steps. One colour per generation shows whether it gets
better as the model sees more data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import matplotlib

from naslab.analysis.canvas import plot_axes
from naslab.analysis.ranking import pairwise_accuracy
from naslab.archive import ArchiveRecord


def predictions(records: Sequence[ArchiveRecord]) -> list[tuple[float, float, int]]:
    """(predicted, measured, generation) of every record whose proposal carried a prediction.

    Strategies store their proposal in `extra[<strategy name>]`; any dict there with a
    "predicted" entry counts, once per architecture (its first score).
    """
    out, seen = [], set()
    for record in records:
        identity = json.dumps(record.genotype, sort_keys=True)
        if record.error is not None or identity in seen:
            continue  # weight sharing re-scores pool members later: the first score follows the prediction
        seen.add(identity)
        for info in record.extra.values():
            if isinstance(info, dict) and "predicted" in info:
                out.append((float(info["predicted"]), record.score, int(info.get("generation", 0))))
    return out


def plot_predicted_vs_measured(records: Sequence[ArchiveRecord], path: str | Path, title: str = "") -> Path | None:
    """Writes the scatter as a PNG; None (and no file) when no record carries a prediction."""
    points = predictions(records)
    if not points:
        return None
    path, fig, ax = plot_axes(path, (4.8, 4.4))
    generations = sorted({g for _, _, g in points})
    colours = matplotlib.colormaps["viridis"]
    for i, generation in enumerate(generations):
        xs = [p for p, _, g in points if g == generation]
        ys = [m for _, m, g in points if g == generation]
        colour = colours(i / max(1, len(generations) - 1))
        ax.scatter(xs, ys, s=16, alpha=0.7, color=colour, label=f"generation {generation}")
    low = min(min(p, m) for p, m, _ in points)
    high = max(max(p, m) for p, m, _ in points)
    ax.plot([low, high], [low, high], color="grey", linestyle="--", linewidth=1, label="predicted = measured")
    accuracy = pairwise_accuracy([m for _, m, _ in points], [p for p, _, _ in points])
    ax.set_xlabel("predicted score")
    ax.set_ylabel("measured score")
    ax.set_title(f"{title} (pairwise accuracy {accuracy:.2f})".strip())
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    return path
