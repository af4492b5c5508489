"""Predicted vs measured score of the architectures a model-based strategy proposed (NAO, EPNAS).

Whether the predictor can be trusted is the question behind every model-based search; the
scatter answers it at a glance: points on the diagonal, a predictor worth its gradient; a cloud,
a search that is random search with extra steps. One colour per generation shows whether it gets
better as the model sees more data.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Sequence

import matplotlib
from matplotlib.ticker import FuncFormatter

from naslab.archive import ArchiveRecord
from naslab.plots.canvas import LABEL_FONT, LEGEND_FONT, TICK_FONT, TITLE_FONT, integer_ticks, new_plot, save
from naslab.rank_agreement import pairwise_accuracy

log = logging.getLogger(__name__)

# Up to this many generations get a legend entry each; more get a colour bar.
LEGEND_GENERATIONS = 8


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


def prediction_figure(points: Sequence[tuple[float, float, int]], title: str = "") -> Any:
    """The scatter's Figure (bare Agg canvas) of (predicted, measured, generation) `points` (not empty)."""
    fig, ax = new_plot((6.2, 4.6))
    generations = sorted({g for _, _, g in points})
    colours = matplotlib.colormaps["viridis"]
    span = max(1, len(generations) - 1)
    for i, generation in enumerate(generations):
        xs = [p for p, _, g in points if g == generation]
        ys = [m for _, m, g in points if g == generation]
        label = f"generation {generation}" if len(generations) <= LEGEND_GENERATIONS else None
        ax.scatter(xs, ys, s=16, alpha=0.7, color=colours(i / span), label=label)
    low = min(min(p, m) for p, m, _ in points)
    high = max(max(p, m) for p, m, _ in points)
    ax.plot([low, high], [low, high], color="grey", linestyle="--", linewidth=1, label="predicted = measured")
    if len(generations) > LEGEND_GENERATIONS:  # one legend entry each would not fit: a colour bar, whole numbers
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import BoundaryNorm, ListedColormap

        listed = ListedColormap([colours(i / span) for i in range(len(generations))])
        bounds = [g - 0.5 for g in range(len(generations) + 1)]
        bar = fig.colorbar(ScalarMappable(BoundaryNorm(bounds, listed.N), listed), ax=ax, label="generation")
        integer_ticks(bar.ax.yaxis)
        bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _nth(generations, v)))
        bar.ax.tick_params(labelsize=TICK_FONT)
    accuracy = pairwise_accuracy([m for _, m, _ in points], [p for p, _, _ in points])
    shown = "n/a" if math.isnan(accuracy) else f"{accuracy:.2f}"
    ax.set_xlabel("predicted score", fontsize=LABEL_FONT)
    ax.set_ylabel("measured score", fontsize=LABEL_FONT)
    counted = f"{len(points)} architecture" + ("" if len(points) == 1 else "s")
    ax.set_title(f"{title}: pairwise accuracy {shown}, {counted}".lstrip(": "), fontsize=TITLE_FONT)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=LEGEND_FONT, borderaxespad=0)
    return fig


def _nth(generations: list[int], value: float) -> str:
    """The colour bar's tick at position `value` names the generation drawn in that colour."""
    k = int(round(value))
    return str(generations[k]) if 0 <= k < len(generations) else ""


def plot_predicted_vs_measured(records: Sequence[ArchiveRecord], path: str | Path, title: str = "") -> Path | None:
    """Writes the scatter as a PNG; None (and no file) when no record carries a prediction."""
    points = predictions(records)
    if not points:
        log.info("no architecture carried a prediction: %s not drawn", Path(path).name)
        return None
    return save(prediction_figure(points, title), path)
