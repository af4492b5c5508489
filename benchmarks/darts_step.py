"""Seconds per DARTS search step and peak memory, first order against second order, in one run.

    python benchmarks/darts_step.py [--batch 64] [--steps 2] [--warmup 1] [--channels 16] [--cells-per-stage 2]

The paper-sized search network (C=16, 8 cells, 4 nodes, the 8 DARTS ops, 1,930,618 weights) on
CIFAR-shaped batches (3x32x32, 10 classes, random data: the cost does not depend on the pixels).
A step is what `DartsSearchModule.training_step` does inside a Lightning Trainer: one alpha update
(order 1: one forward/backward on the validation batch; order 2: the virtual step of the authors'
code, `virtual_step=code`: w - lr * (momentum * buffer + grad + weight decay * w), the validation
gradient at w' and two more train passes for the finite-difference Hessian-vector product) and
one weight update. The momentum term adds a few tensor operations, no forward or backward pass.
Each order runs in its own subprocess so that its peak memory is its own:
`torch.cuda.max_memory_allocated` on a GPU, the growth of the peak resident set size during the
steps on a CPU. Prints both orders and the ratios order 2 / order 1.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import lightning as L
import torch
from lightning.pytorch.utilities import CombinedLoader
from torch.utils.data import DataLoader, TensorDataset

from naslab.spaces import MicroSpace, Task
from naslab.strategies.darts_module import DartsSearchModule


class StepTimer(L.Callback):
    """Wall time of every training step (synchronised on a GPU)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.start = 0.0

    def _sync(self, module: L.LightningModule) -> None:
        if module.device.type == "cuda":
            torch.cuda.synchronize()

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:  # type: ignore[no-untyped-def]
        self._sync(module)
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:  # type: ignore[no-untyped-def]
        self._sync(module)
        self.times.append(time.perf_counter() - self.start)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def measure(order: int, args: argparse.Namespace) -> dict[str, float]:
    torch.manual_seed(0)
    task = Task(10, (3, 32, 32))
    supernet = MicroSpace(4, "darts", "all").build_mixed_supernet(
        task, channels=args.channels, cells_per_stage=args.cells_per_stage
    )
    module = DartsSearchModule(supernet, order=order, epochs=1)
    n = args.batch * (args.warmup + args.steps)
    data = TensorDataset(torch.randn(n, *task.input_shape), torch.randint(0, 10, (n,)))
    loaders = {"train": DataLoader(data, batch_size=args.batch), "valid": DataLoader(data, batch_size=args.batch)}
    timer = StepTimer()
    trainer = L.Trainer(
        accelerator="auto",
        devices=1,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=False,
        callbacks=[timer],
    )
    gpu = torch.cuda.is_available()
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    rss_before = peak_rss_mib()
    trainer.fit(module, train_dataloaders=CombinedLoader(loaders, mode="min_size"))
    measured = timer.times[args.warmup :]
    memory = torch.cuda.max_memory_allocated() / 2**20 if gpu else peak_rss_mib() - rss_before
    return {"seconds_per_step": sum(measured) / len(measured), "peak_memory_mib": memory, "gpu": float(gpu)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--cells-per-stage", type=int, default=2)
    parser.add_argument("--order", type=int, choices=(1, 2), help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.order is not None:
        print(json.dumps(measure(args.order, args)))
        return
    results = {}
    for order in (1, 2):
        out = subprocess.run(
            [sys.executable, __file__, *sys.argv[1:], "--order", str(order)], check=True, capture_output=True, text=True
        )
        results[order] = json.loads(out.stdout.strip().splitlines()[-1])
    device = torch.cuda.get_device_name(0) if results[1]["gpu"] else f"CPU, {torch.get_num_threads()} threads"
    memory_kind = "torch.cuda.max_memory_allocated" if results[1]["gpu"] else "peak RSS growth"
    print(
        f"DARTS search step, C={args.channels}, {3 * args.cells_per_stage + 2} cells, batch {args.batch}, "
        f"32x32x3, {args.steps} steps after {args.warmup} warm-up ({device})"
    )
    for order in (1, 2):
        r = results[order]
        print(f"  order {order}: {r['seconds_per_step']:.3f} s/step, {r['peak_memory_mib']:.0f} MiB ({memory_kind})")
    time_ratio = results[2]["seconds_per_step"] / results[1]["seconds_per_step"]
    memory_ratio = results[2]["peak_memory_mib"] / max(results[1]["peak_memory_mib"], 1e-9)
    print(f"  ratio order 2 / order 1: time {time_ratio:.2f}x, memory {memory_ratio:.2f}x")


if __name__ == "__main__":
    main()
