"""Pictures of recurrent cells: a real PNG and a graphviz file naming every node and read."""

from __future__ import annotations

import re

import numpy as np

from naslab.plots.genotype import draw_genotype_pictures
from naslab.plots.rnn_plot import draw_rnn_cell, rnn_cell_figure, rnn_cell_to_dot
from naslab.spaces.rnn.space import RNNGenotype, RNNNode, RNNSpace
from tests.plots.figure_checks import assert_texts_inside

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_draw_writes_png_and_dot(tmp_path) -> None:
    g = RNNSpace(8).sample(np.random.default_rng(0))
    png = draw_rnn_cell(g, tmp_path / "pics" / "rnn_cell.png")
    assert png == tmp_path / "pics" / "rnn_cell.png"
    data = png.read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 1000
    dot = (tmp_path / "pics" / "rnn_cell.dot").read_text()
    assert dot.startswith('digraph "rnn_cell"')
    for i, node in enumerate(g.nodes, start=1):
        assert f'N{i} [label="{i}\\n{node.activation}"' in dot
        assert f"N{node.input} -> N{i};" in dot
    assert "N0 [" in dot and "x_t -> N0;" in dot and "h_prev -> N0;" in dot


def test_dot_joins_exactly_the_output_nodes_into_h_t() -> None:
    """Loose ends (ENAS) vs all nodes (DARTS): only the averaged nodes feed h_t and are highlighted."""
    nodes = (RNNNode("tanh", 0), RNNNode("relu", 1), RNNNode("identity", 1))
    for output, expected in (("loose_ends", {2, 3}), ("all", {1, 2, 3})):
        dot = rnn_cell_to_dot(RNNGenotype(nodes, output))
        assert {int(i) for i in re.findall(r"N(\d+) -> h_t", dot)} == expected
        assert {int(i) for i in re.findall(r"N(\d+) \[[^\]]*penwidth", dot)} == expected


def test_space_draw_uses_it(tmp_path) -> None:
    space = RNNSpace(2, output="all")
    g = space.sample(np.random.default_rng(1))
    assert draw_genotype_pictures(space, g, tmp_path) == [tmp_path / "rnn_cell.png"]
    assert (tmp_path / "rnn_cell.dot").exists()


def test_boxes_are_numbered_as_the_genotype_string_and_it_is_the_subtitle() -> None:
    """Entry i of "sigmoid(0) relu(1) ... -> avg[...]" is box "i\\nsigmoid"; the string itself is under the title."""
    g = RNNGenotype((RNNNode("sigmoid", 0), RNNNode("relu", 1), RNNNode("tanh", 0), RNNNode("identity", 2)), "all")
    fig = rnn_cell_figure(g)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts[:2] == ["recurrent cell", str(g)]
    entries = re.findall(r"(\w+)\((\d+)\)", str(g))
    boxes = [t for t in texts if re.match(r"^\d+\n", t)]
    assert boxes == ["0\nhighway tanh"] + [f"{i}\n{act}" for i, (act, _) in enumerate(entries, start=1)]
    dot = rnn_cell_to_dot(g)
    assert {(int(j), i) for i, (_, j) in enumerate(entries, start=1)} == {
        (int(a), int(b)) for a, b in re.findall(r"N(\d+) -> N(\d+);", dot)
    }
    assert_texts_inside(fig)
