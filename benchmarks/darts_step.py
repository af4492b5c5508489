"""Seconds per DARTS search step and peak memory, order 1 and 2, naslab against the authors' code.

    python benchmarks/darts_step.py [--batch 16] [--steps 2] [--warmup 1] [--authors-code PATH/darts]
                                    [--rounds 1] [--channels-first]

The paper-sized search network (C=16, 8 cells, 4 nodes, the 8 DARTS ops, 1,930,618 weights) on
CIFAR-shaped batches (3x32x32, 10 classes, random data: the cost does not depend on the pixels).
A step is what `DartsSearchModule.training_step` does inside a Lightning Trainer: one alpha update
(order 1: one forward/backward on the validation batch; order 2: the virtual step of the authors'
code, `virtual_step=code`: w - lr * (momentum * buffer + grad + weight decay * w), the validation
gradient at w' and two more train passes for the finite-difference Hessian-vector product) and
one weight update, in naslab's default layout (channels-last; `--channels-first` for NCHW).

`--authors-code` points at a checkout of quark0/darts (github.com/quark0/darts): the same step
runs through its cnn/model_search.py and cnn/architect.py (`architect.step`, then train_search.py's
weight step), patched only to run on a CPU with today's torch (`.cuda()` dropped, the removed
`add_(scalar, tensor)` overloads written with `alpha=`). Every measurement runs in its own
subprocess, alternating naslab and the authors' code for `--rounds` rounds, so that a busy machine
slows both alike. Memory: `torch.cuda.max_memory_allocated` on a GPU, the whole process's peak
resident set size on a CPU (imports included: that is what a user's machine must hold). Prints
each order's time and memory, the ratios order 2 / order 1 and naslab / authors.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import torch
from lightning.pytorch.utilities import CombinedLoader
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from naslab.spaces import MicroSpace, Task
from naslab.strategies.darts.module import DartsSearchModule
from naslab.train.objectives import ImageObjective


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


def random_batches(args: argparse.Namespace, task: Task) -> TensorDataset:
    n = args.batch * (args.warmup + args.steps)
    return TensorDataset(torch.randn(n, *task.input_shape), torch.randint(0, 10, (n,)))


def measure_naslab(order: int, args: argparse.Namespace) -> dict[str, float]:
    torch.manual_seed(0)
    task = Task(10, (3, 32, 32))
    supernet = MicroSpace(4, "darts", "all").build_mixed_supernet(
        task, channels=args.channels, cells_per_stage=args.cells_per_stage
    )
    objective = ImageObjective(channels_last=not args.channels_first)
    module = DartsSearchModule(supernet, order=order, epochs=1, objective=objective)
    data = random_batches(args, task)
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
    trainer.fit(module, train_dataloaders=CombinedLoader(loaders, mode="min_size"))
    measured = timer.times[args.warmup :]
    memory = torch.cuda.max_memory_allocated() / 2**20 if gpu else peak_rss_mib()
    return {"seconds_per_step": sum(measured) / len(measured), "peak_memory_mib": memory, "gpu": float(gpu)}


# quark0/darts runs on torch 0.3 and CUDA; these are the only edits that make it run here.
AUTHORS_PATCHES = {
    "architect.py": [
        (".cuda()", ""),
        ("theta.sub(eta, moment+dtheta)", "theta.sub(moment+dtheta, alpha=eta)"),
        ("g.data.sub_(eta, ig.data)", "g.data.sub_(ig.data, alpha=eta)"),
        ("p.data.add_(R, v)", "p.data.add_(v, alpha=R)"),
        ("p.data.sub_(2*R, v)", "p.data.sub_(v, alpha=2*R)"),
    ],
    "model_search.py": [(".cuda()", "")],
}


def authors_modules(darts_repo: Path, into: Path) -> None:
    """Copies the authors' search model into `into`, patched for a CPU and today's torch."""
    cnn = darts_repo / "cnn" if (darts_repo / "cnn").is_dir() else darts_repo
    for name in ("model_search.py", "architect.py", "operations.py", "genotypes.py"):
        text = (cnn / name).read_text()
        for old, new in AUTHORS_PATCHES.get(name, []):
            if old not in text:
                raise SystemExit(f"--authors-code: {cnn / name} has no '{old}'; is it quark0/darts?")
            text = text.replace(old, new)
        (into / name).write_text(text)


def measure_authors(order: int, args: argparse.Namespace) -> dict[str, float]:
    """train_search.py's step: architect.step(..., unrolled=order == 2), then the weight step."""
    with tempfile.TemporaryDirectory() as tmp:
        authors_modules(Path(args.authors_code), Path(tmp))
        sys.path.insert(0, tmp)
        from architect import Architect  # type: ignore[import-not-found]
        from model_search import Network  # type: ignore[import-not-found]

    torch.manual_seed(0)
    criterion = nn.CrossEntropyLoss()
    model = Network(args.channels, 10, 3 * args.cells_per_stage + 2, criterion)
    optimizer = torch.optim.SGD(model.parameters(), 0.025, momentum=0.9, weight_decay=3e-4)
    hyper = SimpleNamespace(momentum=0.9, weight_decay=3e-4, arch_learning_rate=3e-4, arch_weight_decay=1e-3)
    architect = Architect(model, hyper)
    data = random_batches(args, Task(10, (3, 32, 32)))
    batches = list(DataLoader(data, batch_size=args.batch))
    gpu = torch.cuda.is_available()
    if gpu:
        raise SystemExit("--authors-code: measure the authors' code on a CPU (the patch drops .cuda())")
    model.train()
    times = []
    for x, y in batches:
        start = time.perf_counter()
        architect.step(x, y, x, y, 0.025, optimizer, unrolled=order == 2)
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        times.append(time.perf_counter() - start)
    measured = times[args.warmup :]
    return {"seconds_per_step": sum(measured) / len(measured), "peak_memory_mib": peak_rss_mib(), "gpu": 0.0}


def run_child(impl: str, order: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, *sys.argv[1:], "--impl", impl, "--order", str(order)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--cells-per-stage", type=int, default=2)
    parser.add_argument("--channels-first", action="store_true", help="naslab in NCHW instead of channels-last")
    parser.add_argument("--authors-code", help="a checkout of quark0/darts, to measure its step alongside")
    parser.add_argument("--rounds", type=int, default=1, help="alternating measurements per order and code")
    parser.add_argument("--impl", choices=("naslab", "authors"), help=argparse.SUPPRESS)  # the child process
    parser.add_argument("--order", type=int, choices=(1, 2), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.order is not None:
        measure = measure_authors if args.impl == "authors" else measure_naslab
        print(json.dumps(measure(args.order, args)))
        return
    impls = ("naslab", "authors") if args.authors_code else ("naslab",)
    runs: dict[tuple[str, int], list[dict[str, float]]] = {(i, o): [] for i in impls for o in (1, 2)}
    for _ in range(args.rounds):
        for order in (1, 2):
            for impl in impls:
                runs[impl, order].append(run_child(impl, order))
    results = {k: {m: statistics.median(r[m] for r in v) for m in v[0]} for k, v in runs.items()}
    gpu = results["naslab", 1]["gpu"]
    device = torch.cuda.get_device_name(0) if gpu else f"CPU, {torch.get_num_threads()} threads"
    memory_kind = "torch.cuda.max_memory_allocated" if gpu else "whole-process peak RSS"
    layout = "NCHW" if args.channels_first else "channels-last"
    print(
        f"DARTS search step, C={args.channels}, {3 * args.cells_per_stage + 2} cells, batch {args.batch}, "
        f"32x32x3, {args.steps} steps after {args.warmup} warm-up, median of {args.rounds} round(s) ({device}); "
        f"naslab {layout}"
    )
    for impl in impls:
        for order in (1, 2):
            r = results[impl, order]
            print(
                f"  {impl:7s} order {order}: {r['seconds_per_step']:.3f} s/step, "
                f"{r['peak_memory_mib']:.0f} MiB ({memory_kind})"
            )
        one, two = results[impl, 1], results[impl, 2]
        print(
            f"  {impl:7s} order 2 / order 1: time {two['seconds_per_step'] / one['seconds_per_step']:.2f}x, "
            f"memory {two['peak_memory_mib'] / max(one['peak_memory_mib'], 1e-9):.2f}x"
        )
    if args.authors_code:
        for order in (1, 2):
            ours, theirs = results["naslab", order], results["authors", order]
            print(
                f"  naslab / authors, order {order}: time "
                f"{ours['seconds_per_step'] / theirs['seconds_per_step']:.2f}x, memory "
                f"{ours['peak_memory_mib'] / theirs['peak_memory_mib']:.2f}x"
            )


if __name__ == "__main__":
    main()
