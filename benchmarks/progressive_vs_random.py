"""EPNAS and PNAS against random search on a planted score, the same number of evaluations.

    python benchmarks/progressive_vs_random.py [--space macro|micro_epnas] [--levels 6] [--k 10]
        [--iterations 3] [--seeds 5] [--normalise sum|minmax] [--embedding kind|position] [--first-level all|sample]

The planted evaluator (`evaluator=planted`) is an exact, known score, so the true quality of what each
search returns is known; a partial architecture is scored among architectures of its level. Each
(strategy, seed) is a `mode=search` run of the real config. EPNAS / PNAS evaluate partial architectures
on their way, and these count in the budget; random evaluates whole ones. The budget is what one EPNAS
run of `iterations` progressions evaluates: each progression measures every level-1 architecture (the
paper's Fig. 3, step 1; `--first-level sample`: K of them) and K per later level. `random (n)` gets
only as many evaluations as EPNAS spends on complete architectures (iterations x K): the comparison when
partial evaluations are nearly free (weight sharing). PNAS makes one progression and stops early (its
evaluations are printed). Prints, over seeds, the returned architecture's score (mean +- std), its
standardised score (standard deviations above a uniformly random architecture), the evaluations used,
the two-sided Mann-Whitney p-value of the standardised scores against random at the full budget, and
the wall time.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np
from hydra.utils import instantiate
from omegaconf import open_dict
from project_config import compose_cfg
from scipy.stats import mannwhitneyu

from naslab.evaluators.planted import PlantedEvaluator
from naslab.pipeline import run


def space_overrides(args: argparse.Namespace) -> list[str]:
    levels = "num_layers" if args.space == "macro" else "num_nodes"
    return [f"space={args.space}", f"space.{levels}={args.levels}"]


def search(strategy: str, seed: int, args: argparse.Namespace, budget: int) -> dict:
    overrides = [
        "mode=search",
        "logger=none",
        *space_overrides(args),
        "evaluator=planted",
        "evaluator.seed=0",  # one planted score for every run: only the search seed varies
        f"strategy={strategy}",
        f"seed={seed}",
        f"search.num_architectures={budget}",
        f"search.batch_size={args.k}",
    ]
    if strategy in ("epnas", "pnas"):
        overrides += [f"strategy.k={args.k}", f"strategy.surrogate.epochs={args.surrogate_epochs}"]
        overrides += [f"strategy.iterations={args.iterations if strategy == 'epnas' else 1}"]
        overrides += [f"strategy.normalise={args.normalise}", f"strategy.surrogate.embedding={args.embedding}"]
        overrides += [f"strategy.tau_start={args.tau_start}", f"strategy.tau_decay={args.tau_decay}"]
        overrides += [f"strategy.tau_end={args.tau_end}", f"strategy.first_level={args.first_level}"]
    cfg = compose_cfg(overrides)
    with tempfile.TemporaryDirectory() as run_dir:
        with open_dict(cfg):
            cfg.paths.output_dir = run_dir
        return run(cfg)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", choices=["macro", "micro_epnas"], default="macro")
    parser.add_argument("--levels", type=int, default=None, help="layers (macro, default 6) or blocks (micro, 5)")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--surrogate-epochs", type=int, default=50)
    parser.add_argument("--normalise", choices=["sum", "minmax"], default="sum", help="EPNAS's strategy.normalise")
    parser.add_argument("--tau-start", type=float, default=5.0, help="EPNAS's strategy.tau_start")
    parser.add_argument("--tau-decay", type=float, default=0.5, help="EPNAS's strategy.tau_decay")
    parser.add_argument("--tau-end", type=float, default=1.0, help="EPNAS's strategy.tau_end")
    parser.add_argument(
        "--embedding", choices=["kind", "position"], default="kind", help="the surrogate's rows (surrogate.embedding)"
    )
    parser.add_argument(
        "--first-level", choices=["all", "sample"], default="all", help="strategy.first_level: all of level 1, or K"
    )
    parser.add_argument("--only", nargs="*", default=[], help="run only these strategies (random, pnas, epnas)")
    args = parser.parse_args()
    args.levels = args.levels or (6 if args.space == "macro" else 5)
    space = instantiate(compose_cfg(space_overrides(args)).space)
    planted = PlantedEvaluator(space, seed=0)
    first = len(space.expand(None))
    per_progression = (first if args.first_level == "all" else min(args.k, first)) + (args.levels - 1) * args.k
    budget = args.iterations * per_progression
    print(
        f"{space!r} ({space.size():.3g} architectures); K={args.k}; budget {budget}; "
        f"predictions normalised by {args.normalise}; surrogate embedding by {args.embedding}; "
        f"tau {args.tau_start} decaying by {args.tau_decay} to {args.tau_end}; level 1: {args.first_level}"
    )
    print(f"{'strategy':18s} {'score (mean +- std)':>22s} {'standardised':>16s} {'evals':>6s} {'p':>6s} {'s':>6s}")
    complete_budget = args.iterations * args.k
    runs = [
        ("random", "random", budget),
        (f"random ({complete_budget})", "random", complete_budget),
        ("pnas", "pnas", budget),
        ("epnas", "epnas", budget),
    ]
    baseline: list[float] = []
    for label, strategy, n in [entry for entry in runs if entry[1] in args.only or not args.only]:
        scores, z, evaluated, start = [], [], [], time.perf_counter()
        for seed in range(args.seeds):
            results = search(strategy, seed, args, n)
            genotype = space.genotype_from_dict(json.loads(results["genotype_key"]))
            scores.append(planted.score(genotype))
            z.append(planted.standardised(genotype))
            evaluated.append(results["search"]["num_evaluated"])
        if label == "random":
            baseline = z
        p = mannwhitneyu(z, baseline).pvalue if baseline and label != "random" else float("nan")
        print(
            f"{label:18s} {np.mean(scores):12.4f} +- {np.std(scores, ddof=1):.4f} "
            f"{np.mean(z):8.2f} +- {np.std(z, ddof=1):.2f} {np.mean(evaluated):6.0f} {p:6.2f} "
            f"{time.perf_counter() - start:6.1f}"
        )


if __name__ == "__main__":
    main()
