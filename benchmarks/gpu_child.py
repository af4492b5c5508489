"""Training throughput and model FLOP utilisation of the DARTS_V2 CIFAR-10 child (C=36, 20 cells).

    python benchmarks/gpu_child.py [--batch 96] [--steps 20] [--warmup 5] [--compile] [--peak-tflops 989]

The paper's final-training network (quark0/darts train.py: 36 channels, 20 cells, auxiliary head
weighted 0.4, drop path 0.2, batch 96) trained on CIFAR-shaped random batches (the cost does not
depend on the pixels) in four settings, each measured in this one run: float32 NCHW (what the
authors' code runs), float32 channels-last, bf16 autocast channels-last (naslab's trainer=gpu), and
with `--compile` the last one under torch.compile. Prints images/s per setting and the model FLOP
utilisation: 3 x 2 x multiply-adds per image (forward, and a backward of twice the forward), times
images/s, over the card's peak dense bf16 rate (`PEAK_TFLOPS` by card name, or `--peak-tflops`).
On a CPU it runs too (a smaller `--steps` helps) and prints images/s without a utilisation.
"""

from __future__ import annotations

import argparse
import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from naslab.spaces import MicroSpace, Task
from naslab.spaces.published import published_genotype
from naslab.summary import network_size

TASK = Task(10, (3, 32, 32), "cifar")
# Dense (no sparsity) bf16 tensor-core peak, TFLOP/s, from NVIDIA's data sheets.
PEAK_TFLOPS = {"H200": 989.0, "H100 SXM": 989.0, "H100 PCIe": 756.0, "H100": 989.0, "A100": 312.0, "L4": 121.0}


def card_peak(name: str) -> float | None:
    for key, peak in PEAK_TFLOPS.items():  # longest names first in the table where they overlap
        if key in name:
            return peak
    return None


def images_per_second(args: argparse.Namespace, channels_last: bool, bf16: bool, compile: bool) -> float:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    net = MicroSpace().build_child(published_genotype("darts_v2"), TASK, channels=36, cells_per_stage=6, auxiliary=True)
    net.set_drop_path(0.2)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    net = net.to(device, memory_format=layout).train()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
    forward = torch.compile(net.forward_with_aux) if compile else net.forward_with_aux
    x = torch.randn(args.batch, *TASK.input_shape, device=device).contiguous(memory_format=layout)
    y = torch.randint(0, 10, (args.batch,), device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()

    def step() -> None:
        with autocast:
            logits, aux = forward(x)
            loss = F.cross_entropy(logits, y) + 0.4 * F.cross_entropy(aux, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        optimizer.step()

    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return args.steps * args.batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=96)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--compile", action="store_true", help="also measure bf16 channels-last under torch.compile")
    parser.add_argument("--peak-tflops", type=float, help="the device's peak dense bf16 TFLOP/s (default: by name)")
    args = parser.parse_args()
    gpu = torch.cuda.is_available()
    name = torch.cuda.get_device_name(0) if gpu else f"CPU, {torch.get_num_threads()} threads"
    peak = args.peak_tflops or (card_peak(name) if gpu else None)
    net = MicroSpace().build_child(published_genotype("darts_v2"), TASK, channels=36, cells_per_stage=6, auxiliary=True)
    size = network_size(net, TASK.input_shape)
    flops_per_image = 3 * 2 * size["macs"]
    print(
        f"DARTS_V2 child, C=36, 20 cells, {size['params']:,} parameters, {size['macs']:,} multiply-adds per image, "
        f"batch {args.batch}, {args.steps} steps after {args.warmup} ({name})"
    )
    settings = [("float32 NCHW", False, False, False), ("float32 channels-last", True, False, False)]
    settings.append(("bf16 autocast channels-last", True, True, False))
    if args.compile:
        settings.append(("bf16 channels-last torch.compile", True, True, True))
    baseline = None
    for label, channels_last, bf16, compile in settings:
        rate = images_per_second(args, channels_last, bf16, compile)
        baseline = baseline or rate
        mfu = f", MFU {rate * flops_per_image / (peak * 1e12):.1%} of {peak:.0f} TFLOP/s" if peak else ""
        print(f"  {label:34s} {rate:9.1f} images/s ({rate / baseline:.2f}x){mfu}")


if __name__ == "__main__":
    main()
