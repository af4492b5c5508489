"""The ENAS controllers against the authors' code (melodyguan/enas) and hand-computed values.

"Efficient Neural Architecture Search via Parameter Sharing" (Pham et al., arXiv:1802.03268). The
reference samplers below are literal numpy transcriptions of the code's `_build_sampler` loops
(src/cifar10/micro_controller.py, general_controller.py, src/ptb/ptb_enas_controller.py) that score one
architecture at a time in the code's own order; the controllers under test are batched torch modules.
"""

from __future__ import annotations

import copy
import itertools
import math

import numpy as np
import pytest
import torch

from naslab.spaces import MicroSpace
from naslab.spaces.macro.space import MacroSpace
from naslab.spaces.mlp.space import MLPSpace
from naslab.spaces.rnn.space import RNNSpace
from naslab.strategies import ReinforceStrategy
from naslab.strategies.base import Result, results_of
from naslab.strategies.reinforce.controller import (
    EnasMacroController,
    EnasMicroController,
    EnasRNNController,
    build_enas_controller,
)
from naslab.strategies.reinforce.strategy import Controller, EpsilonHatAdam

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ENAS_OPS = ("identity", "sep_conv_3x3", "sep_conv_5x5", "avg_pool_3x3", "max_pool_3x3")
TINY = {
    "micro": MicroSpace(1, ["sep_conv_3x3", "max_pool_3x3"]),  # both cells: 256 architectures
    "micro_tied": MicroSpace(2, ["max_pool_3x3", "sep_conv_5x5"], tied=True),  # node anchors as inputs: 576
    # index_2 masked at index_1 (space=micro_tiny's rule): (2 * 1 * 4) * (3 * 2 * 4) = 192
    "micro_distinct": MicroSpace(2, ["max_pool_3x3", "sep_conv_5x5"], tied=True, distinct_inputs=True),
    "macro": MacroSpace(3, ["conv_3x3", "max_pool_3x3"]),  # 64
    "rnn": RNNSpace(3),  # 3! * 4^3 = 384
}
# The ENAS code's controller settings (src/utils.py get_train_ops, build_trainer), with a chosen shaping.
CODE = dict(
    controller="enas",
    hidden=16,
    adam_betas=(0.0, 0.999),
    adam_eps=1e-3,
    adam_epsilon_hat=True,
    baseline_init=0.0,
    baseline_decay=0.99,
)


def every_sequence(space) -> torch.Tensor:
    return torch.tensor(list(itertools.product(*(range(n) for n in space.token_choices()))))


def sharpened(space, scale: float = 5.0, **shaping):
    """A controller of `space` with weights scaled up, so that its distribution is far from uniform."""
    torch.manual_seed(0)
    controller = build_enas_controller(space, 16, **{"temperature": None, "tanh_constant": 2.5, **shaping})
    with torch.no_grad():
        for name, p in controller.named_parameters():
            if name != "b_soft":
                p.mul_(scale)
    return controller


def zeroed(controller):
    """LSTM, attention and softmax weights at zero: h stays 0 (i = f = o = 1/2, g = 0), so every logit is
    its bias (or 0) and every attention query is v . tanh(0) = 0."""
    with torch.no_grad():
        for name in ("lstm.w", "w_attn_1", "w_attn_2", "v_attn", "w_soft"):
            controller.get_parameter(name).zero_()
    return controller


def scored(controller, tokens) -> tuple[np.ndarray, np.ndarray]:
    with torch.no_grad():
        out = controller(len(tokens), tokens=tokens)
    return out.log_prob.double().numpy(), out.entropy.double().numpy()


# --- the authors' samplers, transcribed (float64, one architecture at a time) ------------------------------


def _np(controller) -> dict[str, np.ndarray]:
    return {name: p.detach().double().numpy() for name, p in controller.named_parameters()}


def _lstm(x, prev_c, prev_h, w):  # common_ops.py lstm
    ifog = np.concatenate([x, prev_h], axis=1) @ w
    i, f, o, g = np.split(ifog, 4, axis=1)
    sigmoid = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    next_c = sigmoid(i) * np.tanh(g) + sigmoid(f) * prev_c
    return next_c, sigmoid(o) * np.tanh(next_c)


def _log_softmax(logits):
    top = logits.max(-1, keepdims=True)
    return logits - top - np.log(np.exp(logits - top).sum(-1, keepdims=True))


def _shape(logits, temperature, tanh_constant):
    if temperature is not None:
        logits = logits / temperature
    if tanh_constant is not None:
        logits = tanh_constant * np.tanh(logits)
    return logits


def reference_micro(controller, arc, ops, num_cells, temperature, tanh_constant, op_tanh_reduce, distinct=False):
    """micro_controller.py: _build_sampler(use_bias=True), then _build_sampler(prev_c=c, prev_h=h).

    `distinct`: index_2's logits get -inf at index_1 and its token counts the other inputs (naslab's
    distinct_inputs spaces; the code samples both indices freely)."""
    W, lstm_size, num_nodes = _np(controller), controller.hidden, controller.num_nodes
    # the code's b_soft_no_learn is [0.25, 0.25, -0.25, ...] over its ops (0, 1 = sep_conv_3x3, sep_conv_5x5)
    no_learn = np.array([[0.25 if op in ("sep_conv_3x3", "sep_conv_5x5") else -0.25 for op in ops]])
    prev_c = prev_h = np.zeros((1, lstm_size))
    log_prob = entropy = 0.0
    for cell in range(num_cells):
        cell_arc = arc[4 * num_nodes * cell : 4 * num_nodes * (cell + 1)]
        anchors, anchors_w_1 = [], []
        inputs = W["g_emb"]
        for _ in range(2):
            prev_c, prev_h = _lstm(inputs, prev_c, prev_h, W["lstm.w"])
            anchors.append(np.zeros_like(prev_h))
            anchors_w_1.append(prev_h @ W["w_attn_1"])
        for layer_id in range(2, num_nodes + 2):
            start_id = 4 * (layer_id - 2)
            first = None
            for i in range(2):  # index_1, index_2
                prev_c, prev_h = _lstm(inputs, prev_c, prev_h, W["lstm.w"])
                query = np.tanh(np.concatenate(anchors_w_1[:layer_id]) + prev_h @ W["w_attn_2"]) @ W["v_attn"]
                logits = _shape(query.reshape(1, layer_id), temperature, tanh_constant)
                index = cell_arc[start_id + 2 * i]
                if distinct and first is not None:
                    logits = logits.copy()
                    logits[0, first] = -np.inf
                    index += int(index >= first)
                lp = _log_softmax(logits)[0]
                log_prob += lp[index]
                p = np.exp(lp)
                entropy += -(p * np.where(p > 0, lp, 0.0)).sum()
                inputs = anchors[index]
                first = index
            for i in range(2):  # op_1, op_2
                prev_c, prev_h = _lstm(inputs, prev_c, prev_h, W["lstm.w"])
                logits = prev_h @ W["w_soft"] + W["b_soft"]
                reduced = None if tanh_constant is None else tanh_constant / op_tanh_reduce
                logits = _shape(logits, temperature, reduced)
                if cell == 0:  # use_bias
                    logits = logits + no_learn
                op_id = cell_arc[start_id + 2 * i + 1]
                lp = _log_softmax(logits)[0]
                log_prob += lp[op_id]
                entropy += -(np.exp(lp) * lp).sum()
                inputs = W["w_emb"][[op_id]]
            prev_c, prev_h = _lstm(inputs, prev_c, prev_h, W["lstm.w"])
            anchors.append(prev_h)
            anchors_w_1.append(prev_h @ W["w_attn_1"])
            inputs = W["g_emb"]
    return log_prob, entropy


def reference_macro(controller, arc, num_layers, temperature, tanh_constant, skip_target):
    """general_controller.py _build_sampler with search_whole_channels and search_for="macro"."""
    W = _np(controller)
    prev_c = prev_h = np.zeros((1, controller.hidden))
    inputs, anchors, anchors_w_1, penalties = W["g_emb"], [], [], []
    log_prob = entropy = 0.0
    skip_targets = np.array([1.0 - skip_target, skip_target])
    pos = 0
    for layer_id in range(num_layers):
        prev_c, prev_h = _lstm(inputs, prev_c, prev_h, W["lstm.w"])
        logit = _shape(prev_h @ W["w_soft"], temperature, tanh_constant)
        branch_id = arc[pos]
        pos += 1
        ce = -_log_softmax(logit)[0, branch_id]  # sparse_softmax_cross_entropy_with_logits
        log_prob -= ce
        entropy += ce * np.exp(-ce)
        inputs = W["w_emb"][[branch_id]]
        prev_c, prev_h = _lstm(inputs, prev_c, prev_h, W["lstm.w"])
        if layer_id > 0:
            query = np.tanh(np.concatenate(anchors_w_1) + prev_h @ W["w_attn_2"]) @ W["v_attn"]
            logit = _shape(np.concatenate([-query, query], axis=1), temperature, tanh_constant)
            skip = np.array(arc[pos : pos + layer_id])
            pos += layer_id
            skip_prob = 1 / (1 + np.exp(-logit))
            penalties.append((skip_prob * np.log(skip_prob / skip_targets)).sum())
            ce = -_log_softmax(logit)[np.arange(layer_id), skip]
            log_prob -= ce.sum()
            entropy += (ce * np.exp(-ce)).sum()
            skip = skip.astype(float).reshape(1, layer_id)
            inputs = skip @ np.concatenate(anchors) / (1.0 + skip.sum())
        else:
            inputs = W["g_emb"]
        anchors.append(prev_h)
        anchors_w_1.append(prev_h @ W["w_attn_1"])
    return log_prob, entropy, np.mean(penalties)


def reference_rnn(controller, arc, num_nodes, temperature, tanh_constant, node0_func):
    """ptb_enas_controller.py _build_sampler, rhn_depth = num_nodes + 1; the code's arc is [func_0] + naslab's
    [input, activation] per node, and naslab fixes func_0 (node 0's tanh)."""
    W = _np(controller)
    prev_c = prev_h = np.zeros((1, controller.hidden))
    code_arc = [node0_func, *arc]
    inputs, all_h, all_h_w = W["g_emb"], [], []
    log_prob = entropy = 0.0
    for layer_id in range(num_nodes + 1):
        prev_c, prev_h = _lstm(inputs, prev_c, prev_h, W["lstm.w"])
        all_h.append(prev_h)
        all_h_w.append(prev_h @ W["w_attn_1"])
        if layer_id > 0:
            query = np.tanh(prev_h @ W["w_attn_2"] + np.concatenate(all_h_w[:-1]))
            logits = _shape((query @ W["v_attn"]).reshape(1, layer_id), temperature, tanh_constant)
            logits = logits - ((layer_id - np.arange(layer_id)) ** 2).reshape(1, layer_id) / 6.0
            skip_index = code_arc[2 * layer_id - 1]
            ce = -_log_softmax(logits)[0, skip_index]
            log_prob -= ce
            entropy += ce * np.exp(-ce)
            inputs = np.concatenate(all_h[:-1])[[skip_index]] / (0.1 + (layer_id - skip_index))
        else:
            inputs = W["g_emb"]
        prev_c, prev_h = _lstm(inputs, prev_c, prev_h, W["lstm.w"])
        func = code_arc[2 * layer_id] if layer_id > 0 else code_arc[0]
        if layer_id > 0:  # layer 0's activation is a decision in the code, fixed in naslab's space
            logits = _shape(prev_h @ W["w_soft"], temperature, tanh_constant)
            ce = -_log_softmax(logits)[0, func]
            log_prob -= ce
            entropy += ce * np.exp(-ce)
        inputs = W["w_emb"][[func]]
    return log_prob, entropy


# --- structure and selection -------------------------------------------------------------------------------


def test_auto_selects_the_enas_controller_of_each_family_and_generic_elsewhere() -> None:
    families = {
        "micro": (MicroSpace(5, "enas"), EnasMicroController),
        "macro": (MacroSpace(12), EnasMacroController),
        "rnn": (RNNSpace(11), EnasRNNController),
    }
    for family, (space, cls) in families.items():
        strategy = ReinforceStrategy(space, controller="auto")
        assert isinstance(strategy.controller, cls) and strategy.controller_kind == family
        assert strategy.controller.token_choices() == space.token_choices()
        assert isinstance(ReinforceStrategy(space, controller="generic").controller, Controller)
    mlp = MLPSpace()
    assert isinstance(ReinforceStrategy(mlp, controller="auto").controller, Controller)
    with pytest.raises(ValueError, match="controller=enas needs one of the ENAS spaces"):
        ReinforceStrategy(mlp, controller="enas")
    with pytest.raises(ValueError, match="strategy.controller must be one of"):
        ReinforceStrategy(mlp, controller="lstm")
    with pytest.raises(ValueError, match="predictor"):
        ReinforceStrategy(MicroSpace(2, "enas"), controller="enas", predictor=True)
    with pytest.raises(ValueError, match="updates_per_tell"):
        ReinforceStrategy(mlp, num_aggregate=10, updates_per_tell=2)


def test_the_authors_variables_sizes_and_initialisation() -> None:
    """micro_controller.py _create_params: lstm w [2h, 4h], g_emb, w_emb, w_soft, b_soft, attention; all
    uniform(-0.1, 0.1) but b_soft = [10, 10, 0, ...] on the code's ops 0 and 1 (the separable convolutions)."""
    controller = ReinforceStrategy(MicroSpace(5, "enas"), hidden=64, controller="enas").controller
    shapes = {name: tuple(p.shape) for name, p in controller.named_parameters()}
    assert shapes == {
        "lstm.w": (128, 256),
        "g_emb": (1, 64),
        "w_emb": (5, 64),
        "w_soft": (64, 5),
        "b_soft": (1, 5),
        "w_attn_1": (64, 64),
        "w_attn_2": (64, 64),
        "v_attn": (64, 1),
    }
    for name, p in controller.named_parameters():
        if name != "b_soft":
            assert -0.1 <= p.min() < -0.09 and 0.09 < p.max() <= 0.1, name
    assert controller.b_soft.tolist() == [[0.0, 10.0, 10.0, 0.0, 0.0]]  # naslab's order: identity, sep 3x3, sep 5x5, ..
    assert controller.b_soft_no_learn.tolist() == [[-0.25, 0.25, 0.25, -0.25, -0.25]]
    assert "b_soft_no_learn" not in controller.state_dict()  # a constant, not a variable
    macro = ReinforceStrategy(MacroSpace(12), hidden=64, controller="enas").controller
    assert {name for name, _ in macro.named_parameters()} == set(shapes) - {"b_soft"}


# --- a proper distribution over the space, in naslab's token order -----------------------------------------


@pytest.mark.parametrize("family", sorted(TINY))
def test_exp_log_prob_sums_to_one_over_every_architecture(family) -> None:
    space = TINY[family]
    every = every_sequence(space)
    sizes = {"micro": 256, "micro_tied": 576, "micro_distinct": 192, "macro": 64, "rnn": 384}
    assert len(every) == space.size() == sizes[family]
    log_prob, _ = scored(sharpened(space), every)
    assert np.exp(log_prob).sum() == pytest.approx(1.0, abs=1e-5)
    assert np.exp(log_prob).max() > 3 / len(every)  # far from uniform: the check has teeth


@pytest.mark.parametrize("family", sorted(TINY))
def test_sampled_frequencies_match_the_scored_probabilities(family) -> None:
    chisquare = pytest.importorskip("scipy.stats").chisquare
    space, n = TINY[family], 20_000
    controller = sharpened(space)
    every = every_sequence(space)
    probs = np.exp(scored(controller, every)[0])
    index = {tuple(t): i for i, t in enumerate(every.tolist())}
    with torch.no_grad():
        sampled = controller(n, generator=torch.Generator().manual_seed(1)).tokens
    counts = np.bincount([index[tuple(t)] for t in sampled.tolist()], minlength=len(every))
    expected = probs / probs.sum() * n
    big = expected >= 5  # pool the rare architectures into one bin
    f_obs, f_exp = counts[big], expected[big]
    if not big.all():
        f_obs, f_exp = np.append(f_obs, counts[~big].sum()), np.append(f_exp, expected[~big].sum())
    assert chisquare(f_obs, f_exp).pvalue > 1e-3


@pytest.mark.parametrize("family", sorted(TINY))
def test_scores_match_a_transcription_of_the_authors_sampler(family) -> None:
    space = TINY[family]
    shaping = {"temperature": 1.7, "tanh_constant": 2.5}
    if family.startswith("micro"):
        shaping["op_tanh_reduce"] = 2.5
    controller = sharpened(space, scale=3.0, **shaping)
    rng = np.random.default_rng(0)
    tokens = torch.tensor([space.to_tokens(space.sample(rng)) for _ in range(40)])
    with torch.no_grad():
        out = controller(len(tokens), tokens=tokens)
    for k, arc in enumerate(tokens.tolist()):
        if family.startswith("micro"):
            ref = reference_micro(controller, arc, space.ops, space.num_cells, 1.7, 2.5, 2.5, space.distinct_inputs)
        elif family == "macro":
            ref = reference_macro(controller, arc, space.num_layers, 1.7, 2.5, 0.4)
            assert out.skip_penalty[k].item() == pytest.approx(ref[2], rel=1e-4, abs=1e-6)
            skips = [arc[p] for p, kind in enumerate(space.token_kinds()) if kind == "skip"]
            assert out.skips[k].item() == sum(skips)
        else:
            ref = reference_rnn(controller, arc, space.num_nodes, 1.7, 2.5, space.activations.index("tanh"))
        assert out.log_prob[k].item() == pytest.approx(ref[0], rel=1e-4, abs=1e-5)
        assert out.entropy[k].item() == pytest.approx(ref[1], rel=1e-4, abs=1e-5)


def test_sampling_reproduces_its_scores_and_is_seeded() -> None:
    for space in TINY.values():
        controller = sharpened(space)
        with torch.no_grad():
            a = controller(64, generator=torch.Generator().manual_seed(3))
            b = controller(64, generator=torch.Generator().manual_seed(3))
            rescored = controller(64, tokens=a.tokens)
        assert torch.equal(a.tokens, b.tokens)
        assert torch.allclose(a.log_prob, rescored.log_prob) and torch.allclose(a.entropy, rescored.entropy)
        for t in a.tokens.tolist():
            space.validate(space.from_tokens(t))


# --- hand-computed values ------------------------------------------------------------------------------------


def test_micro_op_bias_with_zeroed_weights() -> None:
    """Normal cell: softmax(1.1 / 2.5 * tanh(b_soft) + b_soft_no_learn); reduction cell: without b_soft_no_learn;
    inputs uniform. The enas op set in naslab's order: identity, sep 3x3, sep 5x5, avg pool, max pool."""
    space = MicroSpace(2, "enas")
    controller = zeroed(build_enas_controller(space, 8, temperature=None, tanh_constant=1.1, op_tanh_reduce=2.5))
    sep = 0.44 * math.tanh(10.0)  # b_soft = 10 on the separable convolutions, 0 elsewhere
    normal = np.array([-0.25, sep + 0.25, sep + 0.25, -0.25, -0.25])
    reduce = np.array([0.0, sep, sep, 0.0, 0.0])
    p_normal, p_reduce = np.exp(normal) / np.exp(normal).sum(), np.exp(reduce) / np.exp(reduce).sum()
    assert p_normal[1] == pytest.approx(0.315270, abs=1e-6) and p_reduce[1] == pytest.approx(0.254316, abs=1e-6)
    rng = np.random.default_rng(0)
    tokens = [space.to_tokens(space.sample(rng)) for _ in range(50)]
    expected = []
    for t in tokens:
        total = 0.0
        for position, (token, choices) in enumerate(zip(t, space.token_choices())):
            if position % 2 == 0:  # inputs: uniform over the node's k + 2 choices
                total += -math.log(choices)
            else:
                total += math.log((p_normal if position < 8 else p_reduce)[token])
        expected.append(total)
    log_prob, entropy = scored(controller, torch.tensor(tokens))
    assert log_prob == pytest.approx(expected, abs=1e-5)
    # full entropies: inputs log 2 and log 3 per node and branch, ops H(p) per op decision
    h = lambda p: -(p * np.log(p)).sum()  # noqa: E731
    full = 2 * (2 * math.log(2) + 2 * math.log(3)) + 4 * h(p_normal) + 4 * h(p_reduce)
    assert entropy == pytest.approx([full] * 50, abs=1e-5)


def test_rnn_locality_prior_with_zeroed_weights() -> None:
    """p(input j at node i) is proportional to exp(-(i - j)^2 / 6); activations uniform."""
    space = RNNSpace(3)
    controller = zeroed(build_enas_controller(space, 8, temperature=5.0, tanh_constant=2.5))
    node2 = {1: 1 / (1 + math.exp(-0.5)), 0: 1 / (1 + math.exp(0.5))}  # (4 - 1) / 6 = 0.5 apart
    weights3 = [math.exp(-9 / 6), math.exp(-4 / 6), math.exp(-1 / 6)]
    node3 = {j: w / sum(weights3) for j, w in enumerate(weights3)}
    assert node2[1] == pytest.approx(0.622459, abs=1e-6) and node3[2] == pytest.approx(0.534723, abs=1e-6)
    every = every_sequence(space)
    log_prob, entropy = scored(controller, every)
    for tokens, lp, ent in zip(every.tolist(), log_prob, entropy):
        j1, _, j2, _, j3, _ = tokens
        assert j1 == 0
        assert lp == pytest.approx(math.log(node2[j2] * node3[j3] / 4**3), abs=1e-5)
        # the code's entropy term: -p(a) log p(a) of each sampled decision
        terms = [1.0, node2[j2], node3[j3]] + [0.25] * 3
        assert ent == pytest.approx(sum(-p * math.log(p) for p in terms), abs=1e-5)


def test_macro_skip_penalty_and_entropy_by_hand() -> None:
    """The code's KL of sigmoid(logit) to [1 - 0.4, 0.4], summed per layer, averaged over layers 1..L-1."""
    space = MacroSpace(3, ["conv_3x3", "max_pool_3x3"])
    controller = zeroed(build_enas_controller(space, 8, temperature=None, tanh_constant=1.5, skip_target=0.4))
    per_pair = 0.5 * math.log(0.5 / 0.6) + 0.5 * math.log(0.5 / 0.4)  # q = 0: sigmoid(0) = 1/2 on both entries
    assert per_pair == pytest.approx(0.0204110, abs=1e-7)
    with torch.no_grad():
        out = controller(4, generator=torch.Generator().manual_seed(0))
    assert out.skip_penalty.tolist() == pytest.approx([(1 + 2) / 2 * per_pair] * 4, abs=1e-7)
    # every decision is a fair coin (2 ops; skips at q = 0): -1/2 log 1/2 each, 3 op and 3 skip decisions
    assert out.entropy.tolist() == pytest.approx([6 * 0.5 * math.log(2)] * 4, abs=1e-6)
    # the penalty of given logits: q' = 0.8 on one pair, -0.3 on the other
    logits = torch.tensor([[[-0.8, 0.8], [0.3, -0.3]]])
    s1, s2 = 1 / (1 + math.exp(-0.8)), 1 / (1 + math.exp(0.3))
    kl = lambda s: (1 - s) * math.log((1 - s) / 0.6) + s * math.log(s / 0.4)  # noqa: E731
    assert controller.skip_penalty(logits).item() == pytest.approx(kl(s1) + kl(s2), abs=1e-6)


@pytest.mark.parametrize(("target", "rate"), [(0.4, 0.16 / 0.52), (0.6, 0.36 / 0.52)])
def test_skip_penalty_gradient_moves_the_skip_rate_to_the_codes_fixed_point(target, rate) -> None:
    """Minimising the penalty alone drives sigmoid(q') to the target; the sampled skip probability is
    softmax([-q', q'])[1] = sigmoid(2 q'), so the skip rate settles at t^2 / (t^2 + (1 - t)^2): 0.3077 for 0.4."""
    space = MacroSpace(3, ["conv_3x3", "max_pool_3x3"])
    torch.manual_seed(0)
    controller = build_enas_controller(space, 16, temperature=None, tanh_constant=1.5, skip_target=target)
    every = every_sequence(space)
    skip_columns = [p for p, kind in enumerate(space.token_kinds()) if kind == "skip"]

    def skip_rate() -> float:
        probs = np.exp(scored(controller, every)[0])
        return float((probs * every[:, skip_columns].double().mean(1).numpy()).sum())

    assert skip_rate() == pytest.approx(0.5, abs=0.01)
    optimizer = torch.optim.Adam(controller.parameters(), lr=0.05)
    for step in range(150):
        penalty = controller(8, generator=torch.Generator().manual_seed(step)).skip_penalty.mean()
        optimizer.zero_grad()
        penalty.backward()
        optimizer.step()
    assert skip_rate() == pytest.approx(rate, abs=0.005)


# --- the code's REINFORCE update: baseline from 0, per-sample baseline, TensorFlow's Adam, aggregation --------


def tf_adam_first_step(theta: torch.Tensor, grad: torch.Tensor, lr: float) -> torch.Tensor:
    """tf.train.AdamOptimizer(beta1=0.0, beta2=0.999, epsilon=1e-3), step 1: m = g, v = 0.001 g^2,
    lr_t = lr sqrt(1 - 0.999) / (1 - 0), theta - lr_t m / (sqrt(v) + eps)."""
    v = 0.001 * grad.double() ** 2
    lr_t = lr * math.sqrt(1 - 0.999)
    return (theta.double() - lr_t * grad.double() / (v.sqrt() + 1e-3)).float()


def test_epsilon_hat_adam_is_tensorflows_update() -> None:
    x = torch.nn.Parameter(torch.tensor([1.0]))
    optimizer = EpsilonHatAdam([x], lr=0.1, betas=(0.9, 0.999), eps=1e-3)
    m = v = 0.0
    theta = 1.0
    for t, g in enumerate([0.5, -0.2, 0.1], start=1):
        x.grad = torch.tensor([g])
        optimizer.step()
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        theta -= 0.1 * math.sqrt(1 - 0.999**t) / (1 - 0.9**t) * m / (math.sqrt(v) + 1e-3)
        assert x.item() == pytest.approx(theta, abs=1e-6)
    torch_x = torch.nn.Parameter(torch.tensor([1.0]))
    torch_x.grad = torch.tensor([0.5])
    torch.optim.Adam([torch_x], lr=0.1, eps=1e-3).step()
    assert abs(torch_x.item() - (1 - 0.1 * 0.5 / (0.5 + 1e-3))) < 1e-6  # torch: eps after the bias correction
    assert abs(torch_x.item() - (1 - 0.1 * math.sqrt(0.001) * 0.5 / (math.sqrt(0.001) * 0.5 + 1e-3))) > 1e-3


def test_first_update_advantage_is_reward_minus_one_percent_of_it() -> None:
    """Baseline 0, bl_dec 0.99: the baseline moves first (0.01 * 0.8 = 0.008), so the advantage is 0.792."""
    space = TINY["micro"]
    strategy = ReinforceStrategy(space, seed=0, lr=0.0035, entropy_weight=0.0, num_aggregate=1, **CODE)
    reference = copy.deepcopy(strategy.controller)
    proposal = strategy.ask(1)
    tokens = torch.tensor([space.to_tokens(proposal[0].genotype)])
    strategy.tell(results_of(proposal, [0.8]))
    assert strategy.baseline == pytest.approx(0.008, abs=1e-9)  # 0.8 as a float32 reward
    loss = -(0.8 - 0.01 * 0.8) * reference(1, tokens=tokens).log_prob.sum()
    grads = torch.autograd.grad(loss, list(reference.parameters()))
    for (name, p), before, g in zip(strategy.controller.named_parameters(), reference.parameters(), grads):
        assert torch.allclose(p, tf_adam_first_step(before.detach(), g, 0.0035), atol=1e-7), name


def test_ten_told_samples_make_one_adam_step_on_their_mean_gradient() -> None:
    """num_aggregate=10 (SyncReplicasOptimizer): nine tells change nothing, the tenth steps once on the mean
    of the ten per-sample gradients of -log p * (reward - baseline) + 0.8 * skip penalty; the baseline moves
    per sample."""
    space = TINY["macro"]
    strategy = ReinforceStrategy(space, seed=1, lr=0.001, entropy_weight=0.0, skip_weight=0.8, num_aggregate=10, **CODE)
    reference = copy.deepcopy(strategy.controller)
    initial = [p.detach().clone() for p in strategy.controller.parameters()]
    scores = [0.1, 0.5, 0.9, 0.3, 0.7, 0.2, 0.6, 0.4, 0.8, 0.0]
    told, baseline, grads = [], 0.0, None
    for k, score in enumerate(scores):
        proposals = strategy.ask(1)
        strategy.tell(results_of(proposals, [score]))
        told.append(space.to_tokens(proposals[0].genotype))
        baseline += 0.01 * (score - baseline)
        out = reference(1, tokens=torch.tensor([told[-1]]))
        loss = -(score - baseline) * out.log_prob.sum() + 0.8 * out.skip_penalty.sum()
        g = torch.autograd.grad(loss, list(reference.parameters()))
        grads = list(g) if grads is None else [a + b for a, b in zip(grads, g)]
        if k < 9:
            assert all(torch.equal(p, q) for p, q in zip(strategy.controller.parameters(), initial)), k
            assert strategy.optimizer.state == {}
    assert strategy.baseline == pytest.approx(baseline, abs=1e-9)
    assert {s["step"] for s in strategy.optimizer.state.values()} == {1}  # exactly one optimizer step
    for (name, p), before, g in zip(strategy.controller.named_parameters(), initial, grads):
        assert torch.allclose(p, tf_adam_first_step(before, g / 10, 0.001), atol=1e-7), name
    metrics = strategy.pop_metrics()
    assert metrics["skip_rate"] == pytest.approx(
        np.mean([sum(t[p] for p, kind in enumerate(space.token_kinds()) if kind == "skip") / 3 for t in told])
    )
    assert strategy.pop_metrics() == {}


def test_a_tell_across_the_aggregate_boundary_splits_into_steps() -> None:
    """A tell of 7 with num_aggregate=3: two steps, one sample left waiting in the aggregate."""
    space = TINY["rnn"]
    strategy = ReinforceStrategy(space, seed=0, num_aggregate=3, **CODE)
    proposals = strategy.ask(7)
    strategy.tell(results_of(proposals, [0.1 * i for i in range(7)]))
    assert {s["step"] for s in strategy.optimizer.state.values()} == {2}
    assert strategy.state_dict()["aggregate"]["count"] == 1


@pytest.mark.parametrize("family", ["micro", "macro", "rnn"])
def test_tell_moves_probability_towards_rewarded_architectures(family) -> None:
    space = TINY[family]
    strategy = ReinforceStrategy(space, seed=0, lr=0.05, num_aggregate=1, skip_weight=0.0, **CODE)
    good, bad = (p.genotype for p in strategy.ask(2))
    tokens = torch.tensor([space.to_tokens(good), space.to_tokens(bad)])
    before, _ = scored(strategy.controller, tokens)
    for _ in range(20):  # TensorFlow's Adam with eps 1e-3 takes small first steps: lr sqrt(1 - 0.999^t) / ...
        strategy.tell([Result(good, 1.0), Result(bad, 0.0)])
    after, _ = scored(strategy.controller, tokens)
    assert after[0] > before[0] and after[0] - after[1] > before[0] - before[1] + 0.01


@pytest.mark.parametrize("family", ["micro", "macro", "rnn"])
def test_state_round_trip_continues_exactly_with_a_partial_aggregate(family, tmp_path) -> None:
    space = TINY[family]
    settings = dict(num_aggregate=4, skip_weight=0.8, lr=0.01, **CODE)

    def run(strategy, tells: int) -> list:
        asked = []
        for _ in range(tells):
            proposals = strategy.ask(1)
            strategy.tell(results_of(proposals, [float(np.mean(space.to_tokens(proposals[0].genotype)))]))
            asked += [p.genotype for p in proposals]
        return asked

    first = ReinforceStrategy(space, seed=2, **settings)
    assert run(first, 6) == run(ReinforceStrategy(space, seed=2, **settings), 6)  # seeded
    assert first.state_dict()["aggregate"]["count"] == 2  # one step taken, two samples waiting
    torch.save(first.state_dict(), tmp_path / "state.pt")  # as the search loops checkpoint it
    second = ReinforceStrategy(space, seed=99, **settings)
    second.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    assert second.baseline == first.baseline
    assert run(first, 7) == run(second, 7)
    assert all(torch.equal(x, y) for x, y in zip(first.controller.parameters(), second.controller.parameters()))
    assert {s["step"] for s in second.optimizer.state.values()} == {3}


# --- the presets ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", ["enas_micro", "enas_macro", "enas_ptb"])
def test_each_preset_builds_its_controller(compose_cfg, preset) -> None:
    from hydra.utils import instantiate

    cfg = compose_cfg(f"experiment={preset}")
    strategy = instantiate(cfg.strategy, space=instantiate(cfg.space))
    assert strategy.controller_kind == {"enas_micro": "micro", "enas_macro": "macro", "enas_ptb": "rnn"}[preset]
    assert isinstance(strategy.optimizer, EpsilonHatAdam) and strategy.baseline == 0.0
    assert strategy.controller.hidden == cfg.strategy.hidden
    # controller samples per epoch / samples per optimizer step = the scripts' controller_train_steps
    steps = cfg.evaluator.strategy_steps * cfg.search.batch_size // strategy.num_aggregate
    assert steps == {"enas_micro": 30, "enas_macro": 50, "enas_ptb": 100}[preset]
