"""The micro supernet: sharing invariants, equivalence with the stand-alone child, ENAS's search-time
auxiliary head and dropout."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from naslab.spaces import MicroGenotype, MicroSpace, Task
from naslab.spaces.micro.genotype import Branch, Cell, Node
from naslab.spaces.micro.network import MicroNetwork
from naslab.spaces.micro.supernet import _columns

SPACE = MicroSpace(3, "enas")
TASK = Task(10, (3, 16, 16))


def supernet(task: Task = TASK):
    torch.manual_seed(0)
    return SPACE.build_supernet(task, channels=8, cells_per_stage=1)


def used_parameters(net, genotype: MicroGenotype) -> set[int]:
    net.zero_grad(set_to_none=True)
    net(torch.randn(4, *TASK.input_shape), genotype).square().mean().backward()
    return {id(p) for p in net.parameters() if p.grad is not None}


@pytest.mark.parametrize(("stem", "shape"), [("cifar", (3, 16, 16)), ("imagenet", (3, 64, 64))])
def test_supernet_equals_the_child_given_its_weights(stem: str, shape) -> None:
    space = MicroSpace(4, "nao")
    task = Task(10, shape, stem)
    net = space.build_supernet(task, channels=8, cells_per_stage=1).eval()
    x = torch.randn(2, *shape)
    for seed in range(4):
        g = space.sample(np.random.default_rng(seed))
        child = MicroNetwork(g, 10, 3, channels=8, cells_per_stage=1, stem=stem)
        child.load_state_dict(net.child_state_dict(g), strict=True)  # every child tensor comes from the supernet
        assert torch.equal(net(x, g), child.eval()(x))


def test_genotypes_sharing_an_edge_share_its_tensor() -> None:
    net = supernet()
    base = SPACE.sample(np.random.default_rng(0))

    def with_first_node(right_op: str) -> MicroGenotype:
        node = Node(Branch(0, "sep_conv_3x3"), Branch(1, right_op))
        return MicroGenotype(Cell((node, *base.normal.nodes[1:]), base.normal.concat), base.reduce)

    g, h = with_first_node("sep_conv_5x5"), with_first_node("avg_pool_3x3")
    shared = {id(p) for p in net.cells[0].nodes[0]["in0_sep_conv_3x3"].parameters()}
    only_g = {id(p) for p in net.cells[0].nodes[0]["in1_sep_conv_5x5"].parameters()}
    used_g, used_h = used_parameters(net, g), used_parameters(net, h)
    assert shared and shared <= used_g & used_h  # the very same tensors are trained by both architectures
    assert only_g <= used_g and not only_g & used_h


def test_a_training_step_changes_only_the_sampled_path() -> None:
    net = supernet()
    g = SPACE.sample(np.random.default_rng(1))
    before = {name: p.detach().clone() for name, p in net.named_parameters()}
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    net(torch.randn(4, *TASK.input_shape), g).square().mean().backward()
    optimizer.step()
    changed = {name for name, p in net.named_parameters() if not torch.equal(p, before[name])}
    on_path = set()
    for i, cell in enumerate(net.cells):
        cell_genotype = g.reduce if i in net.reduction_layers else g.normal
        for k, node in enumerate(cell_genotype.nodes):
            for b in node.branches:
                on_path.add(f"cells.{i}.nodes.{k}.in{b.input}_{b.op}.")
    edge_changes = {n for n in changed if ".nodes." in n}
    assert edge_changes and all(any(n.startswith(p) for p in on_path) for n in edge_changes)
    untouched_edges = [n for n in before if ".nodes." in n and not any(n.startswith(p) for p in on_path)]
    assert untouched_edges and not (set(untouched_edges) & changed)
    # only the columns of concatenated nodes move in the sliced classifier (the last cell is a normal cell)
    classifier_change = (net.classifier_weight.detach() - before["classifier_weight"]).abs().sum(dim=0)
    width = net.classifier_width
    for chunk in range(SPACE.num_nodes):
        moved = bool(classifier_change[chunk * width : (chunk + 1) * width].sum() > 0)
        assert moved == (chunk + 2 in g.normal.concat)


def test_spaces_without_a_supernet_say_so() -> None:
    from naslab.spaces.base import Space

    class Plain(MicroSpace):
        build_supernet = Space.build_supernet

    with pytest.raises(NotImplementedError, match="no weight-sharing supernet"):
        Plain().build_supernet(TASK)


def test_auxiliary_head_sits_where_enas_puts_it_and_exists_only_in_training() -> None:
    """ENAS micro_child.py: pool_layers = [N, 2N + 1], aux_head_indices = [pool_layers[-1] + 1]."""
    for n in (1, 2, 3):
        net = SPACE.build_supernet(TASK, channels=8, cells_per_stage=n)
        assert net.reduction_layers == (n, 2 * n + 1) and net.aux_position == 2 * n + 2
        assert net.auxiliary_head is None
    net = supernet()
    net.add_auxiliary_head()
    g = SPACE.sample(np.random.default_rng(0))
    x = torch.randn(4, *TASK.input_shape)
    logits, aux = net.train().forward_with_aux(x, g)
    assert logits.shape == aux.shape == (4, 10)
    assert net.eval().forward_with_aux(x, g)[1] is None  # ENAS builds the head only `if is_training`


def test_auxiliary_head_reads_only_the_nodes_its_cell_concatenates() -> None:
    net = supernet()
    net.add_auxiliary_head()
    g = SPACE.sample(np.random.default_rng(2))
    cell = g.reduce if net.aux_position in net.reduction_layers else g.normal
    net.train()
    torch.manual_seed(0)
    _, aux = net.forward_with_aux(torch.randn(4, *TASK.input_shape), g)
    aux.square().mean().backward()
    grad = net.auxiliary_head.features[0].weight.grad.abs().sum(dim=(0, 2, 3))
    width = net.aux_width
    for chunk in range(SPACE.num_nodes):
        assert bool(grad[chunk * width : (chunk + 1) * width].sum() > 0) == (chunk + 2 in cell.concat)
    # and it is AuxiliaryHead with those columns: the sliced head equals a plain head given them
    from naslab.spaces.micro.network import AuxiliaryHead

    head = net.auxiliary_head
    plain = AuxiliaryHead(len(cell.concat) * width, 10).eval()
    state = head.state_dict()
    state["features.0.weight"] = head.features[0].weight[:, _columns([c - 2 for c in cell.concat], width)]
    plain.load_state_dict(state)
    h = torch.randn(3, len(cell.concat) * width, 4, 4)
    assert torch.allclose(head.eval()(h, [c - 2 for c in cell.concat]), plain(h), atol=1e-6)


def test_dropout_acts_only_in_the_weight_step_before_the_classifier() -> None:
    """ENAS: `if is_training and keep_prob < 1: x = tf.nn.dropout(x, keep_prob)` on the pooled features."""
    net = supernet().train()
    net.dropout = 0.5
    g = SPACE.sample(np.random.default_rng(1))
    x = torch.randn(6, *TASK.input_shape)
    rng = torch.get_rng_state()
    plain = net(x, g)
    assert torch.equal(net(x, g), plain) and torch.equal(torch.get_rng_state(), rng)  # scores never drop
    torch.manual_seed(3)
    dropped, _ = net.forward_with_aux(x, g)
    pooled, chunks, _ = net.features(x, g)
    torch.manual_seed(3)
    mask = F.dropout(torch.ones_like(pooled), 0.5, training=True)  # the same draw: zeros and 1 / keep_prob
    assert torch.allclose(dropped, net.classify(pooled * mask, chunks), atol=1e-6)
    assert not torch.allclose(dropped, plain)
    assert torch.equal(net.eval().forward_with_aux(x, g)[0], net(x, g))  # eval mode: no dropout
    net.train().dropout = 0.0
    assert torch.equal(net.forward_with_aux(x, g)[0], plain)
