"""What the Lightning Trainer costs when it trains a stand-alone child, against a plain loop.

    python benchmarks/child_training_overhead.py [--epochs 3] [--repeats 3]

Both train the same child network, with the same data, optimizer and number of steps, on this
machine in one run; prints seconds per child for each and their ratio (ours / plain loop). The
evaluator creates one Trainer per child, so per-Trainer start-up matters for small proxies.
"""

from __future__ import annotations

import argparse
import time

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F

from naslab.data import DigitsDataModule
from naslab.evaluators.standalone import StandaloneEvaluator
from naslab.spaces import MicroSpace, Task


def plain_loop(space: MicroSpace, genotype, task: Task, dm: DigitsDataModule, epochs: int) -> float:
    torch.manual_seed(0)
    net = space.build_child(genotype, task, channels=8, cells_per_stage=1)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=3e-4)
    for _ in range(epochs):
        net.train()
        for x, y in dm.train_dataloader():
            opt.zero_grad()
            F.cross_entropy(net(x), y).backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            opt.step()
    net.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in dm.val_dataloader():
            correct += (net(x).argmax(1) == y).sum().item()
            total += len(y)
    return correct / total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    space = MicroSpace(3, "enas")
    task = Task(10, (1, 8, 8))
    dm = DigitsDataModule(phase="search", batch_size=64, search_valid_size=0.2)
    dm.setup()
    evaluator = StandaloneEvaluator(
        space,
        task,
        lambda **kw: dm,
        lambda **kw: L.Trainer(accelerator="cpu", deterministic=True, **kw),
        epochs=args.epochs,
        channels=8,
        cells_per_stage=1,
        batch_size=64,
    )
    rng = np.random.default_rng(0)
    genotypes = [space.sample(rng) for _ in range(args.repeats)]
    start = time.perf_counter()
    for g in genotypes:
        plain_loop(space, g, task, dm, args.epochs)
    plain = (time.perf_counter() - start) / len(genotypes)
    start = time.perf_counter()
    evaluator.evaluate(genotypes)
    ours = (time.perf_counter() - start) / len(genotypes)
    print(
        f"plain loop: {plain:.2f} s/child   naslab StandaloneEvaluator: {ours:.2f} s/child   ratio {ours / plain:.2f}"
    )


if __name__ == "__main__":
    main()
