"""Published genotypes: they build, run on CIFAR- and ImageNet-sized input, and match paper sizes."""

from __future__ import annotations

import pytest
import torch

from naslab.spaces import GenotypeError, MicroSpace, Task
from naslab.spaces.published import published_genotype, published_names
from naslab.summary import network_size

SPACE = MicroSpace()
CIFAR = Task(10, (3, 32, 32), "cifar")
IMAGENET = Task(1000, (3, 224, 224), "imagenet")


def test_all_published_genotypes_are_there() -> None:
    assert set(published_names()) == {"darts_v1", "darts_v2", "enas", "nasnet_a", "amoebanet_a", "nao", "nao_ws"}


@pytest.mark.parametrize("name", published_names())
@pytest.mark.parametrize("task", [CIFAR, IMAGENET], ids=["cifar", "imagenet"])
def test_published_genotype_builds_and_runs(name: str, task: Task) -> None:
    g = published_genotype(name)
    net = SPACE.build_child(g, task, channels=8, cells_per_stage=1, auxiliary=True)
    net.train()
    logits, aux = net.forward_with_aux(torch.randn(2, *task.input_shape))
    assert logits.shape == aux.shape == (2, task.num_classes)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize(
    ("name", "task", "channels", "cells", "params"),
    [
        # quark0/darts: DARTS_V2 with C=36, 20 cells, auxiliary head excluded -> 3,349,342 (3.3M)
        ("darts_v2", CIFAR, 36, 6, 3_349_342),
        ("darts_v1", CIFAR, 36, 6, 3_169_414),  # DARTS paper Table 1: 3.3M (1st order) -> 3.17M in code
        ("darts_v2", IMAGENET, 48, 4, 4_718_752),  # DARTS paper Table 3: 4.7M
    ],
)
def test_parameter_counts_match_the_official_code(name, task, channels, cells, params) -> None:
    net = SPACE.build_child(published_genotype(name), task, channels=channels, cells_per_stage=cells, auxiliary=True)
    assert network_size(net, task.input_shape)["params"] == params


def test_unknown_published_name() -> None:
    with pytest.raises(GenotypeError, match="unknown published genotype 'darts_v3'; known: amoebanet_a"):
        published_genotype("darts_v3")
