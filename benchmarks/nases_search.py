"""NASES's controller against random embeddings on the same budget (`experiment=nases_macro`, shrunk).

    python benchmarks/nases_search.py [--dataset digits|fashion_mnist] [--seeds 0 1 2] [--architectures 30]
        [--child-epochs 3] [--channels 8] [--final-epochs 15] [--lr 3e-3] [--pretrained FILE]

Per seed, two searches through the real config (`mode=search_train`, stand-alone children with the
paper's child recipe: Nesterov SGD, cosine 0.05 -> 0.001, batch 128, weight decay 1e-4):
  * nases: the Bernoulli controller copied from the pretrained simulator, 10 random warm-up children,
    epsilon 0.1, updated after every child from 3 reward-pool samples;
  * random: the same strategy whose warm-up never ends (`strategy.warmup` > budget), i.e. uniformly
    random embeddings decoded by the same decoder, with no controller updates.
Both share one autoencoder (pretrained once here unless --pretrained names a `save_pretrained` file)
and the same seeds. Prints, per method, the mean +- std over seeds of the best search-valid accuracy,
of the mean accuracy of the last third of the children (what the policy proposes once it has learnt),
of the NASES reward of those children, and the final test accuracy of the chosen architecture.
`strategy.lr` defaults to 3e-3 here: the paper's controller lr 1e-5 barely moves a policy in 30 updates.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from omegaconf import open_dict
from project_config import compose_cfg

from naslab.archive import Archive
from naslab.loggers import filter_known_warnings
from naslab.pipeline import run
from naslab.spaces.nases.space import NASESSpace
from naslab.strategies.nases.reward import nases_reward
from naslab.strategies.nases.strategy import obtain_autoencoder


def search(args: argparse.Namespace, seed: int, pretrained: Path, random: bool) -> dict:
    overrides = [
        "experiment=nases_macro",
        f"dataset={args.dataset}",
        "logger=none",
        f"seed={seed}",
        f"strategy.pretrained={pretrained}",
        f"strategy.lr={args.lr}",
        f"search.num_architectures={args.architectures}",
        f"evaluator.epochs={args.child_epochs}",
        f"evaluator.channels={args.channels}",
        f"train.epochs={args.final_epochs}",
        f"train.channels={args.channels}",
    ]
    if random:
        overrides.append(f"strategy.warmup={args.architectures + 1}")
    if args.dataset == "fashion_mnist":
        overrides += [f"dataset.datamodule.max_train_samples={args.max_train}", "dataset.datamodule.num_workers=0"]
    cfg = compose_cfg(overrides)
    with tempfile.TemporaryDirectory() as run_dir:
        with open_dict(cfg):
            cfg.paths.output_dir = run_dir
        start = time.perf_counter()
        results = run(cfg)
        records = Archive(Path(run_dir) / "archive.jsonl", resume=True).records
    tail = records[-max(1, len(records) // 3) :]
    return {
        "best": results["search"]["best_score"],
        "last_third": statistics.mean(r.score for r in tail),
        "last_third_reward": statistics.mean(
            nases_reward(r.score, r.extra.get("train_accuracy", r.score)) for r in tail
        ),
        "test": results["final"]["test_accuracy"],
        "seconds": time.perf_counter() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=["digits", "fashion_mnist"], default="digits")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--architectures", type=int, default=30)
    parser.add_argument("--child-epochs", type=int, default=3)
    parser.add_argument("--channels", type=int, default=8, help="evaluator/train channels (the space's 64 = paper)")
    parser.add_argument("--final-epochs", type=int, default=15)
    parser.add_argument("--lr", type=float, default=3e-3, help="controller Adam lr (paper: 1e-5)")
    parser.add_argument("--max-train", type=int, default=5000, help="fashion_mnist training rows")
    parser.add_argument("--pretrained", type=Path, default=None, help="a save_pretrained autoencoder file")
    args = parser.parse_args()
    filter_known_warnings()
    with tempfile.TemporaryDirectory() as scratch:
        pretrained = args.pretrained
        if pretrained is None:  # the strategy config's own pretraining options, once for every run
            pretrained = Path(scratch) / "nases_autoencoder.pt"
            options = dict(compose_cfg(["experiment=nases_macro"]).strategy.pretrain)
            start = time.perf_counter()
            obtain_autoencoder(NASESSpace(), None, pretrained, options, seed=0)
            print(f"autoencoder pretrained in {time.perf_counter() - start:.0f} s")
        rows: dict[str, list[dict]] = {"nases": [], "random": []}
        for seed in args.seeds:
            for method in rows:
                rows[method].append(search(args, seed, pretrained, random=method == "random"))
                print(f"seed {seed} {method}: " + json.dumps({k: round(v, 4) for k, v in rows[method][-1].items()}))
    spread = statistics.stdev if len(args.seeds) > 1 else (lambda _: 0.0)
    summary = {
        method: {
            key: f"{statistics.mean(r[key] for r in runs):.4f} +- {spread([r[key] for r in runs]):.4f}"
            for key in ("best", "last_third", "last_third_reward", "test", "seconds")
        }
        for method, runs in rows.items()
    }
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
