"""EPNAS and PNAS against random search on a planted macro score, the same number of evaluations.

    python benchmarks/progressive_vs_random.py [--layers 6] [--k 10] [--iterations 3] [--seeds 5]

The planted evaluator (`evaluator=planted`) is an exact, known score over the token sequence, so the
true quality of what each search returns is known. Each (strategy, seed) is a `mode=search` run of the
real config. EPNAS / PNAS evaluate partial architectures on their way, and these count in the budget;
random evaluates whole ones. The budget is what one EPNAS run of `iterations` progressions evaluates.
`random (n)` gets only as many evaluations as EPNAS spends on complete architectures (iterations x K):
the comparison when partial evaluations are nearly free (weight sharing). Prints the mean +- std over
seeds of the returned architecture's score, its standardised score (standard deviations above a
uniformly random architecture) and the wall time.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from naslab.evaluators.planted import PlantedEvaluator
from naslab.pipeline import run
from naslab.spaces.macro import MacroSpace

CONF = str(Path(__file__).resolve().parents[1] / "conf")


def search(strategy: str, seed: int, args: argparse.Namespace, budget: int) -> dict:
    overrides = [
        "mode=search",
        "logger=none",
        "space=macro",
        f"space.num_layers={args.layers}",
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
        overrides += [f"strategy.normalise={args.normalise}"]
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    with tempfile.TemporaryDirectory() as run_dir:
        with open_dict(cfg):
            cfg.paths.output_dir = run_dir
        return run(cfg)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--surrogate-epochs", type=int, default=50)
    parser.add_argument("--normalise", choices=["sum", "minmax"], default="sum", help="EPNAS's strategy.normalise")
    args = parser.parse_args()
    space = MacroSpace(args.layers)
    planted = PlantedEvaluator(space, seed=0)
    per_progression = min(args.k, len(space.expand(None))) + (args.layers - 1) * args.k
    budget = args.iterations * per_progression
    print(
        f"macro space, {args.layers} layers ({space.size():.3g} architectures); K={args.k}; budget {budget}; "
        f"predictions normalised by {args.normalise}"
    )
    print(f"{'strategy':18s} {'score (mean +- std)':>22s} {'standardised':>16s} {'s':>6s}")
    complete_budget = args.iterations * args.k
    for label, strategy, n in (
        ("random", "random", budget),
        (f"random ({complete_budget})", "random", complete_budget),
        ("pnas", "pnas", budget),
        ("epnas", "epnas", budget),
    ):
        scores, z, start = [], [], time.perf_counter()
        for seed in range(args.seeds):
            results = search(strategy, seed, args, n)
            genotype = space.genotype_from_dict(json.loads(results["genotype_key"]))
            scores.append(planted.score(genotype))
            z.append(planted.standardised(genotype))
        print(
            f"{label:18s} {np.mean(scores):12.4f} +- {np.std(scores, ddof=1):.4f} "
            f"{np.mean(z):8.2f} +- {np.std(z, ddof=1):.2f} {time.perf_counter() - start:6.1f}"
        )


if __name__ == "__main__":
    main()
