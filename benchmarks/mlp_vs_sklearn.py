"""MLPNAS's found MLP against scikit-learn's MLPClassifier on the same split (the NAS overview compares them).

    python benchmarks/mlp_vs_sklearn.py [--dataset digits|wine] [--seeds 0 1 2] [--architectures 30]
        [--child-epochs 10] [--final-epochs 50] [--evaluator bigram|standalone]

Each seed runs `experiment=mlpnas` (REINFORCE controller + bigram sharing, `mode=search_train`) with the
given budget through the real config, and trains scikit-learn's `MLPClassifier` (its defaults: one hidden
layer of 100 relu units, Adam, up to `--sklearn-iter` iterations, seeded) on exactly the rows naslab's final
training uses (the datamodule's final phase: everything but the fixed test split, features as the datamodule
serves them, without augmentation), scored on the same test rows. Prints per seed and the mean +- std of
both test accuracies, the found architectures and the wall times.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import open_dict
from project_config import compose_cfg
from sklearn.neural_network import MLPClassifier

from naslab.pipeline import run


def arrays(loader) -> tuple[np.ndarray, np.ndarray]:
    """Features (flattened) and labels of every batch a loader serves, in order."""
    xs, ys = [], []
    for x, y in loader:
        xs.append(torch.flatten(x, 1).numpy())
        ys.append(y.numpy())
    return np.concatenate(xs), np.concatenate(ys)


def sklearn_accuracy(dataset: str, seed: int, max_iter: int) -> float:
    """MLPClassifier trained on naslab's final-phase training rows, scored on its test rows."""
    cfg = compose_cfg([f"dataset={dataset}", f"seed={seed}"])
    datamodule = instantiate(cfg.dataset.datamodule, phase="final", batch_size=256, augment=False)
    datamodule.setup()
    x_train, y_train = arrays(datamodule.train_dataloader())
    x_test, y_test = arrays(datamodule.test_dataloader())
    model = MLPClassifier(max_iter=max_iter, random_state=seed).fit(x_train, y_train)
    return float(model.score(x_test, y_test))


def mlpnas(args: argparse.Namespace, seed: int) -> dict:
    overrides = [
        "experiment=mlpnas",
        f"dataset={args.dataset}",
        f"evaluator={args.evaluator}",
        "logger=none",
        f"seed={seed}",
        f"search.num_architectures={args.architectures}",
        f"evaluator.epochs={args.child_epochs}",
        f"train.epochs={args.final_epochs}",
    ]
    cfg = compose_cfg(overrides)
    with tempfile.TemporaryDirectory() as run_dir:
        with open_dict(cfg):
            cfg.paths.output_dir = run_dir
            if "store_path" in cfg.evaluator:
                cfg.evaluator.store_path = f"{run_dir}/bigram_store.pt"
        return run(cfg)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=["digits", "wine"], default="digits")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--architectures", type=int, default=30)
    parser.add_argument("--child-epochs", type=int, default=10)
    parser.add_argument("--final-epochs", type=int, default=50)
    parser.add_argument("--evaluator", choices=["bigram", "standalone"], default="bigram")
    parser.add_argument("--sklearn-iter", type=int, default=500)
    args = parser.parse_args()
    ours, theirs = [], []
    for seed in args.seeds:
        start = time.perf_counter()
        results = mlpnas(args, seed)
        searched = time.perf_counter() - start
        start = time.perf_counter()
        reference = sklearn_accuracy(args.dataset, seed, args.sklearn_iter)
        fitted = time.perf_counter() - start
        ours.append(results["final"]["test_accuracy"])
        theirs.append(reference)
        print(
            f"seed {seed}: MLPNAS test {ours[-1]:.4f} ({results['genotype']}; {searched:.0f} s), "
            f"MLPClassifier test {reference:.4f} ({fitted:.1f} s)"
        )
    spread = statistics.stdev if len(args.seeds) > 1 else (lambda _: 0.0)
    print(
        json.dumps(
            {
                "dataset": args.dataset,
                "mlpnas": f"{statistics.mean(ours):.4f} +- {spread(ours):.4f}",
                "mlp_classifier": f"{statistics.mean(theirs):.4f} +- {spread(theirs):.4f}",
            }
        )
    )


if __name__ == "__main__":
    main()
