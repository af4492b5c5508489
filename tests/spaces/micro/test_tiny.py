"""space=micro_tiny: the exhaustively measured cell space of the all-methods study (experiment=search_phase_cnn).

Its invariants: enumerate covers every architecture once per key, every token sequence is a valid cell,
the progressive levels reach exactly what enumerate lists, the ENAS supernet computes each child, and
DARTS' mixed supernet with an architecture's one-hot weights computes that architecture and nothing else.
"""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from naslab.plots.genotype import draw_genotype_pictures
from naslab.spaces import MicroSpace, Task
from naslab.spaces.base import GenotypeError
from naslab.spaces.micro.genotype import Branch, Cell, MicroGenotype, Node
from naslab.spaces.micro.network import MicroNetwork
from naslab.studies.groundtruth import distinct_architectures, lower_levels

pytestmark = pytest.mark.usefixtures("one_torch_thread")

OPS = ("sep_conv_3x3", "max_pool_3x3", "identity")
TASK = Task(10, (1, 28, 28))


@pytest.fixture(scope="module")
def space() -> MicroSpace:
    return instantiate(OmegaConf.load("conf/space/micro_tiny.yaml"))


def cell(*branches: tuple[int, str]) -> MicroGenotype:
    nodes = tuple(Node(Branch(*branches[i]), Branch(*branches[i + 1])) for i in range(0, len(branches), 2))
    c = Cell(nodes, tuple(range(2, 2 + len(nodes))))
    return MicroGenotype(c, c)


def test_the_space_is_the_documented_one(space: MicroSpace) -> None:
    assert space.ops == OPS and space.num_nodes == 2 and space.tied and space.distinct_inputs
    assert space.concat_rule == "all" and space.mixed_ops == ("none", *OPS)


def test_enumerate_covers_every_architecture_by_hand_count(space: MicroSpace) -> None:
    # Node 0 reads the two cell inputs, one op each: 3 * 3. Node 1 reads 2 of its 3 states, one op each: 3 * 9.
    # Counted independently of the token encoding: all cells with two different inputs per node, up to swaps.
    by_hand = set()
    for a, b in itertools.product(OPS, repeat=2):
        for (i, j), (c, d) in itertools.product(itertools.combinations(range(3), 2), itertools.product(OPS, repeat=2)):
            by_hand.add(space.key(cell((0, a), (1, b), (i, c), (j, d))))
    every = distinct_architectures(space, space.enumerate())
    assert len(by_hand) == 243 and {space.key(g) for g in every} == by_hand
    assert space.size() == 972 == 4 * 243  # token sequences: each cell twice per node (branch swap)


def test_every_token_sequence_is_a_valid_cell_and_tokens_round_trip(space: MicroSpace) -> None:
    for tokens in itertools.product(*(range(n) for n in space.token_choices())):
        genotype = space.from_tokens(tokens)
        space.validate(genotype)
        assert all(n.left.input != n.right.input for n in genotype.normal.nodes)
        assert space.to_tokens(genotype) == tokens


def test_a_node_reading_one_input_twice_is_refused(space: MicroSpace) -> None:
    with pytest.raises(GenotypeError, match="reads input 1 twice"):
        space.validate(cell((0, "identity"), (1, "identity"), (1, "identity"), (1, "sep_conv_3x3")))


def test_sampling_is_uniform_over_architectures(space: MicroSpace) -> None:
    chisquare = pytest.importorskip("scipy.stats").chisquare
    rng = np.random.default_rng(0)
    keys = [space.key(space.sample(rng)) for _ in range(24_300)]
    counts = np.unique(keys, return_counts=True)[1]
    assert len(counts) == 243 and chisquare(counts).pvalue > 1e-3


def test_progressive_levels_reach_exactly_the_enumerated_space(space: MicroSpace) -> None:
    level1 = space.expand(None)
    assert len(level1) == 9 and all(space.level(g) == 1 for g in level1)
    level2 = distinct_architectures(space, (child for g in level1 for child in space.expand(g)))
    every = distinct_architectures(space, space.enumerate())
    assert sorted(space.key(g) for g in level2) == sorted(space.key(g) for g in every)
    assert [space.key(g) for g in lower_levels(space)] == [space.key(g) for g in level1]
    assert all(space.prefix(g, 1) in level1 for g in level2)


def test_enas_supernet_equals_each_child_given_its_weights(space: MicroSpace) -> None:
    torch.manual_seed(0)
    net = space.build_supernet(TASK, channels=8, cells_per_stage=1).eval()
    x = torch.randn(2, *TASK.input_shape)
    for seed in range(4):
        g = space.sample(np.random.default_rng(seed))
        child = MicroNetwork(g, 10, 1, channels=8, cells_per_stage=1)
        child.load_state_dict(net.child_state_dict(g), strict=True)
        assert torch.equal(net(x, g), child.eval()(x))


def mixed_supernet(space: MicroSpace):
    torch.manual_seed(0)
    return space.build_mixed_supernet(TASK, channels=4, cells_per_stage=1).eval()


def test_mixed_supernet_has_one_alpha_matrix_for_the_tied_cell(space: MicroSpace) -> None:
    net = mixed_supernet(space)
    assert net.alpha_shapes == {"cell": (5, 4)}  # edges 2 + 3, ops none + 3
    weights = {"cell": torch.softmax(torch.randn(5, 4), dim=-1)}
    assert net(torch.randn(2, *TASK.input_shape), weights).shape == (2, 10)


def test_one_hot_weights_compute_the_architecture_and_nothing_else(space: MicroSpace) -> None:
    """With an architecture's one-hot weights, the mixed supernet's output depends only on that
    architecture's ops: scrambling every other op's parameters changes nothing, and their gradient is 0."""
    x = torch.randn(4, *TASK.input_shape)
    for seed in range(3):
        g = space.sample(np.random.default_rng(seed))
        weights = {k: w.requires_grad_(False) for k, w in space.relaxed_weights(g).items()}
        net = mixed_supernet(space)
        used = {(k, b.input, b.op) for k, node in enumerate(g.normal.nodes) for b in node.branches}
        edges = [(k, j) for k in range(2) for j in range(k + 2)]
        reference = net(x, weights)
        # gradients: weights held fixed as tensors that require grad, so every op runs and gets its gradient
        net.zero_grad()
        net(x, {k: w.clone().requires_grad_(True) for k, w in weights.items()}).square().sum().backward()
        for c in net.cells:
            for row, (k, j) in enumerate(edges):
                for op_name, op in zip(space.mixed_ops, c.edges[row].ops):
                    params = [p for p in op.parameters()]
                    if (k, j, op_name) not in used:
                        assert all(p.grad is None or torch.count_nonzero(p.grad) == 0 for p in params)
                        with torch.no_grad():
                            for p in params:
                                p.add_(torch.randn_like(p))
        assert torch.allclose(net(x, weights), reference, atol=1e-6)


def test_derivation_inverts_the_one_hot_weights(space: MicroSpace) -> None:
    for g in distinct_architectures(space, space.enumerate()):
        assert space.key(space.derive(space.relaxed_weights(g))) == space.key(g)


def test_untied_one_hot_weights_round_trip_through_derivation() -> None:
    """DARTS' space: every derivable cell (two different inputs per node, no `none` op) comes back."""
    space = MicroSpace(3, "darts", concat="all")
    rng = np.random.default_rng(0)
    checked = 0
    while checked < 20:
        g = space.sample(rng)
        branches = [b for c in g.cells.values() for n in c.nodes for b in n.branches]
        nodes = [n for c in g.cells.values() for n in c.nodes]
        if all(n.left.input != n.right.input for n in nodes) and all(b.op != "none" for b in branches):
            assert space.key(space.derive(space.relaxed_weights(g))) == space.key(g)
            checked += 1


def test_pictures_number_nodes_as_describe_and_say_the_cell_is_tied(space: MicroSpace, tmp_path) -> None:
    """describe() writes the one cell once as "cell (normal = reduce): 2=op(j)+op(j) ..."; both pictures are titled
    so, and their edges are the string's: input j -> node k labelled op, and node -> c_{k} for cat[...]."""
    g = cell((1, "max_pool_3x3"), (0, "max_pool_3x3"), (0, "sep_conv_3x3"), (2, "identity"))
    text = space.describe(g)
    assert text.startswith("cell (normal = reduce): ")
    expected = {
        (j, k, op) for k, node in re.findall(r"(\d+)=(\S+)", text) for op, j in re.findall(r"(\w+)\((\d+)\)", node)
    }
    (concat,) = re.findall(r"cat\[([\d, ]*)\]", text)
    expected |= {(i.strip(), "c_{k}", None) for i in concat.split(",")}
    paths = draw_genotype_pictures(space, g, tmp_path)
    assert [p.name for p in paths] == ["normal.png", "reduce.png"]
    for png in paths:
        dot = png.with_suffix(".dot").read_text()
        assert dot.startswith('digraph "cell (normal = reduce)" {')
        found = {(u, v, op or None) for u, v, op in re.findall(r'"([^"]+)" -> "([^"]+)" \[(?:label="([^"]+)")?', dot)}
        assert found == expected
