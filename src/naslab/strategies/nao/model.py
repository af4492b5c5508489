"""NAO's encoder, performance predictor and decoder (Luo et al., arXiv:1808.07233, Sec. 3).

- Encoder: a single-layer LSTM over the architecture's tokens; its hidden states, each normalised
  to unit length, are the embedding e_x = {h_1..h_T}.
- Predictor: the mean of the states (normalised), a feed-forward net, a sigmoid: f(e_x) in (0, 1),
  trained with squared error on min-max normalised scores.
- Decoder: a single-layer LSTM started from the mean state, with attention over the states; at
  position r it may only emit the tokens that the space allows there (the set V_r of Eqn. 1), so
  every decoded sequence is a valid genotype.
- Loss (Eqn. 1): lambda * L_pp + (1 - lambda) * L_rec; Adam. A NaN score marks an unlabelled architecture
  (`NAOStrategy`'s `unlabelled`): it enters L_rec only.
- Gradient ascent (Eqn. 2): h'_t = h_t + eta * df/dh_t, re-normalised as in the authors' code.

Token t at a position of kind k (the space's `token_kinds`) is vocabulary entry offset[k] + t, so
the same op shares one embedding wherever it appears; one extra entry is the decoder's start token.

Training (`fit`) and inference (`ascend`, `predict_tokens`, `reconstruct`) run on one torch thread
(`own_model.one_thread`): the decoded architectures and predictions are bit for bit the same whatever
the process's thread count.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from naslab.strategies.own_model import OwnModel, ShuffledPasses, one_thread, train_in_passes


class TokenVocabulary:
    """Maps (position, token) to a shared vocabulary, and gives the valid entries at each position."""

    def __init__(self, token_choices: Sequence[int], token_kinds: Sequence[str]):
        if len(token_choices) != len(token_kinds) or not token_choices:
            raise ValueError(f"token table mismatch: {len(token_choices)} choices, {len(token_kinds)} kinds")
        sizes: dict[str, int] = {}
        for n, kind in zip(token_choices, token_kinds):
            sizes[kind] = max(sizes.get(kind, 0), int(n))
        offsets, total = {}, 0
        for kind, size in sizes.items():
            offsets[kind], total = total, total + size
        self.length = len(token_choices)
        self.size = total + 1  # + the start token
        self.start = total
        self.offsets = torch.tensor([offsets[k] for k in token_kinds], dtype=torch.long)
        mask = torch.zeros(self.length, self.size, dtype=torch.bool)
        for position, (n, kind) in enumerate(zip(token_choices, token_kinds)):
            mask[position, offsets[kind] : offsets[kind] + int(n)] = True
        self.valid = mask  # (T, V): valid[r, v] says whether entry v may be emitted at position r

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Space tokens (B, T) -> vocabulary entries (B, T)."""
        return tokens + self.offsets.to(tokens.device)

    def decode(self, entries: torch.Tensor) -> torch.Tensor:
        """Vocabulary entries (B, T) -> space tokens (B, T)."""
        return entries - self.offsets.to(entries.device)


@dataclass
class Ascent:
    """Result of one gradient-ascent step from a batch of architectures."""

    tokens: torch.Tensor  # (B, T) decoded space tokens
    predicted_before: torch.Tensor  # (B,) f(e_x)
    predicted_after: torch.Tensor  # (B,) f(e_x') of the moved embedding


class NAOModel(OwnModel):
    """Encoder-predictor-decoder; batches are (space tokens (B, T), normalised scores (B,))."""

    def __init__(
        self,
        token_choices: Sequence[int],
        token_kinds: Sequence[str],
        embedding: int = 32,
        hidden: int = 96,
        predictor_layers: int = 1,
        predictor_hidden: int = 200,
        dropout: float = 0.1,
        trade_off: float = 0.9,
        lr: float = 0.001,
        weight_decay: float = 0.0,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.vocab = TokenVocabulary(token_choices, token_kinds)
        self.trade_off, self.lr, self.weight_decay = trade_off, lr, weight_decay
        self.encoder_embedding = nn.Embedding(self.vocab.size, embedding)
        # Learned position embeddings (not in the paper): they tell the decoder which encoder state
        # holds the token it is emitting, so reconstruction generalises from a few hundred examples.
        self.encoder_positions = nn.Embedding(self.vocab.length, embedding)
        self.decoder_positions = nn.Embedding(self.vocab.length, hidden)
        self.encoder = nn.LSTM(embedding, hidden, batch_first=True)
        layers: list[nn.Module] = []
        width = hidden
        for _ in range(predictor_layers - 1):  # predictor_layers counts linear layers, the output one included
            layers += [nn.Linear(width, predictor_hidden), nn.ReLU(), nn.Dropout(dropout)]
            width = predictor_hidden
        layers.append(nn.Linear(width, 1))
        self.predictor = nn.Sequential(*layers)
        self.decoder_embedding = nn.Embedding(self.vocab.size, hidden)
        self.decoder = nn.LSTM(hidden, hidden, batch_first=True)
        self.attention_out = nn.Linear(2 * hidden, hidden)
        self.output = nn.Linear(hidden, self.vocab.size)

    # --- the three parts ---------------------------------------------------------------------
    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Space tokens (B, T) -> embedding: unit-length LSTM states (B, T, H)."""
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        inputs = self.encoder_embedding(self.vocab.encode(tokens)) + self.encoder_positions(positions)
        states, _ = self.encoder(inputs)
        return F.normalize(states, dim=-1)

    @staticmethod
    def pooled(states: torch.Tensor) -> torch.Tensor:
        return F.normalize(states.mean(dim=1), dim=-1)

    def predict(self, states: torch.Tensor) -> torch.Tensor:
        """f(e_x) in (0, 1), shape (B,)."""
        return torch.sigmoid(self.predictor(self.pooled(states))).squeeze(-1)

    def _decoder_logits(self, outputs: torch.Tensor, states: torch.Tensor, positions: slice) -> torch.Tensor:
        """Attention over the encoder states, then logits restricted to each position's valid tokens."""
        weights = torch.softmax(outputs @ states.transpose(1, 2), dim=-1)  # (B, R, T)
        context = weights @ states
        mixed = torch.tanh(self.attention_out(torch.cat([outputs, context], dim=-1)))
        logits = self.output(mixed)
        valid = self.vocab.valid[positions].to(logits.device)
        return logits.masked_fill(~valid, float("-inf"))

    def _initial_state(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h0 = self.pooled(states).unsqueeze(0)
        return h0, h0.clone()

    def reconstruction_log_probs(self, states: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher-forced log P_D(x_r | e_x, x_<r) over the vocabulary, (B, T, V)."""
        entries = self.vocab.encode(tokens)
        start = torch.full_like(entries[:, :1], self.vocab.start)
        inputs = torch.cat([start, entries[:, :-1]], dim=1)
        positions = self.decoder_positions(torch.arange(inputs.shape[1], device=inputs.device))
        outputs, _ = self.decoder(self.decoder_embedding(inputs) + positions, self._initial_state(states))
        return torch.log_softmax(self._decoder_logits(outputs, states, slice(None)), dim=-1)

    @torch.no_grad()
    def decode(self, states: torch.Tensor) -> torch.Tensor:
        """Greedy decoding of embeddings (B, T, H) -> space tokens (B, T), valid at every position."""
        batch = states.shape[0]
        token = torch.full((batch, 1), self.vocab.start, dtype=torch.long, device=states.device)
        hidden = self._initial_state(states)
        chosen = []
        for position in range(self.vocab.length):
            step = self.decoder_embedding(token) + self.decoder_positions.weight[position]
            output, hidden = self.decoder(step, hidden)
            logits = self._decoder_logits(output, states, slice(position, position + 1))
            token = logits.argmax(dim=-1)
            chosen.append(token)
        return self.vocab.decode(torch.cat(chosen, dim=1))

    @contextmanager
    def evaluating(self) -> Iterator[None]:
        """Eval mode (no predictor dropout) for inference during a search, restored afterwards."""
        was_training = self.training
        self.eval()
        try:
            yield
        finally:
            self.train(was_training)

    @one_thread()
    def ascend(self, tokens: torch.Tensor, eta: float) -> Ascent:
        """Eqn. 2: move each state along df/dh by eta, re-normalise, decode."""
        with self.evaluating(), torch.enable_grad():
            states = self.encode(tokens).detach().requires_grad_(True)
            before = self.predict(states)
            (gradient,) = torch.autograd.grad(before.sum(), states)
        moved = F.normalize(states.detach() + eta * gradient, dim=-1)
        with self.evaluating(), torch.no_grad():
            return Ascent(self.decode(moved), before.detach(), self.predict(moved))

    @one_thread()
    @torch.no_grad()
    def predict_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        with self.evaluating():
            return self.predict(self.encode(tokens))

    @one_thread()
    @torch.no_grad()
    def reconstruct(self, tokens: torch.Tensor) -> torch.Tensor:
        with self.evaluating():
            return self.decode(self.encode(tokens))

    # --- training ------------------------------------------------------------------------------
    def losses(self, tokens: torch.Tensor, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(L_pp over the rows with a score, L_rec over all rows); a NaN score is an unlabelled row."""
        states = self.encode(tokens)
        scored = ~torch.isnan(scores)
        if bool(scored.all()):
            prediction_loss = F.mse_loss(self.predict(states), scores)
        elif bool(scored.any()):
            prediction_loss = F.mse_loss(self.predict(states[scored]), scores[scored])
        else:  # a batch of unlabelled architectures only
            prediction_loss = states.new_zeros(())
        log_probs = self.reconstruction_log_probs(states, tokens)
        targets = self.vocab.encode(tokens)
        reconstruction_loss = F.nll_loss(log_probs.flatten(0, 1), targets.flatten())
        return prediction_loss, reconstruction_loss

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        tokens, scores = batch
        prediction_loss, reconstruction_loss = self.losses(tokens, scores)
        loss = self.trade_off * prediction_loss + (1 - self.trade_off) * reconstruction_loss
        if not self.logs(batch_idx):  # `fit` runs all epochs as one: metrics of the last pass only
            return loss
        self.log_dict(
            {"nao/loss": loss, "nao/mse": prediction_loss, "nao/nll": reconstruction_loss},
            on_step=False,
            on_epoch=True,
            batch_size=len(tokens),
        )
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)


def fit(
    model: NAOModel,
    tokens: torch.Tensor,
    scores: torch.Tensor,
    epochs: int,
    batch_size: int = 100,
    seed: int = 0,
    grad_clip: float = 5.0,
    accelerator: str = "cpu",
) -> dict[str, float]:
    """Trains `model` on (tokens, normalised scores) with a Lightning Trainer; returns last-epoch losses.

    A NaN score marks an unlabelled architecture (reconstruction loss only). The data loader's shuffling
    is seeded, so a resumed search retrains identically; one torch thread, so does any thread count.
    """
    generator = torch.Generator().manual_seed(seed)
    loader = ShuffledPasses(TensorDataset(tokens, scores.float()), batch_size, epochs, generator)
    # Own RNG stream (dropout, shuffling): identical training whatever ran before, e.g. after a resume.
    metrics = train_in_passes(model, loader, seed, accelerator, gradient_clip_val=grad_clip)
    return {k: v for k, v in metrics.items() if k.startswith("nao/")}
