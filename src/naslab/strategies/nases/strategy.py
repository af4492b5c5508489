"""NASES: reinforcement learning in an autoencoder's architecture-embedding space (Liu's NASES paper, Sec. 3.2, Alg. 1).

Liu, "Neural Architecture Search in Embedding Space". The controller does not emit a
string of discrete decisions: it is a copy of the pretrained *architecture simulator* (the encoder of
`nases.autoencoder.ArchitectureAutoencoder`, 60 -> 1000 -> 500 -> 100 -> embedding, sigmoid), and
its sigmoid outputs are the parameters of a Bernoulli policy over the embedding ("the activation
function of the middle layer used was sigmoid; which leads the output with Bernoulli distribution",
Sec. 3.2.1). The frozen pretrained *decoder* maps the sampled embedding back to the 60 numbers of
`space=nases`, which decode to the child network.

One proposal, as built here:

1. state s: the controller's input. The paper: "The input is the child state of network", and Alg. 1
   (lines 9-10) projects the current child's architecture a through the controller and decodes the
   result into the next a: a chain. `state="previous"` (default) feeds the 60 numbers of the previous
   proposal (a uniform draw from the box for the first); `state="uniform"` draws s uniformly from
   [low, high]^60 for every proposal (the simulator "can project uniform distribution into
   architecture-embedding"); `state="best"` feeds the best architecture found so far (the highest raw
   reward in the pool; uniform until the first reward).
2. p = controller(s) in (0, 1)^n; the action b ~ Bernoulli(p) in {0, 1}^n (n = embedding size, 20).
3. the child's 60 numbers = decoder(b), always inside the box (`ArchitectureAutoencoder.decode`).

Random architectures (the 10 warm-up ones, "we ran random architectures ten times to collect rewards
without updating parameters of the controller network in the beginning", and the epsilon-greedy 10 %,
Sec. 4.2.2) are drawn in the same action space, b ~ Bernoulli(1/2)^n, so that their pool entries are
actions whose log-probability the policy gradient can raise or lower like any other (a uniform draw
of the 60 numbers would be an architecture with no action behind it). Decoded corners of the
embedding cube are as varied as uniform architectures (measured: 1000 of 1000 distinct, value
standard deviation 9.6 against 8.7 for uniform on [0, 30]).

Learning (Sec. 4.2.2): each child's reward (2 acc_val - acc_train)^3 (`nases_reward`, Eq. 1) goes
into the `RewardPool` with its (state, action) (a child that failed to train, e.g. a NaN loss, gets
(0 - 1)^3 = -1, below every trained child); after each told child the pool is re-normalised over
all stored rewards and, once the warm-up is over, the controller takes one Adam step on 3 entries
sampled from the pool: loss = -mean(z_i * log pi(b_i | s_i)), z the normalised reward. The
controller's optimiser follows "the first stage of the experiment" (Adam, lr 1e-5, the autoencoder's);
at that rate ~90 updates move the policy little, so `lr` is exposed (tests use 1e-3).

acc_train comes from the evaluator's record (`Result.extra["train_accuracy"]`, the last epoch's running
training accuracy, as Keras reports it); a result without one takes acc_train = acc_val, i.e. reward
acc_val^3, and the strategy says so once in the log.

Token spaces. NASES needs only that an architecture is a fixed-length vector in a box, so any space
whose architectures are fixed-length token vectors (`Space.token_choices()`: micro, macro, rnn, mlp, ...)
is searched through an adapter (`nases.vectors.architecture_vectors`): `encoding="onehot"` (default)
writes position i's token as a one-hot group of n_i values in [0, 1] and reads a group back by its
argmax; `encoding="scaled"` writes one value (t + 0.5) / n_i in [0, 1] per position and reads
min(floor(v n_i), n_i - 1). Every vector of the box decodes to a valid architecture, so everything
above holds with "the 60 numbers" read as the adapter's vector (the controller's state is the encoded
previous or best architecture), and the autoencoder is pretrained on uniform draws from [0, 1]^n.
space=nases keeps its own 60 numbers in [0, 30] (`encoding` is unused there). Children are always
trained stand-alone (evaluator=standalone, or evaluator=table for a measured space): no weight sharing
(`check_search` refuses evaluator=shared).
The decoded corners of the embedding cover a token space only if the autoencoder is trained well
enough: on space=micro_tiny (243 architectures), 1000 random embeddings decode to 236 (onehot) and 201
(scaled) distinct architectures with the default `pretrain` options (about 30 s), but to 93 and 2 with
debug=fast's seconds-long stage, where most decoded values sit near the box's middle (measured).

The autoencoder: `pretrained` names a `save_pretrained` file (e.g. from
`benchmarks/nases_compression.py --save`); without one it is pretrained on the fly with `pretrain`'s
options and cached at `cache` (a resumed search reloads it instead of training it again).
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.distributions import Bernoulli

from naslab.errors import MissingFileError
from naslab.spaces.base import Space
from naslab.spaces.nases.space import NASESSpace
from naslab.strategies.base import Proposal, Result, Strategy
from naslab.strategies.nases.autoencoder import (
    ArchitectureAutoencoder,
    BatchSchedule,
    load_pretrained,
    midpoint_loss,
    pretrain,
    save_pretrained,
)
from naslab.strategies.nases.reward import (
    EPSILON,
    FAILED_REWARD,
    SAMPLES_PER_UPDATE,
    WARMUP_ARCHITECTURES,
    RewardPool,
    explore,
    nases_reward,
)
from naslab.strategies.nases.vectors import ArchitectureVectors, architecture_vectors

log = logging.getLogger(__name__)

STATES = ("previous", "uniform", "best")
_CLAMP = 1e-6  # keeps log p and log(1 - p) finite where the sigmoid saturates


def _policy(probabilities: torch.Tensor) -> Bernoulli:
    return Bernoulli(probs=probabilities.clamp(_CLAMP, 1 - _CLAMP))


def bernoulli_log_prob(probabilities: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Sum over the embedding of log Bernoulli(b; p): (batch, n) -> (batch,)."""
    return _policy(probabilities).log_prob(actions).sum(dim=1)


def bernoulli_entropy(probabilities: torch.Tensor) -> torch.Tensor:
    """Sum over the embedding of the Bernoulli entropies (nats): (batch, n) -> (batch,)."""
    return _policy(probabilities).entropy().sum(dim=1)


def obtain_autoencoder(
    space: Space[Any],
    pretrained: str | Path | None,
    cache: str | Path | None,
    options: Mapping[str, Any],
    seed: int,
    encoding: str = "onehot",
) -> ArchitectureAutoencoder:
    """The pretrained autoencoder: from `pretrained`, else from `cache`, else trained now (and cached).

    It must fit the space's vectors (`architecture_vectors(space, encoding)`): as many values (4 per
    layer for space=nases) and the same box.
    """
    vectors = architecture_vectors(space, encoding)
    if pretrained is not None:
        path = Path(pretrained)
        if not path.is_file():
            raise MissingFileError(
                f"strategy.pretrained={path} does not exist; write one with "
                "`python benchmarks/nases_compression.py --sizes 20 --save` or set strategy.pretrained=null"
            )
        model, _ = load_pretrained(path)
        source = str(path)
    elif cache is not None and Path(cache).is_file():
        model, _ = load_pretrained(cache)
        source = f"{cache} (cached)"
        asked = {"embedding": options.get("embedding_size"), "hidden": options.get("hidden")}
        wanted = {k: list(v) if k == "hidden" else int(v) for k, v in asked.items() if v is not None}
        found = {"embedding": model.hparams.embedding, "hidden": list(model.hparams.hidden)}
        if any(found[k] != v for k, v in wanted.items()):
            raise ValueError(
                f"{cache} holds an autoencoder with {found}, not strategy.pretrain's {wanted}; "
                "delete it or set strategy.cache elsewhere"
            )
    else:
        options = dict(options)
        batch = options.pop("batch", None)
        schedule = BatchSchedule(**batch) if batch else None
        model, metrics = pretrain(
            origin=vectors.num_values,
            low=vectors.low,
            high=vectors.high,
            batch_schedule=schedule,
            seed=seed,
            **options,
        )
        log.info(
            "NASES autoencoder pretrained: embedding %d, test loss %.2f (predicting the midpoint: %.2f)",
            model.hparams.embedding,
            metrics["test_loss"],
            midpoint_loss(vectors.low, vectors.high),
        )
        if cache is not None:
            save_pretrained(model, cache, metrics)
        source = "pretrained now"
    hp = model.hparams
    if hp.origin != vectors.num_values or (hp.low, hp.high) != (float(vectors.low), float(vectors.high)):
        if pretrained is None:
            hint = "; delete it or set strategy.cache elsewhere"
        elif not isinstance(space, NASESSpace):
            hint = (
                "; with a benchmarks/nases_compression.py file strategy=nases searches space=nases only: "
                "set strategy.pretrained=null to pretrain one for this space"
            )
        else:
            hint = ""
        raise ValueError(
            f"the NASES autoencoder ({source}) maps {hp.origin} values in [{hp.low}, {hp.high}], but "
            f"{vectors.describe()} has {vectors.num_values} values in [{vectors.low}, {vectors.high}]{hint}"
        )
    return model


class NASESStrategy(Strategy[Any]):
    """A Bernoulli policy over the autoencoder's embedding, initialised from its simulator (module docstring)."""

    name = "nases"
    search_kinds = ("ask_tell",)

    @classmethod
    def check_search(cls, kind: str, settings: Mapping[str, Any]) -> str | None:
        if kind == "shared":
            return (
                "strategy=nases trains every child stand-alone (no weight sharing): "
                "use evaluator=standalone, or evaluator=table for a measured space"
            )
        return super().check_search(kind, settings)

    def __init__(
        self,
        space: Space[Any],
        seed: int = 0,
        pretrained: str | None = None,
        cache: str | None = None,
        pretrain: Mapping[str, Any] | None = None,
        state: str = "previous",
        lr: float = 1e-5,
        warmup: int = WARMUP_ARCHITECTURES,
        samples_per_update: int = SAMPLES_PER_UPDATE,
        epsilon: float = EPSILON,
        encoding: str = "onehot",
    ):
        super().__init__(space)
        # space <-> the autoencoder's box: space=nases' own numbers, or a token space's encoded tokens
        self.vectors: ArchitectureVectors = architecture_vectors(space, encoding)
        if state not in STATES:
            raise ValueError(f"strategy.state must be one of {STATES}, got {state!r}")
        if warmup < 0 or samples_per_update < 1 or not 0.0 <= epsilon <= 1.0:
            raise ValueError(
                f"need warmup >= 0, samples_per_update >= 1, 0 <= epsilon <= 1; "
                f"got {warmup}, {samples_per_update}, {epsilon}"
            )
        self.state_kind, self.warmup = state, int(warmup)
        self.samples_per_update, self.epsilon = int(samples_per_update), float(epsilon)
        autoencoder = obtain_autoencoder(space, pretrained, cache, pretrain or {}, seed, encoding)
        self.embedding = int(autoencoder.hparams.embedding)
        # The controller is the simulator's architecture *and* weights; the decoder stays as pretrained.
        self.controller: nn.Module = copy.deepcopy(autoencoder.simulator).train()
        self.decoder: nn.Module = copy.deepcopy(autoencoder.decoder).eval().requires_grad_(False)
        self.optimizer = torch.optim.Adam(self.controller.parameters(), lr=lr)
        self.rng = np.random.default_rng(seed)
        self.generator = torch.Generator().manual_seed(seed)
        self.pool = RewardPool()
        self.proposed = 0  # proposals made so far (the first `warmup` are random)
        self.previous: list[float] | None = None  # the last proposal's vector: the next state under state="previous"
        self.updates = 0
        # key -> [{state, action, random}, ...] of proposals not yet told, oldest first: two embeddings of one
        # batch may decode to the same architecture, and each is pooled with its own action when told.
        self.pending: dict[str, list[dict[str, Any]]] = {}
        self._warned_no_train_accuracy = False
        self._metrics: dict[str, list[float]] = {}

    # --- proposing --------------------------------------------------------------------------
    def _uniform_state(self) -> np.ndarray:
        return self.rng.uniform(self.vectors.low, self.vectors.high, size=self.vectors.num_values)

    def _state(self) -> np.ndarray:
        if self.state_kind == "previous" and self.previous is not None:
            return np.asarray(self.previous, dtype=np.float64)
        if self.state_kind == "best" and len(self.pool):
            best = max(self.pool.entries, key=lambda e: e.reward)
            best_genotype = self.vectors.decode(self._decode_action(best.action))
            return np.asarray(self.vectors.encode(best_genotype), dtype=np.float64)
        return self._uniform_state()

    def _decode_action(self, action: Sequence[float]) -> list[float]:
        with torch.no_grad():
            values = self.decoder(torch.tensor([list(action)], dtype=torch.float32))[0]
        return values.clamp(self.vectors.low, self.vectors.high).tolist()

    def probabilities(self, states: torch.Tensor) -> torch.Tensor:
        """The policy's Bernoulli parameters for (batch, values) states: (batch, embedding) in (0, 1)."""
        return self.controller(states)

    def ask(self, n: int) -> list[Proposal[Any]]:
        """`n` decoded embeddings; each proposal's info is the embedding (action) and whether it was random.

        Two proposals of one architecture (`space.key`) in a batch both carry the oldest pending action of that
        architecture (the first one's): the one its next `tell` pools.
        """
        genotypes = []
        for _ in range(n):
            state = self._state()
            is_random = self.proposed < self.warmup or explore(self.rng, self.epsilon)
            with torch.no_grad():
                if is_random:
                    p = torch.full((1, self.embedding), 0.5)
                else:
                    p = self.probabilities(torch.tensor(state[None], dtype=torch.float32))
                action = torch.bernoulli(p, generator=self.generator)[0]
            genotype = self.vectors.decode(self._decode_action(action.tolist()))
            self.pending.setdefault(self.space.key(genotype), []).append(
                {"state": state.tolist(), "action": action.tolist(), "random": is_random}
            )
            self.proposed += 1
            self.previous = self.vectors.encode(genotype)
            genotypes.append(genotype)
        return [Proposal(g, self._info(g)) for g in genotypes]

    def _info(self, genotype: Any) -> dict[str, Any]:
        """The embedding and randomness of the oldest pending proposal of `genotype`'s architecture."""
        waiting = self.pending.get(self.space.key(genotype))
        if not waiting:
            return {}
        pending = waiting[0]
        return {"nases": {"embedding": [int(b) for b in pending["action"]], "random": pending["random"]}}

    # --- learning ---------------------------------------------------------------------------
    def tell(self, results: Sequence[Result[Any]]) -> None:
        """Pools each child's reward with its (state, action), then one controller update per child.

        The reward needs the child's training accuracy (`extra["train_accuracy"]`); without it acc_train is
        taken equal to acc_val (reward acc_val^3). A failed child (`error`) gets the worst reward.
        """
        for result in results:
            genotype, score = result.genotype, result.score
            key = self.space.key(genotype)
            waiting = self.pending.get(key)
            pending = waiting.pop(0) if waiting else None
            if waiting is not None and not waiting:
                del self.pending[key]
            if pending is None:
                log.debug("nases: told an architecture it did not propose; not pooled: %s", genotype)
                continue
            if result.error:  # a failed child (NaN loss): the worst reward there is
                reward = FAILED_REWARD
            else:
                acc_train = result.extra.get("train_accuracy")
                if acc_train is None:
                    if not self._warned_no_train_accuracy:
                        log.warning("nases: the evaluator reports no training accuracy; reward = acc_val ** 3")
                        self._warned_no_train_accuracy = True
                    acc_train = score
                reward = nases_reward(float(score), float(acc_train))  # raises on a score outside [0, 1]
                self._metric("acc_train", float(acc_train))
            self.pool.add(pending["action"], reward, state=pending["state"])
            self.pool.normalise()  # "at the end of each iteration"
            self._metric("reward", reward)
            if len(self.pool) >= max(self.warmup, 1):
                self._update()

    def _update(self) -> None:
        entries = self.pool.sample(self.rng, self.samples_per_update)
        states = torch.tensor([e.state for e in entries], dtype=torch.float32)
        actions = torch.tensor([e.action for e in entries], dtype=torch.float32)
        advantages = torch.tensor([e.normalised for e in entries], dtype=torch.float32)
        probabilities = self.probabilities(states)
        loss = -(advantages * bernoulli_log_prob(probabilities, actions)).mean()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.updates += 1
        self._metric("policy_loss", loss.item())
        self._metric("entropy", float(bernoulli_entropy(probabilities.detach()).mean()))

    def _metric(self, name: str, value: float) -> None:
        self._metrics.setdefault(name, []).append(value)

    def pop_metrics(self) -> dict[str, float]:
        metrics = {k: float(np.mean(v)) for k, v in self._metrics.items() if v}
        self._metrics = {}
        if metrics:
            metrics.update({"pool_size": float(len(self.pool)), "updates": float(self.updates)})
        return metrics

    # --- resuming ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return copy.deepcopy(
            {
                "controller": self.controller.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "rng": self.rng.bit_generator.state,
                "generator": self.generator.get_state(),
                "pool": self.pool.state_dict(),
                "proposed": self.proposed,
                "updates": self.updates,
                "pending": self.pending,
                "previous": self.previous,
            }
        )

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.controller.load_state_dict(state["controller"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.rng.bit_generator.state = state["rng"]
        self.generator.set_state(state["generator"])
        self.pool.load_state_dict(state["pool"])
        self.proposed, self.updates = int(state["proposed"]), int(state["updates"])
        self.pending = {
            key: [entries] if isinstance(entries, dict) else list(entries) for key, entries in state["pending"].items()
        }
        self.previous = state.get("previous")
