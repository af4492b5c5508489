"""EPNAS's surrogate function (arXiv:1808.00391, "Surrogate function" and "Implementation details").

EPNAS grows architectures progressively and must score PARTIAL ones, so the surrogate is a recurrent
net over a variable-length token prefix:

- a small linear layer decodes the symbol array into the LSTM's input features (size 100): here an
  nn.Embedding with one row per (token kind, value) pair, which is the same map as a linear layer on
  one-hot input but without building the one-hot tensor;
- an LSTM (100 hidden units) reads the prefix; its last real hidden state goes through a linear
  layer and a sigmoid, a predicted accuracy in [0, 1];
- the linear layers start uniform in [-1, 1], as the paper says (the LSTM keeps torch's own init);
- it is trained with Adam on an L1 loss, from a hash table of (architecture -> score), so a
  configuration that is evaluated again replaces its earlier score instead of counting twice.

Why rows are shared by kind (`embedding="kind"`, the default, as PNAS's surrogate shares one
embedding for inputs and one for ops): a progressive search asks the surrogate about level l + 1
after training it on levels 1..l only. With a row per (position, value) (`embedding="position"`) the
new level's tokens hit rows that no gradient ever reached, still at their random initial values, so
its predictions among one parent's children are a fixed random bias, not a judgement: greedy PNAS
then picks architectures no better than random ones (measured: `benchmarks/progressive_vs_random.py`,
README). Shared rows carry what was learnt about an op at one layer to the next; the LSTM, reading
the sequence in order, still knows where a token stands.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence
from torch.utils.data import Dataset

from naslab.strategies.own_model import OwnModel, ShuffledPasses, one_thread, own_torch_rng, train_in_passes

__all__ = ["Surrogate", "SurrogateNet"]

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # ids (B, T) padded, lengths (B,), targets (B,)

_PREDICT_BATCH = 1024  # inference only: large batches are cheap and padding does not change results


EMBEDDINGS = ("kind", "position")


def _offsets(token_choices: Sequence[int], token_kinds: Sequence[str] | None = None) -> tuple[list[int], int]:
    """(start of each position's block of input rows, number of rows).

    Without kinds every position has its own block (the cumulative sum of the choices before it);
    with kinds, positions of one kind share one block as wide as that kind's widest position.
    """
    if token_kinds is None:
        offsets, total = [], 0
        for n in token_choices:
            offsets.append(total)
            total += int(n)
        return offsets, total
    width: dict[str, int] = {}
    for kind, n in zip(token_kinds, token_choices):
        width[kind] = max(width.get(kind, 0), int(n))
    start, total = {}, 0
    for kind, n in width.items():
        start[kind], total = total, total + n
    return [start[kind] for kind in token_kinds], total


class SurrogateNet(OwnModel):
    """Embedding over input-row ids -> LSTM over the prefix -> linear -> sigmoid.

    Batches are (ids (B, T) right-padded, lengths (B,), targets (B,)); ids already carry the
    kind or position offsets (see `Surrogate.encode`).
    """

    def __init__(self, num_rows: int, input_size: int = 100, hidden: int = 100, lr: float = 1e-3):
        super().__init__()
        if num_rows < 1:
            raise ValueError(f"the surrogate needs at least one input row, got {num_rows}")
        self.save_hyperparameters()
        self.lr = lr
        self.embedding = nn.Embedding(num_rows, input_size)
        self.lstm = nn.LSTM(input_size, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)
        # The paper: "weights of the linear layers are initialized randomly with a uniform
        # distribution between [-1,1]" -- the input decoder (the embedding) and the output layer.
        nn.init.uniform_(self.embedding.weight, -1.0, 1.0)
        nn.init.uniform_(self.head.weight, -1.0, 1.0)
        nn.init.uniform_(self.head.bias, -1.0, 1.0)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Predicted score in [0, 1] for each prefix, (B,).

        The padded tail is packed away, so neither the pad value nor the batch's longest sequence
        changes a prediction: h_n is the state after each sequence's own last token.
        """
        packed = pack_padded_sequence(self.embedding(ids), lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, (h_n, _) = self.lstm(packed)
        return torch.sigmoid(self.head(h_n[-1])).squeeze(-1)

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        ids, lengths, targets = batch
        loss = F.l1_loss(self(ids, lengths), targets)
        if not self.logs(batch_idx):  # `fit` runs all epochs as one: metrics of the last pass only
            return loss
        self.log("surrogate/l1", loss, on_step=False, on_epoch=True, batch_size=len(targets))
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.lr)


class _PrefixDataset(Dataset):
    """(ids, length, target) items; ids are 1-D and of varying length until `_collate` pads them."""

    def __init__(self, ids: list[torch.Tensor], targets: list[float]):
        self.ids = ids
        self.targets = targets

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, float]:
        return self.ids[index], len(self.ids[index]), self.targets[index]


def _collate(items: Sequence[tuple[torch.Tensor, int, float]]) -> Batch:
    """Right-pads the ids with 0 (any valid row: packing hides it) and stacks lengths and targets."""
    ids = nn.utils.rnn.pad_sequence([item[0] for item in items], batch_first=True, padding_value=0)
    lengths = torch.tensor([item[1] for item in items], dtype=torch.long)
    targets = torch.tensor([item[2] for item in items], dtype=torch.float32)
    return ids, lengths, targets


class Surrogate:
    """What a strategy uses: a hash table of (tokens -> score), `fit` on it, `predict` prefixes.

    `fit` keeps training the current net (warm start), as a progressive search refits the same
    surrogate after every round of evaluations; `state_dict` holds the net and the table, so a killed
    search resumes with the same predictions.
    """

    def __init__(
        self,
        token_choices: Sequence[int],
        token_kinds: Sequence[str] | None = None,
        embedding: str = "kind",
        input_size: int = 100,
        hidden: int = 100,
        lr: float = 1e-3,
        epochs: int = 100,
        batch_size: int = 64,
        seed: int = 0,
    ):
        if epochs < 1 or batch_size < 1:
            raise ValueError(f"surrogate needs epochs >= 1 and batch_size >= 1, got {epochs} and {batch_size}")
        if embedding not in EMBEDDINGS:
            raise ValueError(f"surrogate embedding must be one of {', '.join(EMBEDDINGS)}, got {embedding!r}")
        if not token_choices or any(int(n) < 1 for n in token_choices):
            raise ValueError(f"token_choices must be a non-empty list of positive counts, got {list(token_choices)}")
        self.token_choices = [int(n) for n in token_choices]
        if token_kinds is not None and len(token_kinds) != len(self.token_choices):
            raise ValueError(f"{len(token_kinds)} token kinds for {len(self.token_choices)} positions")
        if embedding == "kind":  # a space without kinds: one kind for every position (Space.token_kinds)
            kinds = list(token_kinds) if token_kinds is not None else ["token"] * len(self.token_choices)
            self._offsets, rows = _offsets(self.token_choices, kinds)
        else:
            self._offsets, rows = _offsets(self.token_choices)
        self.embedding = embedding
        self.epochs = epochs
        self.batch_size = batch_size
        self.seed = seed
        with own_torch_rng(seed):  # the initial weights depend on the seed only
            self.net = SurrogateNet(rows, input_size=input_size, hidden=hidden, lr=lr)
        self.data: dict[tuple[int, ...], float] = {}

    # --- the hash table ----------------------------------------------------------------------------
    def check(self, tokens: Sequence[int]) -> tuple[int, ...]:
        """`tokens` as a tuple of ints; a one-line ValueError naming the position if it is not a valid prefix."""
        tokens = tuple(tokens)
        if not tokens:
            raise ValueError("an architecture prefix needs at least one token, got an empty sequence")
        if len(tokens) > len(self.token_choices):
            raise ValueError(
                f"sequence has {len(tokens)} tokens but the space has {len(self.token_choices)} positions "
                f"(position {len(self.token_choices)} does not exist)"
            )
        out = []
        for position, (t, n) in enumerate(zip(tokens, self.token_choices)):
            if isinstance(t, bool) or not isinstance(t, (int, np.integer)):
                raise ValueError(f"token at position {position} must be an int, got {t!r}")
            if not 0 <= int(t) < n:
                raise ValueError(f"token at position {position} is {int(t)}; valid tokens there are 0..{n - 1}")
            out.append(int(t))
        return tuple(out)

    def add(self, tokens: Sequence[int], score: float) -> None:
        """Stores `score` for the prefix `tokens`; a repeated prefix replaces its earlier score."""
        key = self.check(tokens)
        score = float(score)
        if not (math.isfinite(score) and 0.0 <= score <= 1.0):
            raise ValueError(f"score must be in [0, 1] (the surrogate ends in a sigmoid), got {score}")
        self.data[key] = score

    def __len__(self) -> int:
        return len(self.data)

    def encode(self, tokens: Sequence[int]) -> torch.Tensor:
        """Input-row ids of a validated prefix: the position's (or its kind's) first row + value."""
        key = self.check(tokens)
        return torch.tensor([self._offsets[p] + t for p, t in enumerate(key)], dtype=torch.long)

    # --- training and prediction -------------------------------------------------------------------
    def fit(self) -> float:
        """Trains the net on everything stored for `epochs` epochs; returns the last epoch's mean L1 loss."""
        if not self.data:
            raise ValueError("surrogate has no data: add(tokens, score) at least one architecture before fit()")
        dataset = _PrefixDataset([self.encode(k) for k in self.data], list(self.data.values()))
        generator = torch.Generator().manual_seed(self.seed)
        loader = ShuffledPasses(dataset, self.batch_size, self.epochs, generator, collate=_collate)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            # few batches per epoch: log every step, without the "smaller than the logging interval" warning
            metrics = train_in_passes(self.net, loader, self.seed, log_every_n_steps=1)
        return metrics["surrogate/l1"]

    @torch.no_grad()
    @one_thread()  # its decisions must not depend on the run's `threads` (own_model.one_thread)
    def predict(self, sequences: Sequence[Sequence[int]]) -> np.ndarray:
        """Predicted scores in [0, 1] (float64, one per sequence); also works before `fit` (untrained net)."""
        ids = [self.encode(s) for s in sequences]  # validate everything before any work
        out = np.empty(len(ids), dtype=np.float64)
        was_training = self.net.training
        self.net.eval()
        try:
            for start in range(0, len(ids), _PREDICT_BATCH):
                chunk = ids[start : start + _PREDICT_BATCH]
                padded = nn.utils.rnn.pad_sequence(chunk, batch_first=True, padding_value=0)
                lengths = torch.tensor([len(c) for c in chunk], dtype=torch.long)
                out[start : start + len(chunk)] = self.net(padded, lengths).double().numpy()
        finally:
            self.net.train(was_training)
        return out

    # --- persistence -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """{"net": weights (copies), "data": [[tokens, score], ...] in insertion order} for a resume."""
        return {
            "net": {k: v.detach().clone() for k, v in self.net.state_dict().items()},
            "data": [[list(k), v] for k, v in self.data.items()],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores weights and table from `state_dict()`; the table replaces the current one."""
        data: dict[tuple[int, ...], float] = {}
        for tokens, score in state["data"]:
            data[self.check(tokens)] = float(score)
        self.net.load_state_dict(state["net"])
        self.data = data
