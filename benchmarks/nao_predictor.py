"""NAO Fig. 2a on a planted score: predictor pairwise accuracy and decoder Hamming distance vs |X|.

    python benchmarks/nao_predictor.py [--sizes 100 300 500] [--epochs 200] [--twins 1]

As in the paper (NAO arXiv:1808.07233, Sec. 4.1): 600 random architectures of NAO's space (B=5, 11 ops, 40
tokens here), 50 of them held out as the test set; the NAO model (embedding 32, hidden 96, lambda 0.9,
Adam 0.001, batch 100, one symmetric twin per architecture) is trained from scratch on the first |X|
of the other 550. Scores come from `naslab.evaluators.planted` (a seeded synthetic function shaped
like accuracies), because training 600 CIFAR children is out of reach here. Prints, per size, the
pairwise accuracy of the predictor and the mean Hamming distance of decode(encode(x)) to x on the
test set (paper: > 0.78 and < 0.5 with ~500 architectures), then one gradient-ascent step (eta 10)
from the test architectures: predicted and true score before and after.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from naslab.evaluators.planted import PlantedEvaluator
from naslab.rank_agreement import hamming_distance, pairwise_accuracy
from naslab.spaces import MicroSpace
from naslab.strategies.nao.model import NAOModel, fit


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 300, 500])
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--twins", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    space = MicroSpace(5, "nao")
    evaluator = PlantedEvaluator(space, seed=args.seed)
    rng = np.random.default_rng(args.seed)
    pool: dict[str, object] = {}
    while len(pool) < 600:
        genotype = space.sample(rng)
        pool.setdefault(space.key(genotype), genotype)
    genotypes = list(pool.values())
    scores = np.array([evaluator.score(g) for g in genotypes])
    test_tokens = torch.tensor([space.to_tokens(g) for g in genotypes[:50]])
    print(
        f"space {space!r}: {len(space.token_choices())} tokens; planted scores {scores.min():.3f}..{scores.max():.3f}"
    )
    print(f"{'|X|':>5} {'pairwise acc':>13} {'hamming':>8} {'train s':>8}")
    for size in args.sizes:
        train = slice(50, 50 + size)
        lo, hi = scores[train].min(), scores[train].max()
        tokens, targets = [], []
        for genotype, score in zip(genotypes[train], scores[train]):
            for twin in [genotype] + [space.random_symmetry(genotype, rng) for _ in range(args.twins)]:
                tokens.append(space.to_tokens(twin))
                targets.append((score - lo) / (hi - lo))
        torch.manual_seed(args.seed)
        model = NAOModel(space.token_choices(), space.token_kinds())
        start = time.perf_counter()
        fit(model, torch.tensor(tokens), torch.tensor(targets), epochs=args.epochs, batch_size=100, seed=args.seed)
        seconds = time.perf_counter() - start
        accuracy = pairwise_accuracy(scores[:50], model.predict_tokens(test_tokens).tolist())
        hamming = hamming_distance(test_tokens.tolist(), model.reconstruct(test_tokens).tolist())
        print(f"{size:>5} {accuracy:>13.3f} {hamming:>8.2f} {seconds:>8.0f}", flush=True)

    ascent = model.ascend(test_tokens, 10.0)
    decoded = [space.from_tokens(t) for t in ascent.tokens.tolist()]
    true_after = np.array([evaluator.score(g) for g in decoded])
    changed = sum(space.key(a) != space.key(b) for a, b in zip(decoded, genotypes[:50]))
    print(
        f"ascent (eta 10) from the 50 test architectures, |X|={args.sizes[-1]}: "
        f"predicted {lo + (hi - lo) * float(ascent.predicted_before.mean()):.3f} -> "
        f"{lo + (hi - lo) * float(ascent.predicted_after.mean()):.3f}, "
        f"true {scores[:50].mean():.3f} -> {true_after.mean():.3f}; {changed}/50 decoded to a new architecture"
    )


if __name__ == "__main__":
    main()
