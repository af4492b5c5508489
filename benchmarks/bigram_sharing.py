"""Does MLPNAS's bigram weight sharing (evaluator=bigram, the NAS overview Sec. 4.1) shorten the children's training?

    python benchmarks/bigram_sharing.py [--dataset digits|wine] [--children 20] [--max-epochs 10] [--targets 0.85 0.9]
        [--max-layers 10] [--widths 8 16 ...] [--activations relu tanh ...]

One seeded sequence of MLPs (`MLPSpace.sample`), trained twice in this run: stand-alone (evaluator=standalone,
every child from scratch) and with bigram sharing (evaluator=bigram, every child warm-started from the layer
pairs the children before it trained). Both train each child `--max-epochs` epochs with the dataset's search
settings (conf/dataset/<name>.yaml) and validate after every epoch; a child's epochs-to-target is the first
epoch whose search-valid accuracy reaches a `--targets` value (a child that never does counts as --max-epochs + 1, and
the count of those is printed). Prints per child and the means, the ratio stand-alone / shared, final
accuracies and the wall time of each arm. The first child inherits nothing, so its two curves must agree.

The default space is a corner of MLPNAS's (<= 3 layers of 32 / 64 / 128 units, relu / tanh): its bigrams repeat
within 20 children, as they do once a controller has settled on a region. The whole MLPNAS space
(--max-layers 10 --widths 8 16 32 64 128 256 512 --activations sigmoid tanh relu elu) repeats few: measured,
16 of 152 layers inherited, 18 of 20 children below 0.85 either way (most deep ones stay at chance after 10
epochs), ratio 1.00x. Default measured on 2 busy CPU cores, 82 s: 32 of 59 layers inherited; mean epochs to
0.9 (never = 11) 9.74 stand-alone vs 6.16 shared for children 2..20 (1.58x; 1.86x over the 15 that inherited),
to 0.85 2.05x; mean final accuracy 0.877 vs 0.913.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from naslab.evaluators.base import Evaluation
from naslab.evaluators.bigram import BigramEvaluator
from naslab.evaluators.standalone import StandaloneEvaluator
from naslab.spaces import Task
from naslab.spaces.mlp.space import ACTIVATIONS, MLP_WIDTHS, MLPSpace

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


def epochs_to_target(evaluation: Evaluation, target: float, max_epochs: int) -> int:
    """The first epoch whose validation accuracy reaches `target`; max_epochs + 1 if none does."""
    return next((int(epoch) for epoch, score in evaluation.extra["curve"] if score >= target), max_epochs + 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="digits", choices=["digits", "wine"])
    parser.add_argument("--children", type=int, default=20, help="architectures in the sequence")
    parser.add_argument("--max-epochs", type=int, default=10, help="epochs per child (MLPNAS: 10)")
    parser.add_argument(
        "--targets", type=float, nargs="+", default=[0.85, 0.9], help="search-valid accuracies to reach"
    )
    parser.add_argument("--seed", type=int, default=0, help="the sequence's and the training seed")
    parser.add_argument("--max-layers", type=int, default=3, help="MLPNAS: 10")
    parser.add_argument("--widths", type=int, nargs="+", default=[32, 64, 128], help=f"MLPNAS: {list(MLP_WIDTHS)}")
    parser.add_argument("--activations", nargs="+", default=["relu", "tanh"], help=f"MLPNAS: {list(ACTIVATIONS)}")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the evaluators' cpus_per_trial: the same kernels in both arms

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=["logger=none", f"dataset={args.dataset}"])
    search = cfg.dataset.search
    datamodule_factory = instantiate(cfg.dataset.datamodule, phase="search", _partial_=True)
    probe = datamodule_factory()
    task = Task(probe.num_classes, tuple(probe.input_shape), cfg.dataset.stem, kind=getattr(probe, "kind", "image"))
    space = MLPSpace(max_layers=args.max_layers, widths=args.widths, activations=args.activations)
    rng = np.random.default_rng(args.seed)
    genotypes = [space.sample(rng) for _ in range(args.children)]
    common = dict(
        datamodule_factory=datamodule_factory,
        trainer_factory=functools.partial(L.Trainer, accelerator="cpu", devices=1, deterministic=True),
        seed=args.seed,
        epochs=args.max_epochs,
        batch_size=search.batch_size,
        lr=search.lr,
        validate_every=1,
    )
    print(f"{args.dataset}: {args.children} children of {space!r}, {args.max_epochs} epochs each")

    results, seconds = {}, {}
    for arm, cls in (("standalone", StandaloneEvaluator), ("bigram", BigramEvaluator)):
        evaluator = cls(space, task, **common)
        start = time.perf_counter()
        results[arm] = evaluator.evaluate(genotypes)
        seconds[arm] = time.perf_counter() - start
        evaluator.close()

    alone, shared = results["standalone"], results["bigram"]
    assert alone[0].extra["curve"] == shared[0].extra["curve"], "the first child inherits nothing: same training"
    cap = args.max_epochs
    show = lambda e: str(e) if e <= cap else f">{cap}"  # noqa: E731
    t = args.targets[-1]
    print(
        f"\n{'#':>3} {'inherited':>9} {f'epochs to {t}: alone':>20} {'shared':>6} {'acc alone':>9} {'shared':>6}  child"
    )
    for i, (genotype, a, s) in enumerate(zip(genotypes, alone, shared)):
        inherited = f"{s.extra['inherited_layers']}/{s.extra['linear_layers']}"
        ea, es = epochs_to_target(a, t, cap), epochs_to_target(s, t, cap)
        print(f"{i:>3} {inherited:>9} {show(ea):>20} {show(es):>6} {a.score:>9.3f} {s.score:>6.3f}  {genotype}")

    later = range(1, args.children)  # the first child has nothing to inherit
    warm = [i for i in later if shared[i].extra["inherited_layers"] > 0]
    groups = (("all children", list(range(args.children))), ("children 2..N", list(later)), ("inheriting", warm))
    for target in args.targets:
        print(f"\nmean epochs to a search-valid accuracy of {target} (never reached: counted as {cap + 1})")
        for label, rows in groups:
            if not rows:
                continue
            alone_epochs = [epochs_to_target(alone[i], target, cap) for i in rows]
            shared_epochs = [epochs_to_target(shared[i], target, cap) for i in rows]
            ma, ms = statistics.mean(alone_epochs), statistics.mean(shared_epochs)
            never_a, never_s = sum(e > cap for e in alone_epochs), sum(e > cap for e in shared_epochs)
            print(
                f"  {label} ({len(rows)}): stand-alone {ma:.2f} ({never_a} never), shared {ms:.2f} ({never_s} never); "
                f"ratio {ma / ms:.2f}x"
            )
    for label, rows in groups:
        if rows:
            acc_a, acc_s = statistics.mean(alone[i].score for i in rows), statistics.mean(shared[i].score for i in rows)
            print(f"final accuracy after {cap} epochs, {label}: stand-alone {acc_a:.3f}, shared {acc_s:.3f}")
    inherited = sum(e.extra["inherited_layers"] for e in shared)
    total = sum(e.extra["linear_layers"] for e in shared)
    print(
        f"layers inherited: {inherited} of {total}; wall time stand-alone {seconds['standalone']:.1f} s, "
        f"shared {seconds['bigram']:.1f} s"
    )


if __name__ == "__main__":
    main()
