"""NAO against random search on a planted score, same budget, several seeds.

    python benchmarks/nao_vs_random.py [--budget 200] [--seeds 0 1 2] [--epochs 200]

Both strategies run through the real search loop (`naslab.search.ask_tell.run_search`) on NAO's space
(B=5, 11 ops) with `naslab.evaluators.planted` as the evaluator, so the comparison is exact and
takes minutes instead of GPU-days. NAO runs Alg. 1 with the paper's proportions (60 % random
architectures, then L-1 = 2 ascent generations of K = 20 % each; NAO arXiv:1808.07233, Sec. 4.1). Prints per
strategy the best architecture found and the mean of the top 10, as mean +- std over the seeds, and
NAO's mean per generation (does ascent find better architectures than the random pool?). Figures
are standardised planted scores (standard deviations above a uniformly random architecture), since
the squashed score saturates near its 0.95 ceiling.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from naslab.evaluators.planted import PlantedEvaluator
from naslab.search.ask_tell import run_search
from naslab.spaces import MicroSpace
from naslab.strategies.nao.strategy import NAOStrategy
from naslab.strategies.random.strategy import RandomStrategy


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--budget", type=int, default=200)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=200)
    args = parser.parse_args()
    space = MicroSpace(5, "nao")
    results: dict[str, list[tuple[float, float]]] = {"random": [], "nao": []}
    generations: list[list[float]] = []
    for seed in args.seeds:
        evaluator = PlantedEvaluator(space, seed=seed)
        strategies = {
            "random": RandomStrategy(space, seed=seed),
            "nao": NAOStrategy(space, seed=seed, budget=args.budget, epochs=args.epochs),
        }
        for name, strategy in strategies.items():
            with tempfile.TemporaryDirectory() as run_dir:
                outcome = run_search(space, strategy, evaluator, Path(run_dir), args.budget, batch_size=50, seed=seed)
                records = outcome.archive.records
                z = {r.key: evaluator.standardised(space.genotype_from_dict(r.genotype)) for r in records}
                scores = sorted(z.values(), reverse=True)
                results[name].append((scores[0], float(np.mean(scores[:10]))))
                if name == "nao":
                    by_generation: dict[int, list[float]] = {}
                    for record in outcome.archive.records:
                        generation = record.extra.get("nao", {}).get("generation", 0)
                        by_generation.setdefault(generation, []).append(z[record.key])
                    generations.append([float(np.mean(v)) for _, v in sorted(by_generation.items())])
            print(f"seed {seed} {name:>6}: best {results[name][-1][0]:.2f}, top-10 mean {results[name][-1][1]:.2f}")
    print(f"\nplanted score on {space!r}, budget {args.budget}, seeds {args.seeds}")
    for name, rows in results.items():
        best, top = np.array(rows).T
        print(f"{name:>6}: best {best.mean():.2f} +- {best.std():.2f}  top-10 mean {top.mean():.2f} +- {top.std():.2f}")
    means = np.array(generations)
    print("nao mean per generation (0 = random pool): " + ", ".join(f"{m:.2f}" for m in means.mean(axis=0)))


if __name__ == "__main__":
    main()
