"""Chain pictures (ENAS macro, NASES): layers top to bottom, skips as a matrix, named as genotype strings name them."""

from __future__ import annotations

import re

import matplotlib.pyplot as plt
import pytest

from naslab.plots import chain_plot
from naslab.plots.chain_plot import chain_figure, draw_chain, skip_gid
from tests.plots.figure_checks import assert_texts_inside


def boxes(fig) -> list[str]:
    """The layer boxes' texts, top to bottom ("j: op")."""
    texts = [t for t in fig.axes[0].texts if re.match(r"^\d+: ", t.get_text())]
    return [t.get_text() for t in sorted(texts, key=lambda t: -t.get_position()[1])]


def skip_squares(fig) -> set[str]:
    return {p.get_gid() for p in fig.axes[0].patches if p.get_gid()}


def picture_of(description: str) -> tuple[list[str], set[str]]:
    """What the picture of `description` ("0:op 1:op[+0] 2:op[+0,1] ...") must show: its boxes and squares."""
    labels, squares = [], set()
    for j, op, read in re.findall(r"(\d+):([^\s\[]+)(?:\[\+([\d,]+)\])?", description):
        labels.append(f"{j}: {op}")
        squares |= {skip_gid(int(i), int(j)) for i in read.split(",") if read}
    return labels, squares


def captured(monkeypatch) -> list:
    """The figures `draw_chain` saves, kept for a look at their artists."""
    figures = []
    build = chain_plot.chain_figure

    def keep(*args, **kwargs):
        figures.append(build(*args, **kwargs))
        return figures[-1]

    monkeypatch.setattr(chain_plot, "chain_figure", keep)
    return figures


def test_boxes_and_squares_follow_the_layers() -> None:
    layers = [("conv_3x3", ()), ("sep_conv_5x5", (0,)), ("max_pool_3x3", ()), ("conv_5x5", (0, 2))]
    key = {"conv": "#add8e6", "pool": "#eee8aa"}
    fig = chain_figure(
        layers, lambda op: key["pool" if "pool" in op else "conv"], reductions=[1], title="macro", key=key
    )
    assert boxes(fig) == ["0: conv_3x3", "1: sep_conv_5x5", "2: max_pool_3x3", "3: conv_5x5"]
    assert skip_squares(fig) == {skip_gid(0, 1), skip_gid(0, 3), skip_gid(2, 3)}
    # column numbers are layer numbers 0 .. L-2 (the last layer is read by none)
    assert [t.get_text() for t in fig.axes[0].texts if t.get_text().isdigit()] == ["0", "1", "2"]
    assert any(t.get_text() == "/2 resolution" for t in fig.axes[0].texts)
    assert {"conv", "pool"} <= {t.get_text() for t in fig.axes[0].texts}  # the colour key
    assert_texts_inside(fig)


def test_draw_chain_saves_a_png_and_leaves_pyplot_alone(tmp_path) -> None:
    png = draw_chain([("conv_3x3", ())], lambda op: "#ffffff", tmp_path / "a" / "chain.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plt.get_fignums() == []


@pytest.mark.parametrize("dense", [False, True])
def test_long_labels_and_dense_skips_stay_inside(dense) -> None:
    layers = [("max_pool_7x7/256", tuple(range(j)) if dense else ()) for j in range(15)]
    fig = chain_figure(layers, lambda op: "#ffffff", [4, 9], title="NASES network, 15 layers")
    assert len(skip_squares(fig)) == (15 * 14 // 2 if dense else 0)
    assert_texts_inside(fig)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes_ = [t.get_window_extent(renderer) for t in fig.axes[0].texts if re.match(r"^\d+: ", t.get_text())]
    for a, b in zip(boxes_, boxes_[1:]):
        assert not a.overlaps(b)
