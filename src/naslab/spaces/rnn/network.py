"""The language model around a recurrent cell, and the cells of the rnn space (DARTS' rnn/model.py layout).

One skeleton, `RNNLanguageModel`: word embedding (embedding dropout drops whole words), locked
(variational) dropout on its output, the cell unrolled over time with one x mask and one h mask per
sequence, locked dropout on the cell outputs and a decoder tied to the embedding. The cells differ
only in how a node is realised:

- `RNNCell`: the stand-alone child, one (H, 2H) matrix per node applied to its chosen input;
- `SharedRNNCell`: ENAS' weight sharing, one matrix per (node, input) pair, `arch` = a genotype;
- `rnn.mixed.MixedRNNCell`: DARTS' mixture, `arch` = softmax weights.

Node 0 is the highway over [x_t; h_{t-1}]; node i is a highway on the node it reads
(s_j + sigmoid(c) * (f(h) - s_j), (c, h) = W s_j), as in ENAS and DARTS. Weights start uniform in
+-0.04, the embedding too (DARTS' INITRANGE for both).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from naslab.spaces.rnn.space import RNNGenotype

INIT_RANGE = 0.04
ACTIVATION_FNS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "identity": lambda x: x,
    "sigmoid": torch.sigmoid,
}


def _uniform(*shape: int) -> nn.Parameter:
    return nn.Parameter(torch.empty(*shape).uniform_(-INIT_RANGE, INIT_RANGE))


def highway(s: torch.Tensor, weight: torch.Tensor, activation: str, h_mask: torch.Tensor | None) -> torch.Tensor:
    """s + sigmoid(c) * (f(h) - s) with (c, h) = W (s * h_mask): one node reading state s."""
    masked = s * h_mask if h_mask is not None else s
    c, h = (masked @ weight).chunk(2, dim=-1)
    return s + torch.sigmoid(c) * (ACTIVATION_FNS[activation](h) - s)


class CellBase(nn.Module):
    """Node 0 and the unrolling over time; subclasses compute the chosen nodes from s0."""

    def __init__(self, emb_size: int, hidden_size: int) -> None:
        super().__init__()
        self.emb_size, self.hidden_size = emb_size, hidden_size
        self.w0 = _uniform(emb_size + hidden_size, 2 * hidden_size)

    def input_node(
        self, x: torch.Tensor, h: torch.Tensor, x_mask: torch.Tensor | None, h_mask: torch.Tensor | None
    ) -> torch.Tensor:
        xh = torch.cat([x * x_mask if x_mask is not None else x, h * h_mask if h_mask is not None else h], dim=-1)
        c0, h0 = (xh @ self.w0).chunk(2, dim=-1)
        return h + torch.sigmoid(c0) * (torch.tanh(h0) - h)

    def nodes(self, s0: torch.Tensor, h_mask: torch.Tensor | None, arch: Any) -> torch.Tensor:
        """The new hidden state from node 0's output."""
        raise NotImplementedError

    def forward(
        self,
        inputs: torch.Tensor,
        hidden: torch.Tensor,
        x_mask: torch.Tensor | None = None,
        h_mask: torch.Tensor | None = None,
        arch: Any = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """inputs (T, B, E), hidden (B, H) -> outputs (T, B, H) and the last hidden state."""
        outputs = []
        h = hidden
        for x in inputs:
            h = self.nodes(self.input_node(x, h, x_mask, h_mask), h_mask, arch)
            outputs.append(h)
        return torch.stack(outputs), h


class RNNCell(CellBase):
    """The stand-alone cell of one genotype: one (H, 2H) matrix per node."""

    def __init__(self, genotype: RNNGenotype, emb_size: int, hidden_size: int) -> None:
        super().__init__(emb_size, hidden_size)
        self.genotype = genotype
        self.weights = nn.ParameterList([_uniform(hidden_size, 2 * hidden_size) for _ in genotype.nodes])
        self.output_nodes = list(genotype.output_nodes())

    def nodes(self, s0: torch.Tensor, h_mask: torch.Tensor | None, arch: Any = None) -> torch.Tensor:
        if arch is not None and arch != self.genotype:  # e.g. child(x, h): the hidden state belongs in hidden=
            raise ValueError(f"a stand-alone cell runs only its own genotype, got arch={arch!r}")
        states = [s0]
        for node, weight in zip(self.genotype.nodes, self.weights):
            states.append(highway(states[node.input], weight, node.activation, h_mask))
        return torch.stack([states[i] for i in self.output_nodes]).mean(0)


class SharedRNNCell(CellBase):
    """ENAS' shared weights: node i reading node j uses matrix (i, j), whatever the activation."""

    def __init__(self, num_nodes: int, emb_size: int, hidden_size: int) -> None:
        super().__init__(emb_size, hidden_size)
        self.num_nodes = num_nodes
        self.weights = nn.ParameterDict(
            {f"{i}_{j}": _uniform(hidden_size, 2 * hidden_size) for i in range(1, num_nodes + 1) for j in range(i)}
        )

    def nodes(self, s0: torch.Tensor, h_mask: torch.Tensor | None, arch: Any) -> torch.Tensor:
        if not isinstance(arch, RNNGenotype) or arch.num_nodes != self.num_nodes:
            raise ValueError(f"the shared cell runs a {self.num_nodes}-node RNNGenotype, got {arch!r}")
        states = [s0]
        for i, node in enumerate(arch.nodes, start=1):
            states.append(highway(states[node.input], self.weights[f"{i}_{node.input}"], node.activation, h_mask))
        return torch.stack([states[i] for i in arch.output_nodes()]).mean(0)


@dataclass
class LMOutput:
    """Logits (T, B, V), the last hidden state, and the cell outputs before / after dropout (AR / TAR)."""

    logits: torch.Tensor
    hidden: torch.Tensor
    raw_output: torch.Tensor
    output: torch.Tensor


def embedded_dropout(embedding: nn.Embedding, tokens: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Drops whole words: rows of the embedding matrix zeroed (and the rest rescaled) for this batch."""
    weight = embedding.weight
    if training and p > 0:
        mask = weight.new_empty(weight.size(0), 1).bernoulli_(1 - p) / (1 - p)
        weight = weight * mask
    return F.embedding(tokens, weight)


def locked_mask(like: torch.Tensor, p: float, training: bool) -> torch.Tensor | None:
    """One dropout mask per sequence (batch column), shared over time; None when inactive."""
    if not training or p <= 0:
        return None
    return like.new_empty(like.shape[-2:]).bernoulli_(1 - p) / (1 - p)


class RNNLanguageModel(nn.Module):
    """Embedding -> cell over time -> decoder (tied to the embedding), with AWD-LSTM's dropouts."""

    def __init__(
        self,
        cell: CellBase,
        vocab_size: int,
        emb_size: int = 32,
        hidden_size: int | None = None,
        dropout: float = 0.0,
        dropout_h: float = 0.0,
        dropout_x: float = 0.0,
        dropout_i: float = 0.0,
        dropout_e: float = 0.0,
        tie_weights: bool = True,
    ) -> None:
        super().__init__()
        hidden_size = hidden_size or emb_size
        if tie_weights and hidden_size != emb_size:
            raise ValueError(f"tied weights need emb_size == hidden_size, got {emb_size} and {hidden_size}")
        self.vocab_size, self.emb_size, self.hidden_size = vocab_size, emb_size, hidden_size
        self.p = {"out": dropout, "h": dropout_h, "x": dropout_x, "i": dropout_i, "e": dropout_e}
        self.encoder = nn.Embedding(vocab_size, emb_size)
        nn.init.uniform_(self.encoder.weight, -INIT_RANGE, INIT_RANGE)
        self.cell = cell
        self.decoder = nn.Linear(hidden_size, vocab_size)
        nn.init.zeros_(self.decoder.bias)
        if tie_weights:
            self.decoder.weight = self.encoder.weight
        else:
            nn.init.uniform_(self.decoder.weight, -INIT_RANGE, INIT_RANGE)

    def init_hidden(self, batch_size: int) -> torch.Tensor:
        return self.encoder.weight.new_zeros(batch_size, self.hidden_size)

    def example_input(self) -> torch.Tensor:
        """One token: `summary` counts multiply-adds per token."""
        return torch.zeros(1, 1, dtype=torch.long, device=self.encoder.weight.device)

    def forward(self, tokens: torch.Tensor, arch: Any = None, hidden: torch.Tensor | None = None) -> LMOutput:
        """tokens (T, B) -> LMOutput; `arch` is the genotype (shared cell) or weights (mixed cell)."""
        if hidden is None:
            hidden = self.init_hidden(tokens.size(1))
        emb = embedded_dropout(self.encoder, tokens, self.p["e"], self.training)
        input_mask = locked_mask(emb[0], self.p["i"], self.training)
        if input_mask is not None:
            emb = emb * input_mask
        x_mask = locked_mask(emb[0], self.p["x"], self.training)
        h_mask = locked_mask(hidden, self.p["h"], self.training)
        raw_output, hidden = self.cell(emb, hidden, x_mask, h_mask, arch)
        output_mask = locked_mask(raw_output[0], self.p["out"], self.training)
        output = raw_output * output_mask if output_mask is not None else raw_output
        return LMOutput(self.decoder(output), hidden, raw_output, output)
