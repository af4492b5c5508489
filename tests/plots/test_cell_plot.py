import re
from collections import Counter
from itertools import combinations

import matplotlib
import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import pytest
from matplotlib.text import Annotation

from naslab.plots import cell_plot, cell_to_dot, draw_cell, draw_genotype
from naslab.spaces.base import GenotypeError
from naslab.spaces.micro.genotype import MicroGenotype, make_cell
from tests.plots.figure_checks import assert_texts_inside

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EDGE = re.compile(r'^\s*"([^"]+)" -> "([^"]+)" \[(.*)\];$', re.M)

DARTS_V2_NORMAL = make_cell(
    [
        ((0, "sep_conv_3x3"), (1, "sep_conv_3x3")),
        ((0, "sep_conv_3x3"), (1, "sep_conv_3x3")),
        ((1, "sep_conv_3x3"), (0, "identity")),
        ((0, "identity"), (2, "dil_conv_3x3")),
    ],
    concat=(2, 3, 4, 5),
)
DARTS_V2_REDUCE = make_cell(
    [
        ((0, "max_pool_3x3"), (1, "max_pool_3x3")),
        ((2, "identity"), (1, "max_pool_3x3")),
        ((0, "max_pool_3x3"), (2, "identity")),
        ((2, "identity"), (1, "max_pool_3x3")),
    ],
    concat=(2, 3, 4, 5),
)
# Twin branches from one input, "none" branches, a four-deep chain, ENAS-style concat.
ODD_CELL = make_cell(
    [
        ((0, "sep_conv_5x5"), (0, "sep_conv_3x3")),
        ((2, "avg_pool_3x3"), (1, "none")),
        ((3, "identity"), (2, "dil_conv_5x5")),
        ((4, "sep_conv_3x3"), (0, "max_pool_3x3")),
        ((1, "none"), (1, "identity")),
    ]
)


@pytest.fixture
def genotype():
    return MicroGenotype(DARTS_V2_NORMAL, DARTS_V2_REDUCE)


def edges(dot):
    return [(u, v, attrs) for u, v, attrs in EDGE.findall(dot)]


def non_none_branches(cell):
    return [(k, b) for k, n in enumerate(cell.nodes) for b in n.branches if b.op != "none"]


def check_png(path, min_w=300, min_h=200):
    assert path.exists()
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    img = mpimg.imread(path)
    h, w = img.shape[:2]
    assert min_w <= w <= 6000 and min_h <= h <= 4000, (w, h)
    assert img.shape[2] in (3, 4)
    return w, h


@pytest.mark.parametrize("cell", [DARTS_V2_NORMAL, DARTS_V2_REDUCE, ODD_CELL])
def test_dot_has_one_labelled_edge_per_branch_and_the_concat_edges(cell):
    dot = cell_to_dot(cell, "a cell")
    found = edges(dot)
    labelled = [(u, v, a) for u, v, a in found if "label=" in a]
    concat = [(u, v, a) for u, v, a in found if v == "c_{k}"]
    assert len(labelled) == len(non_none_branches(cell))
    assert len(concat) == len(cell.concat)
    assert len(found) == len(labelled) + len(concat)
    assert all("label=" not in a for _, _, a in concat)

    # DOT nodes are named by their state number in the genotype string: inputs 0 and 1, node k is k + 2.
    expected = sorted((str(b.input), str(k + 2), f'label="{b.op}"') for k, b in non_none_branches(cell))
    assert sorted((u, v, a.split(",")[0]) for u, v, a in labelled) == expected
    assert sorted(u for u, _, _ in concat) == sorted(str(i) for i in cell.concat)


def test_dot_style_follows_darts(genotype):
    dot = cell_to_dot(genotype.normal, "DARTS_V2 normal")
    assert dot.startswith('digraph "DARTS_V2 normal" {') and dot.rstrip().endswith("}")
    assert "rankdir=LR" in dot
    assert '"0" [label="0 (c_{k-2})", fillcolor=darkseagreen2];' in dot
    assert '"1" [label="1 (c_{k-1})", fillcolor=darkseagreen2];' in dot
    assert '"c_{k}" [fillcolor=palegoldenrod];' in dot
    for k in range(genotype.normal.num_nodes):
        assert f'"{k + 2}" [fillcolor=lightblue];' in dot
    for op in ("sep_conv_3x3", "identity", "dil_conv_3x3"):
        assert f'label="{op}"' in dot
    assert dot.count('label="sep_conv_3x3"') == 5
    assert dot.count('label="identity"') == 2
    assert dot.count('label="dil_conv_3x3"') == 1


def test_none_branches_are_omitted():
    dot = cell_to_dot(ODD_CELL, "odd")
    assert "none" not in dot
    assert len([e for e in edges(dot) if "label=" in e[2]]) == 8
    # Node 6 (the fifth) keeps its one real branch; its "none" branch from input 1 is gone.
    assert [(u, v) for u, v, _ in edges(dot) if v == "6"] == [("1", "6")]
    assert '"6" [fillcolor=lightblue];' in dot


def test_titles_are_quoted():
    dot = cell_to_dot(DARTS_V2_NORMAL, 'my "best" cell')
    assert 'digraph "my \\"best\\" cell" {' in dot


def test_draw_cell_writes_png_and_dot(tmp_path, genotype):
    assert plt.get_fignums() == []
    backend = matplotlib.get_backend()
    png = draw_cell(genotype.normal, tmp_path / "normal.png", "DARTS_V2 normal")
    assert png == tmp_path / "normal.png"
    check_png(png)
    dot = png.with_suffix(".dot")
    assert dot.read_text() == cell_to_dot(genotype.normal, "DARTS_V2 normal")
    assert plt.get_fignums() == []
    assert matplotlib.get_backend() == backend


def test_draw_cell_leaves_open_pyplot_figures_alone(tmp_path):
    fig = plt.figure()
    try:
        draw_cell(ODD_CELL, tmp_path / "odd.png", "odd")
        assert plt.get_fignums() == [fig.number]
    finally:
        plt.close(fig)
    assert plt.get_fignums() == []


def test_draw_cell_accepts_str_paths_and_creates_folders(tmp_path):
    png = draw_cell(ODD_CELL, str(tmp_path / "a" / "b" / "odd"), "odd")
    assert png == tmp_path / "a" / "b" / "odd.png"
    check_png(png)
    assert (tmp_path / "a" / "b" / "odd.dot").exists()


def test_width_grows_with_depth(tmp_path):
    shallow = make_cell([((0, "identity"), (1, "identity"))] * 3, concat=(2, 3, 4))
    chain = [((k, "identity"), (1, "identity")) for k in range(2, 6)]
    deep = make_cell([((0, "identity"), (1, "identity"))] + chain)
    w_shallow, _ = check_png(draw_cell(shallow, tmp_path / "shallow.png", "shallow"))
    w_deep, _ = check_png(draw_cell(deep, tmp_path / "deep.png", "deep"))
    assert w_deep > w_shallow * 1.5


def test_draw_genotype(tmp_path, genotype):
    paths = draw_genotype(genotype, tmp_path / "out", prefix="ep10_")
    assert paths == [tmp_path / "out" / "ep10_normal.png", tmp_path / "out" / "ep10_reduce.png"]
    for png, cell in zip(paths, (genotype.normal, genotype.reduce)):
        check_png(png)
        dot = png.with_suffix(".dot").read_text()
        assert len([e for e in edges(dot) if "label=" in e[2]]) == len(non_none_branches(cell))
    assert plt.get_fignums() == []
    assert [p.name for p in draw_genotype(genotype, tmp_path)] == ["normal.png", "reduce.png"]


def test_invalid_cell_is_rejected_before_writing(tmp_path):
    bad = make_cell([((3, "identity"), (0, "identity"))], concat=(2,))
    with pytest.raises(GenotypeError):
        draw_cell(bad, tmp_path / "bad.png", "bad")
    assert list(tmp_path.iterdir()) == []
    assert plt.get_fignums() == []


@pytest.mark.parametrize("cell", [DARTS_V2_NORMAL, DARTS_V2_REDUCE, ODD_CELL])
def test_layout_is_by_depth_and_labels_do_not_coincide(cell):
    depth = cell_plot._depths(cell)
    pos = cell_plot._positions(cell, depth)
    n_states = 2 + cell.num_nodes
    for i, d in enumerate(depth):
        assert pos[i][0] == pytest.approx(d * cell_plot._DX)
    for k, node in enumerate(cell.nodes):
        real = [b.input for b in node.branches if b.op != "none"]
        assert depth[k + 2] == 1 + max((depth[i] for i in real), default=0)
    assert depth[n_states] == max(depth[:n_states]) + 1
    edges_ = cell_plot._route(cell, pos)
    cell_plot._place_labels(edges_, pos, n_states)
    labels = [e.label_xy for e in edges_ if e.op is not None]
    assert len(labels) == len(non_none_branches(cell))
    for a, b in combinations(labels, 2):
        assert a != pytest.approx(b, abs=0.05)
    # Two branches of one node from the same input bend opposite ways.
    twins = [e for e in edges_ if (e.src, e.dst) == (0, 2)] if cell is ODD_CELL else []
    if twins:
        assert len(twins) == 2 and twins[0].rad * twins[1].rad < 0


def string_edges(cell) -> Counter:
    """(source, target) of every drawn edge, read off the genotype string: `k=op(j)+op(j)` (ops other than
    none) and `-> cat[...]` (node -> "out")."""
    text = str(cell)
    found = Counter()
    for k, node in re.findall(r"(\d+)=(\S+)", text):
        for op, j in re.findall(r"(\w+)\((\d+)\)", node):
            if op != "none":
                found[(j, k, op)] += 1
    (concat,) = re.findall(r"cat\[([\d, ]*)\]", text)
    for i in concat.split(","):
        found[(i.strip(), "out", None)] += 1
    return found


def picture_edges(fig) -> Counter:
    """(source, target, op label) of every arrow of a cell figure, nodes named by the number written in them."""
    ax = fig.axes[0]
    node_at = {}
    for t in ax.texts:
        if not isinstance(t, Annotation) and t.get_fontsize() == cell_plot._NODE_FONT:
            text = t.get_text()
            node_at[tuple(round(v, 6) for v in t.get_position())] = (
                "out" if text == "$c_{k}$" else re.match(r"^\d+", text).group()
            )
    labels = [t for t in ax.texts if not isinstance(t, Annotation) and t.get_fontsize() == cell_plot._EDGE_FONT]
    found = Counter()
    for arrow in (t for t in ax.texts if isinstance(t, Annotation)):
        src = node_at[tuple(round(v, 6) for v in arrow.xyann)]
        dst = node_at[tuple(round(v, 6) for v in arrow.xy)]
        found[(src, dst)] += 1
    return found, sorted(t.get_text() for t in labels), node_at


@pytest.mark.parametrize("cell", [DARTS_V2_NORMAL, DARTS_V2_REDUCE, ODD_CELL])
def test_picture_numbers_nodes_as_the_genotype_string(cell):
    """A reader matches `3=avg_pool_3x3(2)+...` to the picture: circle "3" has an arrow from node "2"."""
    fig = cell_plot.cell_figure(cell, "a cell")
    arrows, op_labels, node_at = picture_edges(fig)
    expected = string_edges(cell)
    wanted = Counter()
    for (s, d, _), n in expected.items():
        wanted[(s, d)] += n
    assert arrows == wanted
    assert op_labels == sorted(op for (_, _, op), n in expected.items() for _ in range(n) if op is not None)
    # the two inputs keep their DARTS names beside their numbers; intermediate nodes are numbered from 2
    texts = sorted(t.get_text() for t in fig.axes[0].texts if t.get_fontsize() == cell_plot._NODE_FONT)
    assert "0 ($c_{k-2}$)" in texts and "1 ($c_{k-1}$)" in texts
    assert sorted(node_at.values()) == sorted(["0", "1", "out"] + [str(k + 2) for k in range(cell.num_nodes)])


def test_subtitle_is_the_genotype_string_and_nothing_is_clipped():
    fig = cell_plot.cell_figure(DARTS_V2_NORMAL, "DARTS_V2 normal")
    titles = [t.get_text() for t in fig.texts]
    assert titles[0] == "DARTS_V2 normal"
    assert titles[1].replace("\n", " ") == str(DARTS_V2_NORMAL)
    assert_texts_inside(fig)


def test_concat_edges_are_dashed_and_op_edges_solid():
    fig = cell_plot.cell_figure(ODD_CELL, "odd")
    styles = Counter((a.arrow_patch.get_linestyle() != "-") for a in fig.axes[0].texts if isinstance(a, Annotation))
    assert styles[True] == len(ODD_CELL.concat)
    assert styles[False] == len(non_none_branches(ODD_CELL))


def test_tied_genotype_pictures_say_normal_equals_reduce(tmp_path):
    genotype = MicroGenotype(DARTS_V2_NORMAL, DARTS_V2_NORMAL)
    paths = draw_genotype(genotype, tmp_path, tied=True)
    assert [p.name for p in paths] == ["normal.png", "reduce.png"]
    for p in paths:
        assert p.with_suffix(".dot").read_text().startswith('digraph "cell (normal = reduce)" {')
