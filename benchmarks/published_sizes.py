"""Parameters and multiply-adds of the published cells, against the figures of papers and code.

    python benchmarks/published_sizes.py

Prints one row per (genotype, dataset) with our count, the reference and their ratio. References:
DARTS official code (quark0/darts) and DARTS paper Tables 1 and 3 (3.3M / 4.7M, 574M mult-adds on
ImageNet). Sizes: CIFAR F=36, N=6 (20 cells); ImageNet mobile setting F=48, N=4 (14 cells).
"""

from __future__ import annotations

from naslab.spaces import MicroSpace, Task
from naslab.spaces.published import published_genotype, published_names
from naslab.summary import network_size

CIFAR = (Task(10, (3, 32, 32), "cifar"), 36, 6)
IMAGENET = (Task(1000, (3, 224, 224), "imagenet"), 48, 4)
# (genotype, dataset) -> (reference params, reference mult-adds, source)
REFERENCE = {
    ("darts_v2", "cifar10"): (3_349_342, None, "quark0/darts train.py, C=36, 20 cells, aux excluded"),
    ("darts_v1", "cifar10"): (3_169_414, None, "quark0/darts (paper Table 1: 3.3M)"),
    ("darts_v2", "imagenet"): (4_718_752, 574_000_000, "DARTS paper Table 3: 4.7M, 574M"),
}


def main() -> None:
    space = MicroSpace()
    header = ("genotype", "dataset", "params", "ref params", "ratio", "mult-adds", "ref", "ratio")
    print("{:12} {:9} {:>12} {:>12} {:>6} {:>14} {:>12} {:>6}".format(*header))
    for name in published_names():
        for dataset, (task, channels, cells) in (("cifar10", CIFAR), ("imagenet", IMAGENET)):
            net = space.build_child(
                published_genotype(name), task, channels=channels, cells_per_stage=cells, auxiliary=True
            )
            size = network_size(net, task.input_shape)
            ref_params, ref_macs, _ = REFERENCE.get((name, dataset), (None, None, ""))
            ratio_p = f"{size['params'] / ref_params:.3f}" if ref_params else ""
            ratio_m = f"{size['macs'] / ref_macs:.3f}" if ref_macs else ""
            print(
                f"{name:12} {dataset:9} {size['params']:>12,} {ref_params or '':>12} {ratio_p:>6} "
                f"{size['macs']:>14,} {ref_macs or '':>12} {ratio_m:>6}"
            )


if __name__ == "__main__":
    main()
