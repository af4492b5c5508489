"""Pictures of a search-phase study (Sciuto et al. arXiv:1902.08142): where each seed's find ranks, how the search got
there, and how the ground truth's ranking moves while architectures train.

- `plot_found_ranks` (Fig. 3): every architecture ranked by its true (stand-alone) score from left
  (best) to right; a dot per method at the rank of what each seed found, sized by how many seeds.
- `plot_rank_trajectories`: the true rank of the architecture each search holds (its best so far) against
  the number of architectures evaluated, mean and quartiles over seeds per method (random included);
  rank 1, the best, on top.
- `plot_rank_vs_cost`: the true rank of what each method found (mean and the seeds' spread) against
  its search cost in seconds: which methods buy a better architecture with their compute.
- `plot_rank_evolution` (Appendix C, Fig. 8): one line per architecture, its rank at each validated
  epoch of the ground truth's training, ordered by the final rank.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from naslab.evaluators.table import ResultTable  # noqa: E402
from naslab.plots.canvas import integer_ticks  # noqa: E402
from naslab.studies.study import StudyReport  # noqa: E402


def method_colour(index: int) -> tuple[float, ...]:
    """A distinct colour for up to 20 methods (matplotlib's default cycle repeats after 10)."""
    return plt.get_cmap("tab20")((2 * index) % 20 + (2 * index) // 20 % 2)


def plot_found_ranks(report: StudyReport, path: str | Path) -> Path | None:
    """Fig. 3: true rank of the architecture each seed found, one row per method; None without a table."""
    if report.table is None:
        return None
    size = len(report.table.ranked())
    methods = report.methods
    fig, ax = plt.subplots(figsize=(min(max(6.0, 0.22 * size + 2), 12.0), 0.6 * len(methods) + 1.6))
    for row, method in enumerate(methods):
        counts = Counter(t[1] for t in (report.truth(r) for r in report.runs_of(method)) if t is not None)
        if not counts:
            continue
        ranks = sorted(counts)
        sizes = [60 * counts[r] for r in ranks]
        ax.scatter(ranks, [row] * len(ranks), s=sizes, alpha=0.7, label=method, color=method_colour(row))
        for r in ranks:
            if counts[r] > 1:
                ax.annotate(str(counts[r]), (r, row), ha="center", va="center", fontsize=7)
    ax.set_yticks(range(len(methods)), methods)
    ax.set_xlim(0.5, size + 0.5)
    integer_ticks(ax.xaxis)  # ranks
    ax.set_ylim(-0.7, len(methods) - 0.3)
    ax.invert_yaxis()
    ax.set_xlabel(f"true rank of the found architecture (1 = best of {size}; dot size = seeds)")
    ax.set_title("What each seed found, ranked by stand-alone training")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_rank_vs_cost(report: StudyReport, path: str | Path) -> Path | None:
    """True rank of the found architecture (mean, with every seed as a faint dot) against the search's wall
    time, one colour per method, log-scaled cost; None without a table or any timed run."""
    if report.table is None:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 5.0))
    plotted = False
    for index, method in enumerate(report.methods):
        points = [
            (r.cost_seconds, t[1])
            for r in report.runs_of(method)
            if r.cost_seconds and (t := report.truth(r)) is not None
        ]
        if not points:
            continue
        cost, rank = np.array(points, dtype=float).T
        colour = method_colour(index)
        ax.scatter(cost, rank, s=12, alpha=0.35, color=colour)
        ax.errorbar(
            cost.mean(),
            rank.mean(),
            xerr=cost.std(),
            yerr=rank.std(),
            fmt="o",
            ms=7,
            capsize=3,
            color=colour,
            label=method,
        )
        plotted = True
    if not plotted:
        plt.close(fig)
        return None
    ax.set_xscale("log")
    integer_ticks(ax.yaxis)  # ranks
    ax.invert_yaxis()
    ax.set_xlabel("search cost per run (wall seconds; table lookups: the measured training time; log scale)")
    ax.set_ylabel(f"true rank of the found architecture (1 = best of {len(report.table.ranked())})")
    ax.set_title("What each method found against what it cost (mean +- std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_rank_trajectories(report: StudyReport, path: str | Path) -> Path | None:
    """True rank of the best-so-far architecture against evaluations, per method; None without a table."""
    trajectories = report.rank_trajectories()
    if not trajectories:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for method, seeds in trajectories.items():
        length = max(len(t) for t in seeds)
        # a search that stopped earlier keeps what it had: pad with its last rank
        ranks = np.array([t + [t[-1]] * (length - len(t)) for t in seeds], dtype=float)
        x = np.arange(1, length + 1)
        line = ax.plot(x, ranks.mean(axis=0), marker="o", markersize=3, label=f"{method} ({len(seeds)} seeds)")
        low, high = np.percentile(ranks, [25, 75], axis=0)
        ax.fill_between(x, low, high, alpha=0.12, color=line[0].get_color())
    ax.set_ylim(len(report.table.ranked()) + 0.5 if report.table is not None else None, 0.5)  # rank 1 on top
    integer_ticks(ax.xaxis)  # architectures evaluated
    integer_ticks(ax.yaxis)  # ranks
    ax.set_xlabel("architectures evaluated (the last point: what the search returned)")
    ax.set_ylabel("true rank of the architecture held (mean, quartiles)")
    ax.set_title("How fast each search reaches good architectures")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_rank_evolution(table: ResultTable, path: str | Path, top: int | None = None) -> Path | None:
    """Fig. 8: each architecture's rank at each validated epoch; None when the table has no curves."""
    epochs, entries, ranks = table.rank_evolution()
    if len(epochs) < 2:
        return None
    shown = range(len(entries) if top is None else min(top, len(entries)))
    fig, ax = plt.subplots(figsize=(6.5, max(4.0, 0.16 * len(shown) + 1.5)))
    colours = plt.get_cmap("viridis")(np.linspace(0, 1, len(entries)))
    for i in shown:
        ax.plot(epochs, ranks[i], marker="o", markersize=3, color=colours[i], alpha=0.8)
        ax.annotate(
            entries[i].readable,
            (epochs[-1], ranks[i, -1]),
            xytext=(4, 0),
            textcoords="offset points",
            fontsize=6,
            va="center",
        )
    ax.invert_yaxis()
    integer_ticks(ax.xaxis)  # epochs: whole numbers, as many as fit (not one tick per epoch of a long run)
    integer_ticks(ax.yaxis)  # ranks
    ax.set_xlabel("training epoch")
    ax.set_ylabel(f"rank by mean validation score over seeds (of {len(entries)})")
    ax.set_title("Rank changes while training (ground truth)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
