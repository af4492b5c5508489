"""REINFORCE over a space's decision sequence: the ENAS controllers, Zoph & Le and MLPNAS.

Two controllers emit the space's tokens, chosen by `controller`:
- on the three ENAS spaces (micro cell, macro chain, recurrent cell) the ENAS controller of
  `naslab.strategies.reinforce.controller`, which follows the authors' released code (melodyguan/enas;
  "Efficient Neural Architecture Search via Parameter Sharing", Pham et al., arXiv:1802.03268):
  attention over earlier nodes for input choices, per-family logit shaping, docs/methods/enas.md;
- elsewhere (or with `controller="generic"`) `Controller` below: an LSTM cell with one softmax head
  per position of `space.token_choices()`, the token just emitted embedded and fed back, logits
  divided by a temperature then squashed by `tanh_constant * tanh(.)`.

Training is REINFORCE on the evaluator's score with an entropy bonus in the reward and an exponential
moving-average baseline. As the authors' code (`build_trainer`, utils.py `get_train_ops`): the baseline
starts at 0 (`baseline_init`; None starts it at the first reward, naslab's former behaviour) and moves
per sample, `baseline <- baseline - (1 - decay) * (baseline - reward)`, before the sample's advantage is
taken; Adam has beta1 = 0 and epsilon 1e-3, with TensorFlow's "epsilon hat" placement (`adam_epsilon_hat`:
Kingma & Ba, Sec. 2, last paragraph: lr_t = lr sqrt(1 - beta2^t) / (1 - beta1^t),
theta -= lr_t m / (sqrt(v) + eps)); and `num_aggregate` told samples make one optimizer step on the mean
of their gradients (SyncReplicasOptimizer with `replicas_to_aggregate=num_aggregate`: the samples of one
step are scored at the same parameters). `num_aggregate=None` keeps naslab's former update: one step
per tell on the batch mean (repeated `updates_per_tell` times), the baseline taken after the whole batch.

MLPNAS (the NAS overview, Minutoli et al., Sec. 4.2 "Accuracy predictor") adds an optional accuracy
predictor to the generic controller: "a single dense layer which will share weights with the LSTM layer",
fed with the true validation accuracies of sampled architectures, so that the LSTM's hidden states learn
what separates good architectures from bad ones. `predictor=True` builds it as in the authors' Keras code:
a Linear(hidden, 1) + sigmoid on the LSTM's state after the last token (one more LSTM step reads the last
position's embedding, so the prediction sees the whole sequence), trained jointly with REINFORCE on the
told scores by MSE; the loss is REINFORCE + `predictor_weight` * MSE (the code's loss weights are 1 and 1).
Each update here sees the batch just told; MLPNAS retrains the controller after every controller epoch on
"a new dataset that collects the architectures sampled since the first epoch" (`updates_per_tell` > 1
repeats the step). The paper calls the pair adversarial ("the controller ... will try to ... generate
architectures not easily predictable by the predictor"), but the code, followed here, simply minimises
the sum; the predictor's gradient reaches the shared LSTM, embeddings and start input. Its sigmoid
predicts scores in (0, 1): accuracies. The predictor head is created after every other module and reads
no random numbers while sampling, so with it on or off a seeded controller starts from the same weights
and samples the same first proposals.

MLPNAS also decays the controller's lr (Sec. 5.1: "Adam ... 0.01 ... for the controller ... The
controller uses a learning rate decay of 0.1"): Keras' optimizer `decay`, lr_t = lr / (1 + decay * t)
with t the number of optimizer steps taken; `lr_decay=0` (the default) keeps it constant.

The constructor's defaults are naslab's former controller (generic, torch's Adam, baseline from the first
reward, one update per tell), so code that builds it directly keeps its behaviour; conf/strategy/reinforce.yaml
holds the ENAS code's values and `controller: auto`.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Iterable, Literal, Sequence

import torch
from torch import nn

from naslab.spaces.base import Space
from naslab.strategies.base import G, Proposal, Result, Strategy
from naslab.strategies.own_model import one_thread
from naslab.strategies.reinforce.controller import (
    EnasController,
    Sampled,
    build_enas_controller,
    enas_family,
    sample_tokens,
)

__all__ = ["Controller", "EpsilonHatAdam", "ReinforceStrategy", "Sampled"]

CONTROLLERS = ("auto", "enas", "generic")


def state_to_parameter_devices(optimizer: torch.optim.Optimizer) -> None:
    """Moves each parameter's optimizer state to the parameter's device.

    With weight sharing the controller is a registered module of the Lightning search module: a resumed
    search loads the strategy's optimizer state (on the CPU) before Lightning moves the controller to the
    accelerator, and the next step would mix devices.
    """
    for group in optimizer.param_groups:
        for p in group["params"]:
            for name, value in optimizer.state.get(p, {}).items():
                if isinstance(value, torch.Tensor) and value.dim() > 0 and value.device != p.device:
                    optimizer.state[p][name] = value.to(p.device)


class EpsilonHatAdam(torch.optim.Optimizer):
    """Adam as TensorFlow's `tf.train.AdamOptimizer` computes it (the ENAS code's controller optimizer).

    lr_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t); theta -= lr_t * m / (sqrt(v) + eps): epsilon is added
    before the bias correction (Kingma & Ba's "epsilon hat"). torch's Adam adds it after, which with the
    code's large eps = 1e-3 is a different optimizer in the first hundreds of steps.
    """

    def __init__(self, params: Iterable[nn.Parameter], lr: float, betas: tuple[float, float], eps: float):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"]
                m = state["exp_avg"].mul_(beta1).add_(p.grad, alpha=1 - beta1)
                v = state["exp_avg_sq"].mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                lr_t = group["lr"] * math.sqrt(1 - beta2**t) / (1 - beta1**t)
                p.addcdiv_(m, v.sqrt().add_(group["eps"]), value=-lr_t)


class Controller(nn.Module):
    """An LSTM cell that emits one token per position of the space's token table."""

    def __init__(
        self,
        token_choices: Sequence[int],
        hidden: int = 100,
        temperature: float | None = 5.0,
        tanh_constant: float | None = 1.1,
        predictor: bool = False,
    ):
        super().__init__()
        if not token_choices or min(token_choices) < 1:
            raise ValueError(f"the controller needs a non-empty token table of positive sizes, got {token_choices}")
        self.token_choices = list(token_choices)
        self.temperature, self.tanh_constant = temperature, tanh_constant
        self.start = nn.Parameter(torch.zeros(1, hidden))  # learned input at the first position
        self.lstm = nn.LSTMCell(hidden, hidden)
        self.heads = nn.ModuleList(nn.Linear(hidden, n) for n in self.token_choices)
        self.embeddings = nn.ModuleList(nn.Embedding(n, hidden) for n in self.token_choices)
        nn.init.uniform_(self.start, -0.1, 0.1)
        # Last, so that the weights above (and the parameter order) are those of a controller without it.
        self.predictor = nn.Linear(hidden, 1) if predictor else None

    def _logits(self, position: int, h: torch.Tensor) -> torch.Tensor:
        logits = self.heads[position](h)
        if self.temperature:
            logits = logits / self.temperature
        if self.tanh_constant:
            logits = self.tanh_constant * torch.tanh(logits)
        return logits

    def forward(self, n: int, tokens: torch.Tensor | None = None, generator: torch.Generator | None = None) -> Sampled:
        """Samples `n` sequences, or scores the given `tokens` (n, positions) when passed."""
        x = self.start.expand(n, -1)
        state = None
        chosen, log_prob, entropy = [], torch.zeros(n, device=x.device), torch.zeros(n, device=x.device)
        if tokens is not None:
            tokens = tokens.to(x.device)
        for position in range(len(self.token_choices)):
            h, c = self.lstm(x, state)
            state = (h, c)
            log_p = torch.log_softmax(self._logits(position, h), dim=-1)
            if tokens is None:
                token = sample_tokens(log_p.exp(), generator)
            else:
                token = tokens[:, position]
            log_prob = log_prob + log_p.gather(1, token.unsqueeze(1)).squeeze(1)
            entropy = entropy - (log_p.exp() * log_p).sum(dim=1)
            chosen.append(token)
            x = self.embeddings[position](token)
        predicted = None
        if self.predictor is not None:  # one more step reads the last token: the state has seen them all
            h, _ = self.lstm(x, state)
            predicted = torch.sigmoid(self.predictor(h)).squeeze(1)
        return Sampled(torch.stack(chosen, dim=1), log_prob, entropy, predicted)


class ReinforceStrategy(Strategy[G]):
    """Samples architectures from the controller and trains it by REINFORCE on their scores.

    `controller`: "auto" (the ENAS controller on the micro, macro and recurrent spaces, the generic one
    elsewhere), "enas" (an error on other spaces) or "generic" (`Controller`, naslab's former behaviour).
    `hidden` is the LSTM size; `op_tanh_reduce` divides the tanh constant of the ENAS micro controller's op
    logits; `skip_target` / `skip_weight` are the ENAS macro controller's skip penalty (the loss adds
    `skip_weight` times the KL of the skip probability to `skip_target`, averaged over layers).

    With `predictor=True` the generic controller also learns to predict the told scores (MLPNAS's accuracy
    predictor): `predict` queries it and each proposal carries its prediction into the archive (`Proposal.info`).
    `lr_decay` > 0 decays Adam's lr per optimizer step as Keras does: lr / (1 + lr_decay * step).
    """

    name = "reinforce"

    def __init__(
        self,
        space: Space[G],
        seed: int = 0,
        hidden: int = 100,
        temperature: float | None = 5.0,
        tanh_constant: float | None = 1.1,
        lr: float = 0.0035,
        entropy_weight: float = 1e-4,
        baseline_decay: float = 0.99,
        updates_per_tell: int = 1,
        predictor: bool = False,
        predictor_weight: float = 1.0,
        lr_decay: float = 0.0,
        controller: Literal["auto", "enas", "generic"] = "generic",
        op_tanh_reduce: float = 1.0,
        skip_target: float = 0.4,
        skip_weight: float = 0.0,
        adam_betas: Sequence[float] = (0.9, 0.999),
        adam_eps: float = 1e-8,
        adam_epsilon_hat: bool = False,
        baseline_init: float | None = None,
        num_aggregate: int | None = None,
    ):
        super().__init__(space)
        if lr_decay < 0:
            raise ValueError(f"strategy.lr_decay must be >= 0, got {lr_decay}")
        if controller not in CONTROLLERS:
            raise ValueError(f"strategy.controller must be one of {', '.join(CONTROLLERS)}, got {controller!r}")
        if num_aggregate is not None and num_aggregate < 1:
            raise ValueError(f"strategy.num_aggregate must be >= 1 (or null: one update per tell), got {num_aggregate}")
        if num_aggregate is not None and updates_per_tell != 1:
            raise ValueError("updates_per_tell repeats the per-tell update: it needs num_aggregate=null")
        betas = tuple(float(b) for b in adam_betas)
        if len(betas) != 2:
            raise ValueError(f"adam_betas needs two values, got {list(adam_betas)}")
        use_enas = controller == "enas" or (controller == "auto" and enas_family(space) is not None)
        if use_enas and predictor:
            raise ValueError(
                "the accuracy predictor (MLPNAS) needs the generic controller: strategy.controller=generic"
            )
        torch.manual_seed(seed)  # controller initialisation is part of the seeded run
        self.controller: Controller | EnasController
        if use_enas:
            self.controller = build_enas_controller(
                space, hidden, temperature, tanh_constant, op_tanh_reduce=op_tanh_reduce, skip_target=skip_target
            )
        else:
            self.controller = Controller(space.token_choices(), hidden, temperature, tanh_constant, predictor)
        self.optimizer: torch.optim.Optimizer
        if adam_epsilon_hat:
            self.optimizer = EpsilonHatAdam(self.controller.parameters(), lr, (betas[0], betas[1]), adam_eps)
        else:
            self.optimizer = torch.optim.Adam(self.controller.parameters(), lr=lr, betas=betas, eps=adam_eps)
        self.lr_decay = lr_decay
        # Keras' inverse-time decay, stepped once per optimizer step; with lr_decay=0 the factor is 1.0 exactly.
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda step: 1.0 / (1.0 + lr_decay * step))
        self.generator = torch.Generator().manual_seed(seed)
        self.entropy_weight, self.baseline_decay = entropy_weight, baseline_decay
        self.updates_per_tell = updates_per_tell
        self.predictor_weight = predictor_weight
        self.skip_weight = skip_weight
        self.num_aggregate = num_aggregate
        self.baseline: float | None = None if baseline_init is None else float(baseline_init)
        # The SyncReplicasOptimizer's accumulators: the summed gradients of the samples told since the last step.
        self._aggregate: list[torch.Tensor | None] = [None] * len(list(self.controller.parameters()))
        self._aggregated = 0
        self._mse: list[float] = []  # the predictor's error on each tell since pop_metrics
        self._skip_rates: list[float] = []  # the macro controller's skip rate of each told sample since pop_metrics
        self._told_since_pop = False

    @property
    def has_predictor(self) -> bool:
        return self.controller.predictor is not None

    @property
    def controller_kind(self) -> str:
        """'generic' or the ENAS family ('micro', 'macro', 'rnn') of the controller in use."""
        return self.controller.family if isinstance(self.controller, EnasController) else "generic"

    @one_thread()  # its decisions must not depend on the run's `threads` (own_model.one_thread)
    def ask(self, n: int) -> list[Proposal[G]]:
        """`n` samples of the controller; with the predictor, each one's predicted score (archived under
        "reinforce"), computed with the samples. Two samples of one architecture (`space.key`) both carry the
        prediction of the later one."""
        with torch.no_grad():
            sampled = self.controller(n, generator=self.generator)
        genotypes = [self.space.from_tokens(t.tolist()) for t in sampled.tokens]
        if sampled.predicted is None:
            return [Proposal(g) for g in genotypes]
        predictions = {self.space.key(g): p for g, p in zip(genotypes, sampled.predicted.tolist(), strict=True)}
        return [Proposal(g, {self.name: {"predicted": predictions[self.space.key(g)]}}) for g in genotypes]

    @property
    def _device(self) -> torch.device:
        """Where the controller's weights are (a GPU when the shared evaluator's module moved them there)."""
        return next(self.controller.parameters()).device

    def _tokens(self, genotypes: Sequence[G]) -> torch.Tensor:
        return torch.tensor([self.space.to_tokens(g) for g in genotypes], dtype=torch.long, device=self._device)

    @one_thread()  # its decisions must not depend on the run's `threads` (own_model.one_thread)
    def predict(self, genotypes: Sequence[G]) -> list[float]:
        """The accuracy predictor's scores for `genotypes` (in (0, 1)); needs `predictor=True`."""
        if not self.has_predictor:
            raise RuntimeError("this ReinforceStrategy has no accuracy predictor: build it with predictor=True")
        if not genotypes:
            return []
        with torch.no_grad():
            predicted = self.controller(len(genotypes), tokens=self._tokens(genotypes)).predicted
        assert predicted is not None
        return predicted.tolist()

    def _move_baseline(self, reward: float) -> float:
        """decay * baseline + (1 - decay) * reward: the code's `baseline -= (1 - bl_dec) * (baseline - reward)`,
        written as naslab always computed it (bit for bit the former runs); None (no baseline yet) takes the reward."""
        if self.baseline is None:
            self.baseline = reward
        else:
            self.baseline = self.baseline_decay * self.baseline + (1 - self.baseline_decay) * reward
        return self.baseline

    def _record_skips(self, scored: Sampled) -> None:
        pairs = getattr(self.controller, "skip_pairs", 0)
        if scored.skips is not None and pairs:
            self._skip_rates += (scored.skips.detach() / pairs).tolist()

    @one_thread()  # its decisions must not depend on the run's `threads` (own_model.one_thread)
    def tell(self, results: Sequence[Result[G]]) -> None:
        """REINFORCE on the told batch: per-tell steps (`num_aggregate=None`) or aggregated per sample.

        Log-probabilities are recomputed from the genotypes' tokens, so any genotypes can be told
        (a resumed search re-tells archived ones). With the predictor, the loss adds
        `predictor_weight` * MSE(predicted, scores); `pop_metrics` reports that MSE as it was before
        the tell's first update, on architectures the predictor had not yet been told.
        """
        if not results:
            return
        tokens = self._tokens([r.genotype for r in results])
        scores_t = torch.tensor([r.score for r in results], dtype=torch.float32, device=self._device)
        self._told_since_pop = True
        if self.num_aggregate is None:
            self._tell_per_batch(tokens, scores_t)
        else:
            self._tell_aggregated(tokens, scores_t)

    def _tell_per_batch(self, tokens: torch.Tensor, scores: torch.Tensor) -> None:
        """naslab's former update: one step per tell (x updates_per_tell), baseline after the whole batch."""
        for update in range(self.updates_per_tell):
            scored = self.controller(len(tokens), tokens=tokens)
            if update == 0:
                self._record_skips(scored)
            rewards = scores + self.entropy_weight * scored.entropy.detach()
            for reward in rewards.tolist():
                self._move_baseline(reward)
            assert self.baseline is not None
            advantage = rewards - self.baseline
            loss = -(scored.log_prob * advantage).mean()
            if scored.skip_penalty is not None and self.skip_weight:
                loss = loss + self.skip_weight * scored.skip_penalty.mean()
            if scored.predicted is not None:
                mse = torch.nn.functional.mse_loss(scored.predicted, scores)
                if update == 0:
                    self._mse.append(mse.item())
                loss = loss + self.predictor_weight * mse
            self.optimizer.zero_grad()
            loss.backward()
            state_to_parameter_devices(self.optimizer)
            self.optimizer.step()
            self.scheduler.step()

    def _tell_aggregated(self, tokens: torch.Tensor, scores: torch.Tensor) -> None:
        """The code's controller loop: per sample, move the baseline, take the advantage, add the gradient of

        `-log p * (reward - baseline) + skip_weight * skip_penalty` to the accumulators; every
        `num_aggregate` samples, one optimizer step on their mean. A tell that crosses a step boundary
        scores its later samples with the stepped parameters.
        """
        assert self.num_aggregate is not None
        if self.has_predictor:
            with torch.no_grad():
                predicted = self.controller(len(tokens), tokens=tokens).predicted
            assert predicted is not None
            self._mse.append(torch.nn.functional.mse_loss(predicted, scores).item())
        params = list(self.controller.parameters())
        start = 0
        while start < len(tokens):
            stop = min(len(tokens), start + self.num_aggregate - self._aggregated)
            scored = self.controller(stop - start, tokens=tokens[start:stop])
            self._record_skips(scored)
            rewards = scores[start:stop] + self.entropy_weight * scored.entropy.detach()
            advantage = torch.tensor(
                [r - self._move_baseline(r) for r in rewards.tolist()], dtype=torch.float32, device=self._device
            )
            loss = -(scored.log_prob * advantage).sum()
            if scored.skip_penalty is not None and self.skip_weight:
                loss = loss + self.skip_weight * scored.skip_penalty.sum()
            if scored.predicted is not None:
                loss = loss + self.predictor_weight * ((scored.predicted - scores[start:stop]) ** 2).sum()
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            for i, g in enumerate(grads):
                if g is not None:
                    held = self._aggregate[i]
                    # a resumed aggregate is loaded on the CPU before Lightning moves the controller
                    self._aggregate[i] = g.detach().clone() if held is None else held.to(g.device) + g.detach()
            self._aggregated += stop - start
            start = stop
            if self._aggregated == self.num_aggregate:
                self._step_on_aggregate(params)

    def _step_on_aggregate(self, params: list[nn.Parameter]) -> None:
        assert self.num_aggregate is not None
        for p, g in zip(params, self._aggregate, strict=True):
            p.grad = None if g is None else g / self.num_aggregate
        state_to_parameter_devices(self.optimizer)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad()
        self._aggregate = [None] * len(params)
        self._aggregated = 0

    def pop_metrics(self) -> dict[str, float]:
        """Since the last call: the predictor's mean MSE (`predictor_mse`), with lr decay the lr of the next
        update (`lr`), and the ENAS macro controller's mean skip rate of the told samples (`skip_rate`:
        skips / (L (L - 1) / 2), as general_controller.py logs it); {} when none applies or nothing was told."""
        metrics: dict[str, float] = {}
        if self._mse:
            metrics["predictor_mse"] = float(sum(self._mse) / len(self._mse))
        if self.lr_decay and self._told_since_pop:
            metrics["lr"] = float(self.optimizer.param_groups[0]["lr"])
        if self._skip_rates:
            metrics["skip_rate"] = float(sum(self._skip_rates) / len(self._skip_rates))
        self._mse, self._skip_rates, self._told_since_pop = [], [], False
        return metrics

    def state_dict(self) -> dict[str, Any]:
        """A snapshot (deep copy): torch's state dicts reference live tensors that later steps change.

        "aggregate" holds a partly filled gradient aggregate (`num_aggregate`), so a resumed search
        completes it exactly as the uninterrupted one would.
        """
        return copy.deepcopy(
            {
                "controller": self.controller.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "generator": self.generator.get_state(),
                "baseline": self.baseline,
                "aggregate": {"count": self._aggregated, "grads": self._aggregate},
            }
        )

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores `state_dict`, also one written before the predictor, lr decay and aggregation existed.

        Such a checkpoint has no "scheduler" (the decay then counts from this point on) and no
        "aggregate" (the aggregate starts empty); loaded with `predictor=True` it has no predictor head:
        the head keeps its fresh weights and fresh Adam moments while everything else continues from the
        checkpoint.
        """
        controller_state, optimizer_state = state["controller"], state["optimizer"]
        fresh = self.controller.state_dict()
        head = {k: v for k, v in fresh.items() if k.startswith("predictor.")}
        if head and not head.keys() & controller_state.keys():  # a checkpoint from a controller without it
            controller_state = {**controller_state, **head}
            # the head's parameters come last in the optimizer's only group: give them ids, with no Adam state
            group = optimizer_state["param_groups"][0]
            ids = list(group["params"]) + list(range(len(group["params"]), len(list(self.controller.parameters()))))
            optimizer_state = {**optimizer_state, "param_groups": [{**group, "params": ids}]}
        self.controller.load_state_dict(controller_state)
        self.optimizer.load_state_dict(optimizer_state)
        if "scheduler" in state:
            self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["generator"])
        self.baseline = state["baseline"]
        params = list(self.controller.parameters())
        aggregate = state.get("aggregate") or {"count": 0, "grads": [None] * len(params)}
        grads = list(aggregate["grads"])
        if len(grads) != len(params):
            raise ValueError(f"the saved gradient aggregate has {len(grads)} tensors; the controller has {len(params)}")
        self._aggregate = [None if g is None else g.clone() for g in grads]
        self._aggregated = int(aggregate["count"])
        self._mse, self._skip_rates, self._told_since_pop = [], [], False
