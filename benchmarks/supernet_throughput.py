"""Training and scoring throughput of the weight-sharing supernet against the sampled child alone.

    python benchmarks/supernet_throughput.py [--space micro|macro] [--batch 64] [--steps 10] [--channels-first]

Both train the same sampled architectures (one per step) at the same batch size and input size, in
one run on this machine, in naslab's layout (channels-last; `--channels-first` for NCHW): the
supernet through `forward(x, genotype)` with its sliced 1x1 convs and dictionaries of every op,
the child as a stand-alone `build_child` network. Then the supernet scores the architectures as a
weight-sharing search does (`ImageObjective.score`: batch statistics, no gradient) and the child
runs the same forward pass alone. Prints images/s of each and the ratios supernet / child (1.0 =
weight sharing costs nothing per step).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from naslab.spaces import MacroSpace, MicroSpace, Task
from naslab.train.objectives import ImageObjective


def images_per_second(step, genotypes, x, y) -> float:
    step(genotypes[0], x, y)  # warm-up
    start = time.perf_counter()
    for g in genotypes:
        step(g, x, y)
    return len(genotypes) * len(x) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--space", choices=["micro", "macro"], default="micro")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--channels-first", action="store_true", help="NCHW instead of channels-last")
    args = parser.parse_args()
    layout = torch.contiguous_format if args.channels_first else torch.channels_last
    space = MicroSpace(5, "enas") if args.space == "micro" else MacroSpace(12)
    task = Task(10, (3, args.size, args.size))
    rng = np.random.default_rng(0)
    genotypes = [space.sample(rng) for _ in range(args.steps)]
    x, y = torch.randn(args.batch, *task.input_shape), torch.randint(0, 10, (args.batch,))
    x = x.contiguous(memory_format=layout)
    torch.manual_seed(0)
    supernet = space.build_supernet(task, channels=args.channels, cells_per_stage=1).to(memory_format=layout)
    supernet_opt = torch.optim.SGD(supernet.parameters(), lr=0.01, momentum=0.9)

    def supernet_step(g, x, y) -> None:
        supernet_opt.zero_grad()
        F.cross_entropy(supernet(x, g), y).backward()
        supernet_opt.step()

    def child_step(g, x, y) -> None:  # the child alone: its own network and optimizer, built outside the timing
        net, opt = children[g]
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()

    children = {}
    for g in genotypes:
        net = space.build_child(g, task, channels=args.channels, cells_per_stage=1).to(memory_format=layout)
        children[g] = (net, torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9))
    shared = images_per_second(supernet_step, genotypes, x, y)
    alone = images_per_second(child_step, genotypes, x, y)
    objective = ImageObjective(channels_last=not args.channels_first)

    def supernet_score(g, x, y) -> None:
        objective.score(supernet, g, [(x, y)])

    def child_score(g, x, y) -> None:  # the same forward pass (batch statistics, no gradient), the child alone
        objective.score(children[g][0], None, [(x, y)])

    scored = images_per_second(supernet_score, genotypes, x, y)
    scored_alone = images_per_second(child_score, genotypes, x, y)
    print(
        f"{args.space} ({'NCHW' if args.channels_first else 'channels-last'}, batch {args.batch}, {args.steps} sampled "
        f"architectures, {torch.get_num_threads()} CPU threads)\n"
        f"  training: supernet {shared:.0f} img/s, child alone {alone:.0f} img/s, ratio {shared / alone:.2f}\n"
        f"  scoring:  supernet {scored:.0f} img/s, child alone {scored_alone:.0f} img/s, "
        f"ratio {scored / scored_alone:.2f}"
    )


if __name__ == "__main__":
    main()
