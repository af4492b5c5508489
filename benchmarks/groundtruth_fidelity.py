"""How much a ground-truth table can be trusted: its noise ceiling and its agreement with a 3x budget.

    python benchmarks/groundtruth_fidelity.py --table fmnist_micro_tiny \
        [--higher <3x run dir>/groundtruth.jsonl]

Prints, for the table: architectures, seeds, trials and their cost; how many distinct mean accuracies
there are and the spread of the top 10 (a degenerate table would tie); the Kendall tau between every two
seeds' measurements over all architectures (how well one training run ranks the space: the ceiling any
search is judged against). With `--higher`, a table of a sample of the same architectures trained with
3x the budget (e.g. `experiment=groundtruth_cnn dataset.search.train_batches=120 'groundtruth.seeds=[0,1]'
groundtruth.sample=30 groundtruth.levels=false`): the Kendall tau between the table's means and the 3x
means over that sample, per seed between the two budgets (only the budget differs), and between the 3x
seeds (the higher budget's own noise). docs/results.md quotes the output for the packaged table.
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy import stats

from naslab.evaluators.table import ResultTable


def describe(table: ResultTable) -> list[str]:
    ranked = table.ranked()
    means = np.array([e.mean for e in ranked])
    seeds = sorted({s for e in ranked for s in e.seeds})
    trials = sum(len(e.values) for e in table.entries.values())
    cost = sum(e.cost_seconds for e in table.entries.values())
    taus = table.seed_taus()
    top = means[:10]
    lines = [
        f"table: {table.source}",
        f"architectures: {len(ranked)} complete (+{len(table.entries) - len(ranked)} partial), seeds {seeds}, "
        f"{trials} trials, {cost / 3600:.2f} h of training (sum of trial wall times)",
        f"mean accuracy: best {means[0]:.4f}, median {np.median(means):.4f}, worst {means[-1]:.4f}; "
        f"{len(np.unique(np.round(means, 6)))} distinct means",
        f"top 10: {top[0]:.4f} .. {top[-1]:.4f} (spread {top[0] - top[-1]:.4f}); "
        f"mean seed std of the top 10 {np.mean([e.std for e in ranked[:10]]):.4f}",
        "seed-to-seed Kendall tau: "
        + ", ".join(f"{a} vs {b} {t:.3f}" for (a, b), t in taus.items())
        + (f"; mean {np.mean(list(taus.values())):.3f}" if taus else ""),
    ]
    return lines


def compare(table: ResultTable, higher: ResultTable) -> list[str]:
    """Agreement over the sample: the table's means against the higher budget's means, the same seed at both
    budgets, and the higher budget's own seed-to-seed tau (its noise)."""
    common = [e for e in higher.ranked() if e.key in table.entries and table.entries[e.key].values]
    base_mean = [table.entries[e.key].mean for e in common]
    high_mean = [e.mean for e in common]
    seeds = sorted({s for e in common for s in e.seeds})
    lines = [
        f"higher budget: {len(common)} sampled architectures, seeds {seeds} ({higher.source}); mean accuracy "
        f"{np.mean(base_mean):.4f} -> {np.mean(high_mean):.4f}",
        f"Kendall tau, table mean vs higher-budget mean: {stats.kendalltau(base_mean, high_mean).statistic:.3f}",
    ]
    for seed in seeds:
        base = [table.entries[e.key].value_for(seed) for e in common]
        high = [e.value_for(seed) for e in common]
        lines.append(f"Kendall tau, seed {seed} at both budgets: {stats.kendalltau(base, high).statistic:.3f}")
    for (a, b), tau in higher.seed_taus().items():
        lines.append(f"higher budget's own seed-to-seed tau, {a} vs {b}: {tau:.3f}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", default="fmnist_micro_tiny", help="packaged table name or groundtruth.jsonl")
    parser.add_argument("--higher", default=None, help="groundtruth.jsonl of a 3x-budget sample of the same space")
    args = parser.parse_args()
    table = ResultTable.load(args.table)
    lines = describe(table)
    if args.higher:
        lines += compare(table, ResultTable.load(args.higher))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
