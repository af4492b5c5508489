"""Strategies x seeds on a ground-truth table (file 003's protocol, without training anything).

    python benchmarks/table_searches.py <run dir of mode=groundtruth>/groundtruth.jsonl \
        [--space rnn_small] [--seeds 10] [--budget 8] [--strategies random reinforce nao]

Each (strategy, seed) is a `mode=search evaluator=table` run composed from the real config (no data is
read). Per strategy it prints the mean +- std over seeds of the found architecture's table score and of
its rank in the table (1 = the best of the space), the number of seeds that found the best
architecture, and the wall time; the random strategy is the baseline.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from naslab.evaluators.table import ResultTable
from naslab.pipeline import run

CONF = str(Path(__file__).resolve().parents[1] / "conf")


def search(table: Path, space: str, strategy: str, seed: int, budget: int, run_dir: Path) -> dict:
    overrides = [
        "mode=search",
        "logger=none",
        f"space={space}",
        f"strategy={strategy}",
        "evaluator=table",
        f"evaluator.path={table}",
        f"seed={seed}",
        f"search.num_architectures={budget}",
        "search.batch_size=2",
        "dataset=ptb",  # scores are 80 / perplexity; nothing is read
    ]
    if strategy == "nao":
        overrides += ["strategy.epochs=100", "strategy.model.embedding=16", "strategy.model.hidden=32"]
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(run_dir)
    return run(cfg)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("table", type=Path)
    parser.add_argument("--space", default="rnn_small")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--budget", type=int, default=8, help="architectures each search may evaluate")
    parser.add_argument("--strategies", nargs="+", default=["random", "reinforce", "nao"])
    args = parser.parse_args()
    table = ResultTable.load(args.table)
    best = table.ranked()[0]
    print(f"table: {len(table)} architectures; best {best.readable} (mean {best.mean:.4f}); budget {args.budget}")
    print(
        f"{'strategy':10s} {'found score (mean +- std)':>26s} {'rank (mean +- std)':>20s} {'found best':>10s} {'s':>6s}"
    )
    for strategy in args.strategies:
        scores, ranks, start = [], [], time.perf_counter()
        for seed in range(args.seeds):
            with tempfile.TemporaryDirectory() as run_dir:
                results = search(args.table, args.space, strategy, seed, args.budget, Path(run_dir))
            score = results["search"]["best_score"]
            key = next(e.key for e in table.entries.values() if e.values and e.readable == results["genotype"])
            scores.append(score)
            ranks.append(table.rank_of(key))
        print(
            f"{strategy:10s} {np.mean(scores):12.4f} +- {np.std(scores):.4f}   "
            f"{np.mean(ranks):9.2f} +- {np.std(ranks):.2f} {sum(r == 1 for r in ranks):7d}/{args.seeds} "
            f"{time.perf_counter() - start:6.1f}"
        )


if __name__ == "__main__":
    main()
