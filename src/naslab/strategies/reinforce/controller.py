"""The ENAS controllers as the authors' released code runs them.

"Efficient Neural Architecture Search via Parameter Sharing" (Pham, Guan, Zoph, Le, Dean;
arXiv:1802.03268) samples its three search spaces with three controllers that differ from a plain
"one softmax head per token" LSTM: input choices are made by attention over the LSTM states of
earlier nodes (pointer-network style), the LSTM reads back the chosen node's state, and every
family has its own logit shaping. This module follows the authors' TensorFlow code
(melodyguan/enas) line by line; docs/methods/enas.md lists where and why it still differs.

Shared parts (melodyguan/enas src/common_ops.py, src/cifar10/main.py, src/ptb/main.py):
- the LSTM is `stack_lstm` with one layer: one matrix w [2h, 4h] over [x, h_prev], no bias, gates
  i, f, o, g in that order; its state starts at zero;
- every controller variable is initialised uniform(-0.1, 0.1) (`tf.random_uniform_initializer` on
  the controller's scope), except the micro op bias `b_soft`, which has its own constant init;
- the first input is a learned `g_emb`; after an op choice the input is the op's embedding;
- attention: `v^T tanh(W1 anchor_j + W2 h)` with the anchors' W1 products computed once per anchor.

Micro (src/cifar10/micro_controller.py): per cell, two LSTM steps on g_emb make the anchors of the
two cell inputs (their anchor *values* are zeros; only their W1 products are not); per node, two
index choices by attention (temperature, then `tanh_constant * tanh`), the LSTM reading the chosen
anchor after each, then two op choices (`w_soft h + b_soft`, temperature, then
`tanh_constant / op_tanh_reduce * tanh`, then the fixed `b_soft_no_learn` in the normal cell only),
the LSTM reading the op's embedding after each; one more step on the last op's embedding gives the
node's anchor, and the next node starts from g_emb. The reduction cell's sampler continues from the
normal cell's LSTM state. The code samples per node index_1, index_2, op_1, op_2 and stores
[index_1, op_1, index_2, op_2], which is naslab's token layout: only the sampling order differs.
Entropy: the full entropy of every softmax.

Macro (src/cifar10/general_controller.py, `search_whole_channels=True`, `search_for="macro"`): per
layer one op choice (`h w_soft`, temperature, `tanh_constant * tanh`; `op_tanh_reduce` is never read
by this file), the LSTM reads the op's embedding, then (layer i > 0) one query per earlier layer j
turned into the two-way logits [-q_j, q_j] (temperature, `tanh_constant * tanh`), one skip bit
sampled per earlier layer; the next input is the sum of the chosen anchors / (1 + their number), and
the anchor of the layer is this step's output. The skip penalty is the code's
`sum_j sum_k sigmoid(logit)_k log(sigmoid(logit)_k / [1 - skip_target, skip_target]_k)` per layer
(a KL of the skip probability sigmoid(q') to the target), averaged over layers 1..L-1. Entropy: per
decision `-log p(a) * p(a)` of the sampled action (`log_prob * exp(-log_prob)` with the code's
`log_prob` being the cross entropy), not the full entropy.

Recurrent (src/ptb/ptb_enas_controller.py, rhn_depth = num_nodes + 1): layer 0 has one LSTM step
(its anchor) and an activation step; layer i >= 1 makes its skip choice by attention over layers
0..i-1 (temperature, `tanh_constant * tanh`, then the locality prior `-(i - j)^2 / 6`), the LSTM
reads the chosen anchor / (0.1 + (i - j)), then chooses the activation (temperature,
`tanh_constant * tanh`). naslab's node i is the code's layer i; naslab fixes node 0's activation to
tanh, so layer 0's activation step runs (the LSTM sees tanh's embedding) without a decision. Entropy
as the macro controller's.

Every controller is batched over n samples and scores given token sequences in naslab's token order,
so `exp(log_prob)` sums to 1 over the space (tests/strategies/reinforce/test_controller.py checks it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from naslab.spaces.base import Space
from naslab.spaces.macro.space import MacroSpace
from naslab.spaces.micro.space import MicroSpace
from naslab.spaces.rnn.space import RNNSpace

# melodyguan/enas src/cifar10/micro_child.py `_enas_cell`: the code's ops 0 and 1 are the separable
# convolutions (3x3, 5x5), which micro_controller.py favours with b_soft = [10, 10, 0, ...] and
# b_soft_no_learn = [0.25, 0.25, -0.25, ...].
ENAS_FAVOURED_OPS = ("sep_conv_3x3", "sep_conv_5x5")
ENAS_FAMILIES = ("micro", "macro", "rnn")


@dataclass
class Sampled:
    """Token sequences with their log-probabilities and entropy terms (summed over decisions).

    The output of every controller (`reinforce.Controller` and the ENAS controllers here). The macro
    controller adds its skip penalty and skip count per sample.
    """

    tokens: torch.Tensor  # (n, positions) int64
    log_prob: torch.Tensor  # (n,)
    entropy: torch.Tensor  # (n,)
    predicted: torch.Tensor | None = None  # (n,) in (0, 1): the accuracy predictor's output, when it has one
    skip_penalty: torch.Tensor | None = None  # (n,) the macro controller's KL skip penalty (mean over layers)
    skips: torch.Tensor | None = None  # (n,) the macro controller's number of skip connections


def sample_tokens(probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One draw per row of `probs` (rows, k), with the strategy's generator (a CPU one: the draws are made
    on the CPU when the controller lives elsewhere, e.g. moved to a GPU with the shared weights)."""
    if generator is not None and generator.device != probs.device:
        return torch.multinomial(probs.cpu(), 1, generator=generator).to(probs.device).squeeze(1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


def enas_family(space: Space) -> str | None:
    """'micro', 'macro' or 'rnn' for the spaces ENAS searches; None for any other space."""
    if isinstance(space, MicroSpace):
        return "micro"
    if isinstance(space, MacroSpace):
        return "macro"
    if isinstance(space, RNNSpace):
        return "rnn"
    return None


class EnasLSTMCell(nn.Module):
    """common_ops.py `lstm`: [x, h] @ w with w [2h, 4h], gates i, f, o, g, no bias."""

    def __init__(self, hidden: int):
        super().__init__()
        self.w = nn.Parameter(torch.empty(2 * hidden, 4 * hidden))

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """One step; `state` and the result are (c, h), as the code orders them."""
        c, h = state
        i, f, o, g = (torch.cat([x, h], dim=1) @ self.w).chunk(4, dim=1)
        c = torch.sigmoid(i) * torch.tanh(g) + torch.sigmoid(f) * c
        return c, torch.sigmoid(o) * torch.tanh(c)


class _Decisions:
    """Collects one forward pass's decisions: sampled (or read from `tokens`), their log-probs and entropy."""

    def __init__(
        self,
        n: int,
        positions: int,
        tokens: torch.Tensor | None,
        generator: torch.Generator | None,
        device: torch.device,
    ):
        if tokens is not None and tuple(tokens.shape) != (n, positions):
            raise ValueError(f"expected tokens of shape ({n}, {positions}), got {tuple(tokens.shape)}")
        self.n, self.generator, self.device = n, generator, device
        self.given = None if tokens is None else tokens.to(device)
        self.tokens = torch.zeros(n, positions, dtype=torch.long, device=device)
        self.log_prob = torch.zeros(n, device=device)
        self.entropy = torch.zeros(n, device=device)

    def choose(self, logits: torch.Tensor, position: int, full_entropy: bool) -> torch.Tensor:
        """One decision per sample from `logits` (n, k) at token `position`; returns the tokens (n,)."""
        return self.choose_many(logits.unsqueeze(1), position, full_entropy).squeeze(1)

    def choose_many(self, logits: torch.Tensor, position: int, full_entropy: bool) -> torch.Tensor:
        """`m` independent decisions per sample from `logits` (n, m, k) at positions position..position+m-1."""
        n, m, k = logits.shape
        log_p = torch.log_softmax(logits, dim=-1)
        if self.given is None:
            token = sample_tokens(log_p.detach().exp().reshape(n * m, k), self.generator).reshape(n, m)
        else:
            token = self.given[:, position : position + m].long()
        chosen = log_p.gather(2, token.unsqueeze(2)).squeeze(2)  # (n, m)
        self.log_prob = self.log_prob + chosen.sum(dim=1)
        with torch.no_grad():  # every controller's entropy is under tf.stop_gradient in the code
            if full_entropy:  # micro_controller.py: softmax_cross_entropy_with_logits(labels=softmax(logits))
                term = -(log_p.exp() * log_p).sum(dim=2)
            else:  # general_controller.py / ptb_enas_controller.py: log_prob * exp(-log_prob), log_prob = -log p(a)
                term = -chosen * chosen.exp()
            self.entropy = self.entropy + term.sum(dim=1)
        self.tokens[:, position : position + m] = token
        return token

    def result(self, **extra: torch.Tensor | None) -> Sampled:
        return Sampled(self.tokens, self.log_prob, self.entropy, **extra)


class EnasController(nn.Module):
    """The parts the three ENAS controllers share: LSTM, start input, attention, logit shaping."""

    family: str = ""
    predictor = None  # the MLPNAS accuracy predictor exists for reinforce.Controller only

    def __init__(self, hidden: int, temperature: float | None, tanh_constant: float | None):
        super().__init__()
        if hidden < 1:
            raise ValueError(f"strategy.hidden (the controller's LSTM size) must be >= 1, got {hidden}")
        if temperature is not None and temperature <= 0:
            raise ValueError(f"strategy.temperature must be > 0 or null, got {temperature}")
        self.hidden, self.temperature, self.tanh_constant = hidden, temperature, tanh_constant
        # Created in the code's variable order (lstm, g_emb, ...); subclasses add theirs, then call _init_uniform.
        self.lstm = EnasLSTMCell(hidden)
        self.g_emb = nn.Parameter(torch.empty(1, hidden))

    def _attention(self) -> None:
        self.w_attn_1 = nn.Parameter(torch.empty(self.hidden, self.hidden))
        self.w_attn_2 = nn.Parameter(torch.empty(self.hidden, self.hidden))
        self.v_attn = nn.Parameter(torch.empty(self.hidden, 1))

    def _init_uniform(self) -> None:
        """tf.random_uniform_initializer(minval=-0.1, maxval=0.1) on every variable, in creation order."""
        for p in self.parameters():
            nn.init.uniform_(p, -0.1, 0.1)

    def _shape(self, logits: torch.Tensor, tanh_constant: float | None) -> torch.Tensor:
        """`logits /= temperature` if set, then `tanh_constant * tanh(logits)` if set, as every sampler does."""
        if self.temperature is not None:
            logits = logits / self.temperature
        if tanh_constant is not None:
            logits = tanh_constant * torch.tanh(logits)
        return logits

    def _attend(self, anchors_w1: list[torch.Tensor], h: torch.Tensor) -> torch.Tensor:
        """v^T tanh(W1 anchor_j + W2 h) for every anchor j: (n, len(anchors_w1))."""
        query = torch.tanh(torch.stack(anchors_w1, dim=1) + (h @ self.w_attn_2).unsqueeze(1))
        return (query @ self.v_attn).squeeze(2)

    def _start(self, n: int) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        zeros = torch.zeros(n, self.hidden, device=self.g_emb.device)
        return self.g_emb.expand(n, -1), (zeros, zeros)

    def _decisions(self, n: int, tokens: torch.Tensor | None, generator: torch.Generator | None) -> _Decisions:
        return _Decisions(n, len(self.token_choices()), tokens, generator, self.g_emb.device)

    def token_choices(self) -> list[int]:
        """The softmax size at each token position, in naslab's token order (the space's `token_choices`)."""
        raise NotImplementedError

    def forward(self, n: int, tokens: torch.Tensor | None = None, generator: torch.Generator | None = None) -> Sampled:
        """Samples `n` token sequences, or scores the given `tokens` (n, positions) in naslab's token order."""
        raise NotImplementedError


def _pick(rows: list[torch.Tensor], index: torch.Tensor) -> torch.Tensor:
    """rows[index[b]][b] for every sample b: the chosen anchor of each sample."""
    return torch.stack(rows, dim=1)[torch.arange(index.shape[0], device=index.device), index]


class EnasMicroController(EnasController):
    """micro_controller.py `MicroController` over naslab's micro space (one or two cells)."""

    family = "micro"

    def __init__(
        self,
        num_nodes: int,
        ops: Sequence[str],
        num_cells: int = 2,
        hidden: int = 64,
        temperature: float | None = None,
        tanh_constant: float | None = 1.1,
        op_tanh_reduce: float = 2.5,
        distinct_inputs: bool = False,
    ):
        super().__init__(hidden, temperature, tanh_constant)
        self.distinct_inputs = distinct_inputs  # the space's `distinct_inputs`: index_2 excludes index_1
        if num_nodes < 1 or not ops or num_cells not in (1, 2):
            raise ValueError(
                f"micro controller: num_nodes >= 1, ops, 1 or 2 cells; got {num_nodes}, {ops}, {num_cells}"
            )
        if op_tanh_reduce <= 0:
            raise ValueError(f"strategy.op_tanh_reduce must be > 0, got {op_tanh_reduce}")
        self.num_nodes, self.ops, self.num_cells = num_nodes, tuple(ops), num_cells
        self.op_tanh_reduce = op_tanh_reduce
        branches = len(self.ops)
        self.w_emb = nn.Parameter(torch.empty(branches, hidden))
        self.w_soft = nn.Parameter(torch.empty(hidden, branches))
        self.b_soft = nn.Parameter(torch.empty(1, branches))
        self._attention()
        self._init_uniform()
        # The code's constants follow its op order (ops 0, 1 = the separable convolutions); here they follow
        # the op names, so they favour the same ops whatever order the space lists them in.
        favoured = torch.tensor([op in ENAS_FAVOURED_OPS for op in self.ops])
        with torch.no_grad():
            self.b_soft.copy_(torch.where(favoured, 10.0, 0.0).unsqueeze(0))  # b_init = [10, 10] + [0] * ...
        self.register_buffer("b_soft_no_learn", torch.where(favoured, 0.25, -0.25).unsqueeze(0), persistent=False)

    def token_choices(self) -> list[int]:
        per_cell: list[int] = []
        for k in range(self.num_nodes):
            per_cell += [k + 2, len(self.ops), k + 1 if self.distinct_inputs else k + 2, len(self.ops)]
        return per_cell * self.num_cells

    def op_logits(self, h: torch.Tensor, normal_cell: bool) -> torch.Tensor:
        """The op logits of one step: w_soft h + b_soft, shaped, plus b_soft_no_learn in the normal cell."""
        reduced = None if self.tanh_constant is None else self.tanh_constant / self.op_tanh_reduce
        logits = self._shape(h @ self.w_soft + self.b_soft, reduced)
        return logits + self.b_soft_no_learn if normal_cell else logits

    def forward(self, n: int, tokens: torch.Tensor | None = None, generator: torch.Generator | None = None) -> Sampled:
        decisions = self._decisions(n, tokens, generator)
        _, state = self._start(n)
        for cell in range(self.num_cells):  # the reduction cell's sampler starts from the normal cell's state
            state = self._sample_cell(cell, state, decisions)
        return decisions.result()

    def _sample_cell(
        self, cell: int, state: tuple[torch.Tensor, torch.Tensor], decisions: _Decisions
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One `_build_sampler` call: `use_bias=True` (b_soft_no_learn) for the first cell only."""
        x, _ = self._start(decisions.n)
        anchors: list[torch.Tensor] = []
        anchors_w1: list[torch.Tensor] = []
        for _ in range(2):  # the two cell inputs: zero anchors, but attention keys from real LSTM states
            state = self.lstm(x, state)
            anchors.append(torch.zeros_like(state[1]))
            anchors_w1.append(state[1] @ self.w_attn_1)
        offset = 4 * self.num_nodes * cell
        for node in range(self.num_nodes):
            position = offset + 4 * node  # naslab: [input_1, op_1, input_2, op_2]
            first = None
            for i in range(2):  # index_1, index_2: tokens at position + 0 and + 2
                state = self.lstm(x, state)
                logits = self._shape(self._attend(anchors_w1, state[1]), self.tanh_constant)
                if first is not None and self.distinct_inputs:
                    # index_2 over the inputs other than index_1: the same attention logits without index_1's,
                    # i.e. a softmax masked at index_1; the token counts the remaining inputs (the space's)
                    keep = torch.arange(logits.shape[1], device=logits.device) != first.unsqueeze(1)
                    token = decisions.choose(logits[keep].view(logits.shape[0], -1), position + 2, full_entropy=True)
                    index = token + (token >= first).long()
                else:
                    index = decisions.choose(logits, position + 2 * i, full_entropy=True)
                first = index
                x = _pick(anchors, index)
            for i in range(2):  # op_1, op_2: tokens at position + 1 and + 3
                state = self.lstm(x, state)
                op = decisions.choose(self.op_logits(state[1], cell == 0), position + 2 * i + 1, full_entropy=True)
                x = self.w_emb[op]
            state = self.lstm(x, state)  # the node's anchor
            anchors.append(state[1])
            anchors_w1.append(state[1] @ self.w_attn_1)
            x, _ = self._start(decisions.n)
        return state


class EnasMacroController(EnasController):
    """general_controller.py `GeneralController` (search_whole_channels, search_for="macro")."""

    family = "macro"

    def __init__(
        self,
        num_layers: int,
        num_ops: int,
        hidden: int = 64,
        temperature: float | None = None,
        tanh_constant: float | None = 1.5,
        skip_target: float = 0.4,
    ):
        super().__init__(hidden, temperature, tanh_constant)
        if num_layers < 1 or num_ops < 1:
            raise ValueError(f"macro controller: num_layers and num_ops >= 1, got {num_layers}, {num_ops}")
        if not 0 < skip_target < 1:
            raise ValueError(f"strategy.skip_target must be in (0, 1), got {skip_target}")
        self.num_layers, self.num_ops, self.skip_target = num_layers, num_ops, skip_target
        self.w_emb = nn.Parameter(torch.empty(num_ops, hidden))
        self.w_soft = nn.Parameter(torch.empty(hidden, num_ops))
        self._attention()
        self._init_uniform()
        self.register_buffer("skip_targets", torch.tensor([1.0 - skip_target, skip_target]), persistent=False)

    @property
    def skip_pairs(self) -> int:
        """The number of skip decisions per architecture, L (L - 1) / 2 (the code's skip-rate normaliser)."""
        return self.num_layers * (self.num_layers - 1) // 2

    def token_choices(self) -> list[int]:
        return [n for i in range(self.num_layers) for n in [self.num_ops] + [2] * i]

    def skip_logits(self, anchors_w1: list[torch.Tensor], h: torch.Tensor) -> torch.Tensor:
        """(n, i, 2): the shaped logits [-q_j, q_j] of the skip from every earlier layer j."""
        query = self._attend(anchors_w1, h).unsqueeze(2)
        return self._shape(torch.cat([-query, query], dim=2), self.tanh_constant)

    def skip_penalty(self, logits: torch.Tensor) -> torch.Tensor:
        """The code's per-layer KL: sum over earlier layers and both entries of p log(p / target), p = sigmoid."""
        p = torch.sigmoid(logits)
        return (p * torch.log(p / self.skip_targets)).sum(dim=(1, 2))

    def forward(self, n: int, tokens: torch.Tensor | None = None, generator: torch.Generator | None = None) -> Sampled:
        decisions = self._decisions(n, tokens, generator)
        x, state = self._start(n)
        anchors: list[torch.Tensor] = []
        anchors_w1: list[torch.Tensor] = []
        penalties: list[torch.Tensor] = []
        skips = torch.zeros(n, device=self.g_emb.device)
        position = 0
        for layer in range(self.num_layers):
            state = self.lstm(x, state)
            logits = self._shape(state[1] @ self.w_soft, self.tanh_constant)  # no op_tanh_reduce in this file
            op = decisions.choose(logits, position, full_entropy=False)
            position += 1
            state = self.lstm(self.w_emb[op], state)
            if layer > 0:
                logits = self.skip_logits(anchors_w1, state[1])
                penalties.append(self.skip_penalty(logits))
                skip = decisions.choose_many(logits, position, full_entropy=False).float()  # (n, layer)
                position += layer
                skips = skips + skip.sum(dim=1)
                x = (skip.unsqueeze(2) * torch.stack(anchors, dim=1)).sum(dim=1) / (1.0 + skip.sum(dim=1, keepdim=True))
            else:
                x, _ = self._start(n)
            anchors.append(state[1])
            anchors_w1.append(state[1] @ self.w_attn_1)
        penalty = torch.stack(penalties, dim=1).mean(dim=1) if penalties else torch.zeros_like(skips)  # reduce_mean
        return decisions.result(skip_penalty=penalty, skips=skips)


class EnasRNNController(EnasController):
    """ptb_enas_controller.py `PTBEnasController` over naslab's recurrent cell space (rhn_depth = num_nodes + 1)."""

    family = "rnn"

    def __init__(
        self,
        num_nodes: int,
        num_activations: int,
        hidden: int = 100,
        temperature: float | None = 5.0,
        tanh_constant: float | None = 2.5,
        node0_activation: int = 0,
    ):
        super().__init__(hidden, temperature, tanh_constant)
        if num_nodes < 1 or num_activations < 1 or not 0 <= node0_activation < num_activations:
            raise ValueError(
                f"rnn controller: num_nodes >= 1, activations >= 1 and node 0's among them, "
                f"got {num_nodes}, {num_activations}, {node0_activation}"
            )
        self.num_nodes, self.num_activations = num_nodes, num_activations
        self.node0_activation = node0_activation  # naslab's node 0 is fixed: its tanh's embedding is fed back
        self.w_emb = nn.Parameter(torch.empty(num_activations, hidden))
        self.w_soft = nn.Parameter(torch.empty(hidden, num_activations))
        self._attention()
        self._init_uniform()

    def token_choices(self) -> list[int]:
        return [n for i in range(1, self.num_nodes + 1) for n in (i, self.num_activations)]

    def forward(self, n: int, tokens: torch.Tensor | None = None, generator: torch.Generator | None = None) -> Sampled:
        decisions = self._decisions(n, tokens, generator)
        x, state = self._start(n)
        all_h: list[torch.Tensor] = []
        all_h_w: list[torch.Tensor] = []
        for layer in range(self.num_nodes + 1):  # the code's layer i is naslab's node i
            state = self.lstm(x, state)
            all_h.append(state[1])
            all_h_w.append(state[1] @ self.w_attn_1)
            if layer > 0:
                logits = self._shape(self._attend(all_h_w[:-1], state[1]), self.tanh_constant)
                distance = layer - torch.arange(layer, dtype=torch.float32, device=state[1].device)
                logits = logits - distance**2 / 6.0  # the locality prior, after the tanh constant
                j = decisions.choose(logits, 2 * (layer - 1), full_entropy=False)
                x = _pick(all_h[:-1], j) / (0.1 + (layer - j).float()).unsqueeze(1)
            else:
                x, _ = self._start(n)
            state = self.lstm(x, state)
            if layer > 0:
                logits = self._shape(state[1] @ self.w_soft, self.tanh_constant)
                activation = decisions.choose(logits, 2 * (layer - 1) + 1, full_entropy=False)
            else:  # the code samples layer 0's activation; naslab's node 0 is a fixed tanh highway
                activation = torch.full((n,), self.node0_activation, dtype=torch.long, device=state[1].device)
            x = self.w_emb[activation]
        return decisions.result()


def build_enas_controller(
    space: Space,
    hidden: int,
    temperature: float | None,
    tanh_constant: float | None,
    op_tanh_reduce: float = 2.5,
    skip_target: float = 0.4,
) -> EnasController:
    """The ENAS controller of `space`'s family; a ValueError for a space ENAS does not search."""
    controller: EnasController
    if isinstance(space, MicroSpace):
        controller = EnasMicroController(
            space.num_nodes,
            space.ops,
            space.num_cells,
            hidden,
            temperature,
            tanh_constant,
            op_tanh_reduce,
            distinct_inputs=space.distinct_inputs,
        )
    elif isinstance(space, MacroSpace):
        controller = EnasMacroController(
            space.num_layers, len(space.ops), hidden, temperature, tanh_constant, skip_target
        )
    elif isinstance(space, RNNSpace):
        # naslab fixes node 0 to tanh (the code samples its activation): its step reads tanh's embedding, or the
        # first activation's when a space leaves tanh out
        node0 = space.activations.index("tanh") if "tanh" in space.activations else 0
        controller = EnasRNNController(
            space.num_nodes, len(space.activations), hidden, temperature, tanh_constant, node0
        )
    else:
        raise ValueError(
            f"controller=enas needs one of the ENAS spaces ({', '.join(ENAS_FAMILIES)}), got {space!r}: "
            "use strategy.controller=auto or generic"
        )
    if controller.token_choices() != list(space.token_choices()):  # the token layout is the space's
        raise ValueError(f"the ENAS {controller.family} controller's token table does not match {space!r}")
    return controller
