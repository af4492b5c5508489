"""Training step time of a child network in channels-last (NHWC, naslab's default) vs NCHW memory.

    python benchmarks/channels_last.py [--channels 16] [--batch 128] [--size 28]

Both formats train the same network on the same batch in one run on this machine; prints seconds
per forward+backward step for each and the ratio NCHW / NHWC (>1 means channels-last is faster).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from naslab.spaces import MicroSpace, Task


def step_time(net: torch.nn.Module, x: torch.Tensor, repeats: int) -> float:
    net(x).sum().backward()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        net(x).sum().backward()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--archs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    space = MicroSpace(3, "enas")
    task = Task(10, (1, args.size, args.size))
    rng = np.random.default_rng(0)
    total = {"nchw": 0.0, "nhwc": 0.0}
    for _ in range(args.archs):
        g = space.sample(rng)
        net = space.build_child(g, task, channels=args.channels, cells_per_stage=1)
        x = torch.randn(args.batch, *task.input_shape)
        total["nchw"] += step_time(net, x, args.repeats)
        net = net.to(memory_format=torch.channels_last)
        total["nhwc"] += step_time(net, x.contiguous(memory_format=torch.channels_last), args.repeats)
    nchw, nhwc = (total[k] / args.archs for k in ("nchw", "nhwc"))
    print(
        f"NCHW {nchw:.3f} s/step   NHWC (channels-last) {nhwc:.3f} s/step   ratio NCHW/NHWC {nchw / nhwc:.2f}"
        f"   ({args.archs} random cells, F={args.channels}, batch {args.batch}, {args.size}x{args.size}, "
        f"{torch.get_num_threads()} threads)"
    )


if __name__ == "__main__":
    main()
