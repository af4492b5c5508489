"""The micro space and its genotype: round trips, validation, tokens, symmetries, networks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from naslab.ops import OP_SETS
from naslab.spaces import GenotypeError, MicroGenotype, MicroSpace, Task, make_cell
from naslab.spaces.micro.genotype import Branch, Cell, Node
from naslab.spaces.micro.network import count_parameters

SPACES = [MicroSpace(5, "enas"), MicroSpace(3, "nao"), MicroSpace(4, "darts", concat="all"), MicroSpace(1, "enas")]


@pytest.mark.parametrize("space", SPACES, ids=repr)
def test_json_and_token_round_trips(space: MicroSpace) -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        g = space.sample(rng)
        assert MicroGenotype.from_json(g.to_json()) == g
        assert hash(MicroGenotype.from_json(g.to_json())) == hash(g)
        tokens = space.to_tokens(g)
        assert len(tokens) == len(space.token_choices())
        assert all(t in space.valid_tokens(i) for i, t in enumerate(tokens))
        assert space.from_tokens(tokens) == g


def test_token_table_matches_node_positions() -> None:
    space = MicroSpace(3, "enas")
    # per node: [input, op, input, op]; node k reads inputs 0..k+1
    assert space.token_choices() == [2, 5, 2, 5, 3, 5, 3, 5, 4, 5, 4, 5] * 2
    with pytest.raises(GenotypeError, match="token 4 is 3; valid tokens at this position are 0..2"):
        space.from_tokens([0, 0, 0, 0, 3] + [0] * 19)
    with pytest.raises(GenotypeError, match="expected 24 tokens"):
        space.from_tokens([0] * 5)


def test_seeded_sampling_is_reproducible_and_covers_the_space() -> None:
    space = MicroSpace(5, "nao")
    a = [space.sample(np.random.default_rng(7)) for _ in range(3)]
    b = [space.sample(np.random.default_rng(7)) for _ in range(3)]
    assert a == b
    rng = np.random.default_rng(0)
    ops = {op for _ in range(200) for op in space.sample(rng).ops()}
    assert ops == set(OP_SETS["nao"])


def test_size_counts_decision_sequences() -> None:
    space = MicroSpace(2, "enas")
    per_cell = (2 * 2 * 5 * 5) * (3 * 3 * 5 * 5)
    assert space.size() == per_cell**2
    tiny = MicroSpace(1, "enas")
    assert len(set(tiny.enumerate())) == tiny.size() == (2 * 2 * 5 * 5) ** 2
    with pytest.raises(NotImplementedError, match="too many to enumerate"):
        next(MicroSpace(5, "enas").enumerate())


def test_concat_rules() -> None:
    nodes = [((0, "identity"), (1, "identity")), ((2, "identity"), (0, "identity")), ((1, "identity"), (1, "identity"))]
    assert make_cell(nodes).concat == (3, 4)  # node 2 is read by node 3
    space_all = MicroSpace(3, "enas", concat="all")
    assert all(c.concat == (2, 3, 4) for c in space_all.sample(np.random.default_rng(0)).cells.values())


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["normal"]["nodes"][1][0].__setitem__(0, 5), r"normal.nodes\[1\].left.input=5 must be in \[0, 2\]"),
        (lambda d: d["reduce"]["nodes"][0][1].__setitem__(1, 7), r"reduce.nodes\[0\].right.op must be an op name"),
        (lambda d: d["normal"].__setitem__("concat", [9]), r"normal.concat has 9; state indices are 0..3"),
        (lambda d: d["normal"].__setitem__("concat", []), r"normal.concat must name at least one node"),
        (lambda d: d["reduce"]["nodes"].__setitem__(0, [[0, "identity"]]), r"reduce.nodes\[0\] must be two"),
        (lambda d: d.pop("reduce"), r"missing \['reduce'\]"),
        (lambda d: d["normal"]["nodes"][0][0].__setitem__(0, "1"), r"normal.nodes\[0\].left.input must be an int"),
        (lambda d: d["normal"].__setitem__("nodes", 5), r"normal.nodes must be a list, got 5"),
        (lambda d: d["reduce"].__setitem__("concat", 3), r"reduce.concat must be a list, got 3"),
        (lambda d: d.update(normal_concat=[2]), r"DARTS-format genotype is missing \['reduce_concat'\]"),
    ],
)
def test_malformed_genotypes_name_the_bad_field(mutate, message) -> None:
    data = make_genotype().to_dict()
    mutate(data)
    with pytest.raises(GenotypeError, match=message):
        MicroGenotype.from_dict(data)


def test_space_validation_names_op_set_and_node_count() -> None:
    g = make_genotype()
    with pytest.raises(GenotypeError, match=r"normal has 2 nodes; .* has 5"):
        MicroSpace(5, "enas").validate(g)
    with pytest.raises(GenotypeError, match=r"op='conv_3x3' is not in op set 'enas'"):
        MicroSpace(2, "enas").validate(g)
    MicroSpace(2, "nao").validate(g)
    with pytest.raises(GenotypeError, match=r"normal.concat=\[3\]; .* concatenates \[2, 3\] \(all nodes\)"):
        MicroSpace(2, "nao", concat="all").validate(g)
    with pytest.raises(GenotypeError, match="not valid JSON"):
        MicroGenotype.from_json("{normal")
    with pytest.raises(ValueError, match="unknown op set 'foo'"):
        MicroSpace(3, "foo")


def test_cells_built_from_lists_stay_hashable() -> None:
    cell = Cell([Node(Branch(0, "identity"), Branch(1, "identity"))], [2])
    assert hash(MicroGenotype(cell, cell)) == hash(
        MicroGenotype(make_cell([((0, "identity"), (1, "identity"))]), make_cell([((0, "identity"), (1, "identity"))]))
    )


def test_readable_string() -> None:
    text = str(make_genotype())
    assert text == (
        "normal: 2=conv_3x3(0)+identity(1) 3=max_pool_3x3(2)+conv_1x1(0) -> cat[3] | "
        "reduce: 2=avg_pool_3x3(0)+conv_3x3(1) 3=identity(1)+identity(0) -> cat[2, 3]"
    )


def test_darts_format_is_read() -> None:
    darts = {
        "normal": [["sep_conv_3x3", 0], ["skip_connect", 1]],
        "normal_concat": [2],
        "reduce": [["conv_7x1_1x7", 1], ["max_pool_3x3", 0]],
        "reduce_concat": [2],
    }
    g = MicroGenotype.from_dict(darts)
    assert g.normal.nodes[0] == Node(Branch(0, "sep_conv_3x3"), Branch(1, "identity"))
    assert g.reduce.nodes[0].left.op == "conv_1x7_7x1"


def test_symmetries_are_branch_swaps_with_one_canonical_form() -> None:
    space = MicroSpace(5, "enas")
    g = space.sample(np.random.default_rng(3))
    variants = space.symmetries(g)
    distinct_nodes = sum(n.left != n.right for c in g.cells.values() for n in c.nodes)
    assert g in variants and len(variants) == 2**distinct_nodes == len(set(variants))
    assert {space.canonical(v) for v in variants} == {space.canonical(g)}
    assert all(v.normal.concat == g.normal.concat for v in variants)


@pytest.mark.parametrize("op_set", ["enas", "nao", "darts"])
def test_symmetric_genotypes_compute_the_same_function(op_set: str) -> None:
    space = MicroSpace(4, op_set)
    g = space.sample(np.random.default_rng(11))
    swapped = MicroGenotype(
        Cell(tuple(n.swapped() for n in g.normal.nodes), g.normal.concat),
        Cell(tuple(n.swapped() for n in g.reduce.nodes), g.reduce.concat),
    )
    assert swapped != g and swapped in space.symmetries(g)
    task = Task(10, (3, 16, 16))
    torch.manual_seed(0)
    net_a = space.build_child(g, task, channels=8, cells_per_stage=1).eval()
    net_b = space.build_child(swapped, task, channels=8, cells_per_stage=1).eval()
    net_b.load_state_dict(net_a.state_dict())  # same parameter names: strict load succeeds
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(net_a(x), net_b(x))


def test_child_network_trains_end_to_end() -> None:
    space = MicroSpace(3, "nao")
    net = space.build_child(space.sample(np.random.default_rng(0)), Task(4, (1, 8, 8)), channels=4, cells_per_stage=1)
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 4, (8,))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    losses = []
    for _ in range(15):
        loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert count_parameters(net) > 0


def test_genotype_json_file_round_trip(tmp_path) -> None:
    space = MicroSpace(2, "nao")
    g = make_genotype()
    space.save_genotype(g, tmp_path / "genotype.json")
    payload = json.loads((tmp_path / "genotype.json").read_text())
    assert payload["space"] == "micro" and payload["readable"] == str(g)
    assert space.genotype_from_dict(payload["genotype"]) == g


def make_genotype() -> MicroGenotype:
    return MicroGenotype(
        make_cell([((0, "conv_3x3"), (1, "identity")), ((2, "max_pool_3x3"), (0, "conv_1x1"))]),
        make_cell([((0, "avg_pool_3x3"), (1, "conv_3x3")), ((1, "identity"), (0, "identity"))]),
    )


def test_custom_op_set_from_a_list() -> None:
    space = MicroSpace(2, ["identity", "conv_3x3"])
    assert space.ops == ("identity", "conv_3x3") and "['identity', 'conv_3x3']" in repr(space)
    assert space.token_choices()[1] == 2
    with pytest.raises(ValueError, match=r"unknown: \['conv_9x9'\]"):
        MicroSpace(2, ["identity", "conv_9x9"])
    with pytest.raises(ValueError, match="distinct"):
        MicroSpace(2, ["identity", "identity"])
