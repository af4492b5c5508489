"""DARTS' recurrent search cell: the alpha contract, gradients, equivalence with the child, derivation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from naslab.ops.mixed import MixedSupernet
from naslab.spaces.base import GenotypeError
from naslab.spaces.rnn.mixed import MixedRNNCell, MixedRNNLanguageModel, derive_rnn, rnn_edges
from naslab.spaces.rnn.network import RNNCell, RNNLanguageModel
from naslab.spaces.rnn.space import ACTIVATIONS, RNNGenotype, RNNNode, RNNSpace

VOCAB, EMB, T, B = 11, 6, 5, 3


def mixed_lm(num_nodes: int = 4, seed: int = 0, **sizes) -> MixedRNNLanguageModel:
    torch.manual_seed(seed)
    return MixedRNNLanguageModel(MixedRNNCell(num_nodes, EMB, EMB), VOCAB, emb_size=EMB, **sizes)


def one_hot_weights(genotype: RNNGenotype, activations=ACTIVATIONS) -> torch.Tensor:
    """Mixing weights that select exactly the genotype's (input, activation) per node, zero elsewhere."""
    ops = ("none",) + tuple(activations)
    rows = {edge: r for r, edge in enumerate(rnn_edges(genotype.num_nodes))}
    w = torch.zeros(len(rows), len(ops))
    for i, node in enumerate(genotype.nodes, start=1):
        w[rows[(i, node.input)], ops.index(node.activation)] = 1.0
    return w


def identity_bn(lm: MixedRNNLanguageModel) -> None:
    """Eval mode with running mean 0 / var 1 and eps 0: the cell's BatchNorm leaves states untouched."""
    lm.eval()
    lm.cell.bn.reset_running_stats()
    lm.cell.bn.eps = 0.0


def test_contract_for_darts_eight_nodes() -> None:
    """DARTS' rnn search has randn(36, 5) alphas; the strategy reads them off the supernet."""
    cell = MixedRNNCell(8, 4, 4)
    lm = MixedRNNLanguageModel(cell, VOCAB, emb_size=4)
    assert lm.alpha_shapes == {"recurrent": (36, 5)}
    assert lm.op_names == ("none",) + ACTIVATIONS
    labels = lm.edge_labels["recurrent"]
    assert len(labels) == 36 and labels[:3] == ["1<-0", "2<-0", "2<-1"] and labels[-1] == "8<-7"
    assert isinstance(lm, MixedSupernet)
    assert not isinstance(RNNLanguageModel(cell, VOCAB, emb_size=4), MixedSupernet)  # why the subclass exists


def test_wraps_only_a_mixed_cell() -> None:
    """A stand-alone cell has no alphas: the mixed LM around it would break the strategy later."""
    g = RNNSpace(2, output="all").sample(np.random.default_rng(0))
    with pytest.raises(TypeError, match="MixedRNNCell"):
        MixedRNNLanguageModel(RNNCell(g, EMB, EMB), VOCAB, emb_size=EMB)


def test_logits_shape_and_weight_checks() -> None:
    lm = mixed_lm()
    tokens = torch.randint(VOCAB, (T, B))
    out = lm(tokens, {"recurrent": torch.softmax(torch.randn(10, 5), -1)})
    assert out.logits.shape == (T, B, VOCAB) and out.hidden.shape == (B, EMB)
    assert torch.isfinite(out.logits).all()
    with pytest.raises(ValueError, match=r"\(10, 5\)"):
        lm(tokens, {"recurrent": torch.ones(9, 5) / 5})
    with pytest.raises(ValueError, match="recurrent"):
        lm(tokens, {"normal": torch.ones(10, 5) / 5})


def test_gradients_reach_weights_and_alphas() -> None:
    """The bilevel search needs d loss / d w for every matrix and d loss / d alpha for every entry."""
    lm = mixed_lm(dropout_h=0.2, dropout_x=0.2).train()
    alphas = torch.nn.Parameter(1e-3 * torch.randn(10, 5))
    tokens = torch.randint(VOCAB, (T + 1, B))
    out = lm(tokens[:-1], {"recurrent": F.softmax(alphas, dim=-1)})
    F.cross_entropy(out.logits.reshape(-1, VOCAB), tokens[1:].reshape(-1)).backward()
    for name, p in lm.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert alphas.grad is not None and (alphas.grad != 0).all()


def test_none_contributes_nothing() -> None:
    """All weight on `none`: every node is BN(0) = 0, so h_t is 0 whatever the input."""
    lm = mixed_lm()
    identity_bn(lm)
    weights = torch.zeros(10, 5)
    weights[:, 0] = 1.0
    out = lm(torch.randint(VOCAB, (T, B)), {"recurrent": weights})
    assert torch.equal(out.raw_output, torch.zeros(T, B, EMB))


@pytest.mark.parametrize("seed", range(3))
def test_one_hot_weights_equal_the_child(seed: int) -> None:
    """Key check: with a genotype's one-hot weights and identity BN, the mixture *is* that genotype's cell."""
    space = RNNSpace(4, output="all")
    g = space.sample(np.random.default_rng(seed))
    lm = mixed_lm(seed=seed)
    identity_bn(lm)
    child = RNNLanguageModel(RNNCell(g, EMB, EMB), VOCAB, emb_size=EMB).eval()
    state = {k: v for k, v in lm.state_dict().items() if not k.startswith("cell.bn.")}
    child.load_state_dict(state, strict=True)  # same names: W0 and one W_i per node, nothing else
    arch = {"recurrent": one_hot_weights(g)}

    torch.manual_seed(100 + seed)
    tokens = torch.randint(VOCAB, (T, B))
    hidden = 0.5 * torch.randn(B, EMB)
    a, b = lm(tokens, arch, hidden), child(tokens, None, hidden)
    torch.testing.assert_close(a.logits, b.logits, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(a.hidden, b.hidden, rtol=1e-5, atol=1e-6)

    # the locked dropout masks enter both cells the same way
    emb, x_mask, h_mask = torch.randn(T, B, EMB), 2.0 * torch.randint(2, (B, EMB)), 2.0 * torch.randint(2, (B, EMB))
    out_a, _ = lm.cell(emb, hidden, x_mask, h_mask, arch)
    out_b, _ = child.cell(emb, hidden, x_mask, h_mask)
    torch.testing.assert_close(out_a, out_b, rtol=1e-5, atol=1e-6)


def test_parameter_count_is_one_child() -> None:
    """DARTS shares W_i over a node's inputs: the supernet has exactly the parameters of one 8-node child."""
    emb, vocab, n = 300, 10000, 8
    lm = MixedRNNLanguageModel(MixedRNNCell(n, emb, emb), vocab, emb_size=emb, hidden_size=emb)
    expected = vocab * emb + (2 * emb) * (2 * emb) + n * emb * (2 * emb) + vocab
    assert sum(p.numel() for p in lm.parameters()) == expected


# --- derivation ------------------------------------------------------------------------------------
def test_derive_ignores_none_even_when_it_dominates() -> None:
    """`none` only says an edge should be absent; DARTS never picks it, so the next strongest op wins."""
    alphas = torch.zeros(3, 5)
    alphas[:, 0] = 10.0  # none strongest everywhere
    alphas[0, 2] = 1.0  # node 1: relu from 0
    alphas[2, 4] = 2.0  # node 2: sigmoid from 1 ...
    alphas[1, 1] = 1.5  # ... beats tanh from 0
    g = derive_rnn({"recurrent": alphas}, 2, ACTIVATIONS)
    assert g == RNNGenotype((RNNNode("relu", 0), RNNNode("sigmoid", 1)), "all")


@pytest.mark.parametrize("seed", range(5))
def test_derive_round_trip(seed: int) -> None:
    space = RNNSpace(4, output="all")
    g = space.sample(np.random.default_rng(seed))
    alphas = 5.0 * one_hot_weights(g) + 0.1 * torch.randn(10, 5, generator=torch.Generator().manual_seed(seed))
    assert derive_rnn({"recurrent": alphas}, 4, ACTIVATIONS) == g
    assert space.derive({"recurrent": alphas}) == g


def test_derive_follows_the_activation_order() -> None:
    """Columns are ("none",) + the space's activations, whatever their order."""
    activations = ("sigmoid", "tanh")
    alphas = torch.tensor([[0.0, 0.0, 3.0]])
    assert derive_rnn({"recurrent": alphas}, 1, activations).nodes == (RNNNode("tanh", 0),)


@pytest.mark.parametrize(
    ("alphas", "match"),
    [
        ({"normal": torch.zeros(10, 5)}, "'recurrent'"),
        ({"recurrent": torch.zeros(36, 5)}, r"\(36, 5\).*need \(10, 5\)"),
        ({"recurrent": torch.zeros(10, 4)}, r"need \(10, 5\)"),
    ],
)
def test_derive_errors(alphas, match: str) -> None:
    with pytest.raises(GenotypeError, match=match) as info:
        derive_rnn(alphas, 4, ACTIVATIONS)
    assert "\n" not in str(info.value)
