"""Seconds per NAO generation: training NAO's encoder-predictor-decoder on N architectures, against N.

    python benchmarks/nao_generation.py [--sizes 100 300 1000] [--epochs 100] [--batch 100] [--threads 1]

The model of the NAO-WS preset (renqianluo/NAO NAO-WS/cnn: embedding 48, hidden 96, a 4-layer
predictor of 100 units, trade-off 0.8, Adam 0.001, weight decay 1e-4, batch 100) on N random cells
of the ENAS micro space (5 nodes, 40 tokens), trained by `naslab.strategies.nao.model.fit` (a
Lightning Trainer) and, for the overhead, by a plain PyTorch loop doing the same steps. A
generation trains `--epochs` epochs (the authors: 1000; time scales linearly with epochs). Prints
per N: seconds per generation, milliseconds per step, and the Trainer's time over the plain loop's.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from naslab.spaces import MicroSpace
from naslab.strategies.nao.model import NAOModel, fit

MODEL = {
    "embedding": 48,
    "hidden": 96,
    "predictor_layers": 4,
    "predictor_hidden": 100,
    "dropout": 0.0,
    "trade_off": 0.8,
    "weight_decay": 1e-4,
}


def data(space: MicroSpace, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(0)
    tokens = torch.tensor([space.to_tokens(space.sample(rng)) for _ in range(n)])
    return tokens, torch.rand(n, generator=torch.Generator().manual_seed(0))


def plain_loop(model: NAOModel, tokens: torch.Tensor, scores: torch.Tensor, epochs: int, batch: int) -> None:
    optimizer = model.configure_optimizers()
    generator = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        for ids in torch.randperm(len(tokens), generator=generator).split(batch):
            prediction, reconstruction = model.losses(tokens[ids], scores[ids])
            loss = model.trade_off * prediction + (1 - model.trade_off) * reconstruction
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 300, 1000])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    space = MicroSpace(5, "enas")
    print(
        f"NAO model (NAO-WS sizes), {len(space.token_choices())} tokens, batch {args.batch}, {args.epochs} epochs "
        f"per generation, {args.threads} thread(s)"
    )
    for n in args.sizes:
        tokens, scores = data(space, n)
        steps = args.epochs * -(-n // args.batch)
        model = NAOModel(space.token_choices(), space.token_kinds(), **MODEL)
        start = time.perf_counter()
        fit(model, tokens, scores, args.epochs, batch_size=args.batch)
        trainer_s = time.perf_counter() - start
        model = NAOModel(space.token_choices(), space.token_kinds(), **MODEL)
        start = time.perf_counter()
        plain_loop(model, tokens, scores, args.epochs, args.batch)
        plain_s = time.perf_counter() - start
        print(
            f"  N={n:5d}: {trainer_s:7.1f} s per generation ({steps} steps, {1000 * trainer_s / steps:.1f} ms/step); "
            f"plain loop {plain_s:.1f} s; Trainer / plain {trainer_s / plain_s:.2f}x"
        )


if __name__ == "__main__":
    main()
