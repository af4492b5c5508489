"""The DARTS architecture-weight heatmaps."""

from __future__ import annotations

import math
import re

import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from naslab.plots.alpha_plot import alpha_figure, plot_alpha_heatmaps, readable_edge_label, softmax_rows
from naslab.spaces.micro.derive import micro_edges
from naslab.spaces.micro.mixed import edge_label
from naslab.spaces.micro.space import MicroSpace
from tests.plots.figure_checks import assert_texts_inside, assert_tick_labels_apart

OPS = [
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
]


def edge_labels() -> list[str]:
    """The 14 edges of a 4-node DARTS cell, e.g. "c_{k-2} -> 0"."""
    names = ["c_{k-2}", "c_{k-1}"]
    labels = []
    for node in range(4):
        labels += [f"{names[j]} -> {node}" for j in range(node + 2)]
        names.append(str(node))
    return labels


def assert_png(path, min_width: int = 400) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width = mpimg.imread(path).shape[:2]
    assert width > min_width and height > 200


def test_softmax_rows_sum_to_one_and_match_torch() -> None:
    logits = torch.randn(14, 8, generator=torch.Generator().manual_seed(0)) * 3
    weights = softmax_rows(logits)
    assert weights.dtype == np.float64 and weights.shape == (14, 8)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(weights, torch.softmax(logits.double(), dim=-1).numpy(), atol=1e-12)


def test_softmax_rows_known_row_and_numpy_input() -> None:
    np.testing.assert_allclose(softmax_rows(np.array([[0.0, math.log(3.0)]])), [[0.25, 0.75]], atol=1e-12)
    # float32 input is computed in float64, and large logits must not overflow
    weights = softmax_rows(np.array([[1000.0, 1000.0]], dtype=np.float32))
    assert weights.dtype == np.float64
    np.testing.assert_allclose(weights, [[0.5, 0.5]])


def test_softmax_rows_rejects_non_2d() -> None:
    with pytest.raises(ValueError, match="2-D"):
        softmax_rows(torch.zeros(8))


def test_two_panels_png(tmp_path) -> None:
    generator = torch.Generator().manual_seed(1)
    alphas = {
        "normal": 1e-3 * torch.randn(14, 8, generator=generator, requires_grad=True),
        "reduce": np.random.default_rng(0).normal(size=(14, 8)),
    }
    labels = {"normal": edge_labels(), "reduce": edge_labels()}
    path = plot_alpha_heatmaps(alphas, labels, OPS, tmp_path / "alphas" / "epoch_003.png", "epoch 3")
    assert path == tmp_path / "alphas" / "epoch_003.png"
    assert_png(path, min_width=800)
    assert plt.get_fignums() == []


def test_single_panel_png(tmp_path) -> None:
    alpha = torch.tensor([[0.0, 2.0, -1.0], [1.0, 1.0, 1.0]], requires_grad=True)
    path = plot_alpha_heatmaps(
        {"normal": alpha}, {"normal": ["a -> 0", "b -> 0"]}, ["none", "skip", "conv"], tmp_path / "a.png"
    )
    assert_png(path)


@pytest.mark.parametrize(
    ("alphas", "labels", "ops", "match"),
    [
        ({"normal": np.zeros((3, 2))}, {"normal": ["a", "b"]}, ["x", "y"], "3 rows but 2 row labels"),
        ({"normal": np.zeros((2, 3))}, {"normal": ["a", "b"]}, ["x", "y"], "3 columns but 2 op names"),
        ({"normal": np.zeros((2, 2, 2))}, {"normal": ["a", "b"]}, ["x", "y"], "2-D"),
        ({"normal": np.zeros(2)}, {"normal": ["a", "b"]}, ["x", "y"], "2-D"),
        ({"normal": np.zeros((2, 2))}, {"reduce": ["a", "b"]}, ["x", "y"], "no row labels"),
        ({}, {}, ["x", "y"], "empty"),
    ],
)
def test_value_errors(tmp_path, alphas, labels, ops, match) -> None:
    with pytest.raises(ValueError, match=match):
        plot_alpha_heatmaps(alphas, labels, ops, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


@pytest.mark.parametrize(
    ("label", "readable"),
    [
        ("c_{k-2} -> node 0", "0 ($c_{k-2}$) \u2192 2"),
        ("c_{k-1} -> node 3", "1 ($c_{k-1}$) \u2192 5"),
        ("node 0 -> node 1", "2 \u2192 3"),
        ("node 2 -> node 3", "4 \u2192 5"),
        ("8<-7", "7 \u2192 8"),
        ("1<-0", "0 \u2192 1"),
        ("a -> 0", "a -> 0"),  # anything else is shown as given
    ],
)
def test_rows_are_named_in_the_genotype_strings_numbering(label, readable) -> None:
    assert readable_edge_label(label) == readable


def test_each_derived_branch_is_the_boxed_maximum_of_the_row_named_like_it() -> None:
    """Derive a DARTS cell from alphas, draw the alphas: branch `op(j)` of node `k=...` in the genotype string
    is the row labelled "j ... -> k", with `op` its maximum."""
    space = MicroSpace(num_nodes=4, op_set="darts", concat="all")
    ops = list(space.mixed_ops)
    edges = micro_edges(4)
    alphas = torch.randn(len(edges), len(ops), generator=torch.Generator().manual_seed(3))
    genotype = space.derive({"normal": alphas, "reduce": alphas})
    labels = {"normal": [edge_label(k, j) for k, j in edges]}
    fig = alpha_figure({"normal": alphas}, labels, ops, "epoch 1")
    ax = fig.axes[0]
    rows = [t.get_text() for t in ax.get_yticklabels()]
    weights = softmax_rows(alphas)
    text = str(genotype.normal)  # "2=op(j)+op(j) 3=... -> cat[...]"
    branches = [
        (int(k), op, int(j))
        for k, node in re.findall(r"(\d+)=(\S+)", text)
        for op, j in re.findall(r"(\w+)\((\d+)\)", node)
    ]
    assert len(branches) == 8
    for k, op, j in branches:
        (row,) = [r for r, name in enumerate(rows) if re.match(rf"^{j}\b.* \u2192 {k}$", name)]
        strongest = max((w, name) for w, name in zip(weights[row], ops) if name != "none")[1]
        assert strongest == op
    assert_texts_inside(fig)


def test_one_panel_title_is_wrapped_inside_the_figure_and_op_names_apart() -> None:
    alpha = np.random.default_rng(0).normal(size=(36, 5))
    labels = {"recurrent": [f"{i}<-{j}" for i in range(1, 9) for j in range(i)]}
    fig = alpha_figure(
        {"recurrent": alpha},
        labels,
        ["none", "tanh", "relu", "identity", "sigmoid"],
        "DARTS order 2, epoch 2: softmax(alpha) per edge",
    )
    assert_texts_inside(fig)
    assert_tick_labels_apart(fig.axes[0].xaxis)
    assert_tick_labels_apart(fig.axes[0].yaxis)
    assert fig.axes[0].get_yticklabels()[0].get_text() == "0 \u2192 1"
