"""The recurrent cell space: genotype round trips, tokens, validation, the language model, supernet, published cells."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from naslab.spaces import GenotypeError, MicroSpace, Task
from naslab.spaces.published import load_genotype_data, published_genotype
from naslab.spaces.rnn.network import LMOutput, RNNCell, RNNLanguageModel, SharedRNNCell
from naslab.spaces.rnn.space import ACTIVATIONS, RNNGenotype, RNNNode, RNNSpace

VOCAB = 20
TEXT = Task(VOCAB, (), "text", "text")
SPACES = [RNNSpace(2), RNNSpace(8), RNNSpace(11, output="all")]


def genotype(*nodes: tuple[str, int], output: str = "loose_ends") -> RNNGenotype:
    return RNNGenotype(tuple(RNNNode(a, j) for a, j in nodes), output)


def tokens(t: int = 5, b: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, VOCAB, (t, b), generator=torch.Generator().manual_seed(seed))


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


def num_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())  # tied decoder weight counted once


# --- genotype and tokens -------------------------------------------------------------------------
@pytest.mark.parametrize("space", SPACES, ids=repr)
def test_json_hash_and_token_round_trips(space: RNNSpace) -> None:
    rng = np.random.default_rng(0)
    for _ in range(30):
        g = space.sample(rng)
        space.validate(g)
        assert g.num_nodes == space.num_nodes and g.output == space.output
        back = RNNGenotype.from_json(g.to_json())
        assert back == g and hash(back) == hash(g)
        assert space.genotype_from_dict(json.loads(json.dumps(space.to_dict(g)))) == g
        toks = space.to_tokens(g)
        assert len(toks) == len(space.token_choices()) == 2 * space.num_nodes
        assert all(t in space.valid_tokens(i) for i, t in enumerate(toks))
        assert space.from_tokens(toks) == g


def test_token_table_alternates_input_and_activation() -> None:
    space = RNNSpace(3)
    assert space.token_choices() == [1, 4, 2, 4, 3, 4]
    assert space.token_kinds() == ["input", "activation", "input", "activation", "input", "activation"]
    g = genotype(("relu", 0), ("sigmoid", 1), ("identity", 0))
    assert space.to_tokens(g) == (0, 1, 1, 3, 0, 2)  # ENAS order: tanh=0, relu=1, identity=2, sigmoid=3
    assert space.from_tokens([0, 1, 1, 3, 0, 2]) == g
    assert g.to_dict() == {"nodes": [["relu", 0], ["sigmoid", 1], ["identity", 0]], "output": "loose_ends"}
    assert str(g) == "relu(0) sigmoid(1) identity(0) -> avg[2, 3]"


@pytest.mark.parametrize(
    ("toks", "message"),
    [
        ([1, 0, 0, 0, 0, 0], r"^token 0 is 1; valid tokens at this position are 0..0$"),
        ([0, 4, 0, 0, 0, 0], r"^token 1 is 4; valid tokens at this position are 0..3$"),
        ([0, 0, 2, 0, 0, 0], r"^token 2 is 2; valid tokens at this position are 0..1$"),
        ([0, 0, 0, 0, 3, 0], r"^token 4 is 3; valid tokens at this position are 0..2$"),
        ([0, 0, 0, 0, 0, -1], r"^token 5 is -1; valid tokens at this position are 0..3$"),
        ([0] * 5, r"^expected 6 tokens for RNNSpace\(.*num_nodes=3.*\), got 5$"),
        ([0] * 8, r"^expected 6 tokens for RNNSpace\(.*\), got 8$"),
    ],
)
def test_from_tokens_rejects_bad_tokens(toks: list[int], message: str) -> None:
    with pytest.raises(GenotypeError, match=message) as exc:
        RNNSpace(3).from_tokens(toks)
    one_line(exc)


def test_size_is_n_factorial_times_four_to_the_n_and_enumeration_agrees() -> None:
    assert RNNSpace(2).size() == 32
    assert (
        RNNSpace(8).size() == math.factorial(8) * 4**8 == 2_642_411_520
    )  # Sciuto et al. arXiv:1902.08142: "around 2 billion"
    assert RNNSpace(11).size() == math.factorial(11) * 4**11
    assert RNNSpace(3, activations=("tanh", "relu")).size() == 6 * 8
    for n in (2, 3):
        space = RNNSpace(n)
        every = list(space.enumerate())
        assert len(every) == len(set(every)) == space.size()
        assert len({space.key(g) for g in every}) == space.size()
        for g in every:
            space.validate(g)
    with pytest.raises(NotImplementedError, match="too many to enumerate"):
        next(RNNSpace(8).enumerate())


def test_seeded_sampling_is_reproducible_and_covers_every_choice() -> None:
    space = RNNSpace(4)
    assert [space.sample(np.random.default_rng(7)) for _ in range(3)] == [
        space.sample(np.random.default_rng(7)) for _ in range(3)
    ]
    rng = np.random.default_rng(0)
    samples = [space.sample(rng) for _ in range(300)]
    assert len(set(samples)) > 250  # 4! * 4^4 = 6144 cells: few repeats
    assert {n.activation for g in samples for n in g.nodes} == set(ACTIVATIONS)
    for i in range(1, 5):
        assert {g.nodes[i - 1].input for g in samples} == set(range(i)), f"node {i}"
        assert {g.nodes[i - 1].activation for g in samples} == set(ACTIVATIONS), f"node {i}"
    restricted = RNNSpace(3, activations=("relu", "sigmoid"))
    assert {n.activation for g in (restricted.sample(rng) for _ in range(50)) for n in g.nodes} == {"relu", "sigmoid"}


# --- validation ----------------------------------------------------------------------------------
def test_genotype_rejects_input_that_is_not_earlier() -> None:
    with pytest.raises(GenotypeError, match=r"^node 2: input must be an earlier node 0..1, got 2$") as exc:
        genotype(("tanh", 0), ("relu", 2))
    one_line(exc)
    with pytest.raises(GenotypeError, match=r"^node 1: input must be an earlier node 0..0, got -1$"):
        genotype(("tanh", -1))
    with pytest.raises(GenotypeError, match=r"node 1: input must be an earlier node 0..0, got True"):
        genotype(("tanh", True))
    with pytest.raises(GenotypeError, match=r"output must be one of loose_ends, all, got 'mean'"):
        genotype(("tanh", 0), output="mean")
    with pytest.raises(GenotypeError, match="nodes must be a non-empty list"):
        RNNGenotype(())


def test_space_validation_names_activation_node_count_and_output() -> None:
    space = RNNSpace(2)
    with pytest.raises(GenotypeError, match=r"^node 2: activation 'gelu' is not one of \(") as exc:
        space.validate(genotype(("tanh", 0), ("gelu", 1)))  # structurally fine, not in the space
    one_line(exc)
    with pytest.raises(GenotypeError, match=r"activation 'tanh' is not one of \('relu',\)"):
        RNNSpace(2, activations=("relu",)).validate(genotype(("relu", 0), ("tanh", 1)))
    with pytest.raises(GenotypeError, match=r"^genotype has 3 nodes; RNNSpace\(.*\) has 2$") as exc:
        space.validate(genotype(("tanh", 0), ("tanh", 1), ("tanh", 2)))
    one_line(exc)
    with pytest.raises(GenotypeError, match=r"^genotype averages all; RNNSpace\(.*\) averages loose_ends$") as exc:
        space.validate(genotype(("tanh", 0), ("tanh", 1), output="all"))
    one_line(exc)
    with pytest.raises(GenotypeError, match="expected an RNNGenotype, got str"):
        space.validate("tanh(0) tanh(1)")  # type: ignore[arg-type]
    with pytest.raises(GenotypeError, match="is not one of"):
        space.to_tokens(genotype(("tanh", 0), ("gelu", 1)))
    with pytest.raises(GenotypeError, match=r"unknown activations \['gelu'\]"):
        space.build_child(genotype(("tanh", 0), ("gelu", 1)), TEXT, emb_size=8)


def test_space_constructor_errors() -> None:
    with pytest.raises(ValueError, match="num_nodes >= 1"):
        RNNSpace(0)
    with pytest.raises(ValueError, match=r"unknown rnn activations \['gelu'\]"):
        RNNSpace(2, activations=("tanh", "gelu"))
    with pytest.raises(ValueError, match="rnn output must be one of loose_ends, all"):
        RNNSpace(2, output="last")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"output": "all"}, r"^an rnn genotype must be an object with 'nodes'"),
        ([["tanh", 0]], r"^an rnn genotype must be an object with 'nodes'"),
        ({"nodes": "tanh(0)"}, r"^nodes must be a list of \[activation, input\], got 'tanh\(0\)'$"),
        ({"nodes": [["tanh", 0], "relu"]}, r"^nodes\[1\] must be \[activation, input\], got 'relu'$"),
        ({"nodes": [["tanh", 0], ["relu", 1, 0]]}, r"^nodes\[1\] must be \[activation, input\], got \['relu', 1, 0\]$"),
        ({"nodes": [["tanh"]]}, r"^nodes\[0\] must be \[activation, input\]"),
        ({"nodes": [["tanh", "0"]]}, r"^node 1: input must be an earlier node 0..0, got '0'$"),
        ({"nodes": [[3, 0]]}, r"^node 1: activation must be a name, got 3$"),
        ({"nodes": []}, r"^nodes must be a non-empty list"),
        ({"nodes": [["tanh", 0]], "output": "sum"}, r"^output must be one of loose_ends, all, got 'sum'$"),
    ],
)
def test_from_dict_rejects_malformed_data(data, message: str) -> None:
    with pytest.raises(GenotypeError, match=message) as exc:
        RNNGenotype.from_dict(data)
    one_line(exc)


def test_from_json_reports_bad_json_and_defaults_to_loose_ends() -> None:
    with pytest.raises(GenotypeError, match="not valid JSON"):
        RNNGenotype.from_json("{nodes")
    g = RNNGenotype.from_json('{"nodes": [["tanh", 0], ["relu", 0]]}')
    assert g == genotype(("tanh", 0), ("relu", 0)) and g.output == "loose_ends"


# --- output nodes and published cells ------------------------------------------------------------
def test_output_nodes_loose_ends_versus_all() -> None:
    nodes = (("tanh", 0), ("relu", 1), ("sigmoid", 1), ("identity", 2), ("tanh", 0))
    assert genotype(*nodes).output_nodes() == (3, 4, 5)  # 1 and 2 are read by later nodes
    assert genotype(*nodes, output="all").output_nodes() == (1, 2, 3, 4, 5)
    chain = genotype(("tanh", 0), ("tanh", 1), ("tanh", 2))
    assert chain.output_nodes() == (3,)
    assert str(chain) == "tanh(0) tanh(1) tanh(2) -> avg[3]"
    assert genotype(("tanh", 0), ("tanh", 0), ("tanh", 0)).output_nodes() == (1, 2, 3)


def test_published_rnn_genotypes() -> None:
    enas = published_genotype("enas_ptb")
    assert isinstance(enas, RNNGenotype) and enas.num_nodes == 11 and enas.output == "loose_ends"
    assert enas.output_nodes() == (2, 5, 6, 9, 10, 11)  # DARTS' concat for its ENAS transcription
    darts = published_genotype("darts_ptb")
    assert isinstance(darts, RNNGenotype) and darts.num_nodes == 8 and darts.output == "all"
    assert darts.nodes[0] == RNNNode("sigmoid", 0) and darts.nodes[-1] == RNNNode("relu", 5)
    RNNSpace(8, output="all").validate(darts)
    RNNSpace(8, output="all").validate(published_genotype("darts_v1_ptb"))
    nao = published_genotype("nao_ptb")
    assert isinstance(nao, RNNGenotype) and nao.num_nodes == 11 and nao.output == "all"
    RNNSpace(11, output="all").validate(nao)
    RNNSpace(11).validate(enas)
    space, data = load_genotype_data("enas_ptb")
    assert space == "rnn" and RNNGenotype.from_dict(data) == enas


# --- child language model ------------------------------------------------------------------------
def next_token_loss(out: LMOutput, toks: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out.logits[:-1].reshape(-1, VOCAB), toks[1:].reshape(-1))


def test_every_two_node_cell_builds_runs_and_trains() -> None:
    space = RNNSpace(2)
    cells = list(space.enumerate())
    assert len(cells) == 32 and len({space.key(g) for g in cells}) == 32
    toks = tokens(5, 3)
    first_outputs, scaled_outputs = [], []
    for g in cells:
        torch.manual_seed(0)
        net = space.build_child(g, TEXT, emb_size=8)
        assert isinstance(net, RNNLanguageModel) and isinstance(net.cell, RNNCell)
        with torch.no_grad():  # the same weights scaled out of the near-linear range of +-0.04
            scaled = copy.deepcopy(net).eval()
            for p in scaled.parameters():
                p.mul_(10)
            scaled_outputs.append(scaled(toks).logits)
        net.train()
        out = net(toks)
        assert out.logits.shape == (5, 3, VOCAB)
        assert out.hidden.shape == (3, 8)
        assert out.raw_output.shape == out.output.shape == (5, 3, 8)
        assert torch.equal(out.hidden, out.raw_output[-1])
        first_outputs.append(out.logits.detach().clone())
        before = {k: p.detach().clone() for k, p in net.named_parameters()}
        assert set(before) == {"encoder.weight", "cell.w0", "cell.weights.0", "cell.weights.1", "decoder.bias"}
        opt = torch.optim.SGD(net.parameters(), lr=1.0)
        loss = next_token_loss(out, toks)
        assert torch.isfinite(loss)
        loss.backward()
        opt.step()
        for name, p in net.named_parameters():
            assert not torch.equal(before[name], p.detach()), f"{g}: {name} did not change"
        assert torch.isfinite(next_token_loss(net(toks), toks))
    # same seed, same initial weights: only the architecture differs, and so do the outputs. At the
    # +-0.04 initialisation pre-activations are ~1e-4, where tanh(x) == x in float32, so tanh and
    # identity nodes coincide (22 distinct of 32); with larger weights every cell is distinct.
    assert len({tuple(o.flatten().tolist()) for o in first_outputs}) >= 16
    assert len({tuple(o.flatten().tolist()) for o in scaled_outputs}) == 32


def test_hidden_state_carries_across_calls() -> None:
    space = RNNSpace(4)
    torch.manual_seed(0)
    net = space.build_child(space.sample(np.random.default_rng(1)), TEXT, emb_size=8).eval()
    toks = tokens(10, 3, seed=1)
    with torch.no_grad():
        whole = net(toks)
        first = net(toks[:6])
        second = net(toks[6:], hidden=first.hidden)
        fresh = net(toks[6:])
    assert torch.allclose(torch.cat([first.logits, second.logits]), whole.logits, atol=1e-6)
    assert torch.allclose(second.hidden, whole.hidden, atol=1e-6)
    assert not torch.allclose(fresh.logits, whole.logits[6:], atol=1e-6)  # the hidden state matters


def test_dropout_only_in_train_mode() -> None:
    space = RNNSpace(3)
    g = space.sample(np.random.default_rng(0))
    dropouts = dict(dropout=0.3, dropout_h=0.3, dropout_x=0.3, dropout_i=0.3, dropout_e=0.1)
    torch.manual_seed(0)
    net = space.build_child(g, TEXT, emb_size=8, **dropouts)
    assert net.p == {"out": 0.3, "h": 0.3, "x": 0.3, "i": 0.3, "e": 0.1}
    toks = tokens(6, 4)
    net.train()
    a, b = net(toks), net(toks)
    assert not torch.equal(a.logits, b.logits)
    assert not torch.equal(a.raw_output, a.output)  # output dropout after the cell
    net.eval()
    c, d = net(toks), net(toks)
    assert torch.equal(c.logits, d.logits) and torch.equal(c.raw_output, c.output)
    torch.manual_seed(0)
    plain = space.build_child(g, TEXT, emb_size=8)
    assert torch.equal(plain.train()(toks).logits, c.logits)  # no dropout: train equals eval


def test_tied_and_untied_decoder() -> None:
    space = RNNSpace(2)
    g = space.sample(np.random.default_rng(0))
    tied = space.build_child(g, TEXT, emb_size=8)
    assert tied.decoder.weight is tied.encoder.weight
    untied = space.build_child(g, TEXT, emb_size=8, hidden_size=6, tie_weights=False, channels=16)  # extras ignored
    assert untied.decoder.weight is not untied.encoder.weight
    assert untied(tokens()).logits.shape == (5, 3, VOCAB) and untied(tokens()).hidden.shape == (3, 6)
    with pytest.raises(ValueError, match="tied weights need emb_size == hidden_size, got 8 and 6"):
        space.build_child(g, TEXT, emb_size=8, hidden_size=6)


@pytest.mark.parametrize(
    ("name", "vocab", "size", "params"),
    [
        # quark0/darts rnn/model.py RNNModel(10000, 850, 850, 850, genotype=DARTS) has 22,960,000 (README: 23M)
        ("darts_ptb", 10_000, 850, 22_960_000),
        ("nao_ptb", 10_000, 850, 27_295_000),  # NAO Table 4: 27M
        # RNNModel(33278, 700, 700, 700, genotype=DARTS): 33,127,878 (DARTS on WikiText-2: 33M)
        ("darts_ptb", 33_278, 700, 33_127_878),
    ],
)
def test_published_parameter_counts(name: str, vocab: int, size: int, params: int) -> None:
    g = published_genotype(name)
    space = RNNSpace(g.num_nodes, output=g.output)
    net = space.build_child(g, Task(vocab, (), "text", "text"), emb_size=size, hidden_size=size)
    # embedding (tied decoder) + decoder bias + W0 (2H x 2H) + one (H x 2H) per node
    assert num_params(net) == vocab * size + vocab + 4 * size * size + g.num_nodes * 2 * size * size == params


# --- supernet ------------------------------------------------------------------------------------
def test_supernet_path_equals_child_with_copied_weights() -> None:
    space = RNNSpace(4)
    torch.manual_seed(0)
    supernet = space.build_supernet(TEXT, emb_size=8).eval()
    assert isinstance(supernet.cell, SharedRNNCell)
    assert set(supernet.cell.weights.keys()) == {f"{i}_{j}" for i in range(1, 5) for j in range(i)}
    toks = tokens(7, 3)
    rng = np.random.default_rng(2)
    for _ in range(4):
        g = space.sample(rng)
        child = space.build_child(g, TEXT, emb_size=8).eval()
        with torch.no_grad():
            child.encoder.weight.copy_(supernet.encoder.weight)
            child.decoder.bias.copy_(supernet.decoder.bias)
            child.cell.w0.copy_(supernet.cell.w0)
            for i, node in enumerate(g.nodes, start=1):
                child.cell.weights[i - 1].copy_(supernet.cell.weights[f"{i}_{node.input}"])
            shared, alone = supernet(toks, g), child(toks)
        assert shared.logits.shape == (7, 3, VOCAB)
        assert torch.allclose(shared.logits, alone.logits, atol=1e-6)
        assert torch.allclose(shared.hidden, alone.hidden, atol=1e-6)


def test_supernet_step_touches_only_the_sampled_matrices() -> None:
    space = RNNSpace(3)
    supernet = space.build_supernet(TEXT, emb_size=8)
    g = genotype(("tanh", 0), ("relu", 0), ("sigmoid", 2))
    before = {k: v.clone() for k, v in supernet.state_dict().items()}
    opt = torch.optim.SGD(supernet.parameters(), lr=1.0)
    toks = tokens()
    next_token_loss(supernet(toks, g), toks).backward()
    opt.step()
    after = supernet.state_dict()
    used = {"cell.weights.1_0", "cell.weights.2_0", "cell.weights.3_2"}
    for key in before:
        if key.startswith("cell.weights."):
            assert torch.equal(before[key], after[key]) == (key not in used), key
        else:
            assert not torch.equal(before[key], after[key]), key


def test_supernet_refuses_other_node_counts() -> None:
    supernet = RNNSpace(3).build_supernet(TEXT, emb_size=8)
    with pytest.raises(ValueError, match="the shared cell runs a 3-node RNNGenotype"):
        supernet(tokens(), RNNSpace(2).sample(np.random.default_rng(0)))
    with pytest.raises(ValueError, match="the shared cell runs a 3-node RNNGenotype, got None"):
        supernet(tokens())


# --- tasks ---------------------------------------------------------------------------------------
def test_spaces_refuse_the_wrong_kind_of_data() -> None:
    space = RNNSpace(2)
    image = Task(10, (1, 8, 8))
    g = space.sample(np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"^space=rnn builds text networks, .*image data: use dataset=ptb") as exc:
        space.build_child(g, image)
    one_line(exc)
    with pytest.raises(ValueError, match="dataset=ptb"):
        space.build_supernet(image)
    with pytest.raises(ValueError, match=r"^space=micro builds image networks, but the dataset is text data"):
        MicroSpace().build_child(published_genotype("darts_v2"), TEXT)
