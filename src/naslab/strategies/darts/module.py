"""DARTS' bilevel optimisation as a LightningModule.

"DARTS: Differentiable Architecture Search", Hanxiao Liu, Karen Simonyan, Yiming Yang,
arXiv:1806.09055 (Alg. 1), as quark0/darts cnn/train_search.py and rnn/train_search.py run it.
The architecture parameters alpha are registered parameters of this module (one matrix per name of
the supernet's `alpha_shapes`), so Lightning checkpoints, restores and logs them with the weights.
Each training step takes one batch of the train half and one of the search-valid half (a
`CombinedLoader`) and, with manual optimisation:

1. updates alpha with Adam on the validation loss: first order (`order=1`) differentiates it at
   the current weights; second order (`order=2`) through one virtual SGD step with the finite-
   difference Hessian-vector product (`darts.architect`);
2. updates the weights w with SGD (momentum, weight decay, gradient clipping) on the train loss,
   with alpha held fixed.

The weight learning rate follows a cosine from `w_lr` to `w_lr_min` over the epochs; it is stepped
at the start of each epoch so that a checkpoint written at an epoch's end resumes with the right
rate. Language models scale it by window length / `bptt` for both updates of a step and restore it
afterwards (rnn/train_search.py sets lr * seq_len / bptt before `architect.step` and the weight
step). An alpha or weight update whose loss or gradient is not finite is skipped, logged and
counted (the epoch's `skipped_steps`, archived with its derivation); `max_nonfinite_steps` of them in a
row stop the search with a one-line `TrainingDivergedError`. A skipped update leaves the module as it
was: no optimizer step, the BatchNorm running statistics its forward passes moved are put back, and a
language model's hidden state of that stream, which the non-finite pass wrote, starts again from zero.
No checkpoint with non-finite weights is written (`on_save_checkpoint`).

The second-order virtual step (`virtual_step`):

* `code` (default): the authors' code. Images (cnn/architect.py `_compute_unrolled_model`):
  w' = w - xi * (momentum * buf + grad_w L_train + weight_decay * w), buf the SGD momentum buffer
  (zero before the first weight step). Text (rnn/architect.py): w' = w - xi * (c * grad_w L_train
  + weight_decay * w), c the clip factor of grad_w L_train; the implicit term is scaled by xi * c
  and grad_w' L_val is clipped before the Hessian-vector product. xi=None: the window-scaled lr.
* `paper`: Eqns. 6-8, w' = w - xi * grad_w L_train (no momentum, weight decay or clipping);
  xi=None: the scheduled weight learning rate.

Precision: float32 by default. Under `bf16-mixed` (strategy.precision, opt-in) the forward
passes run in bfloat16 autocast except the two finite-difference passes of the Hessian-vector
product, which stay float32 (their difference quotient would drown in bf16 rounding); parameters,
alpha and optimizer states are float32 throughout. On a toy supernet a bf16 alpha gradient is off by
30-55 % (tests/strategies/darts/test_precision.py), hence opt-in. fp16 (16-mixed) would need loss
scaling that the alpha gradients do not get, so `DartsStrategy` runs float32 instead.
"""

from __future__ import annotations

import itertools
import logging
import math
from typing import Any, Mapping

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from naslab.errors import TrainingDivergedError
from naslab.strategies.darts.architect import first_order_alpha_gradients, second_order_alpha_gradients
from naslab.train.layout import lay_out_network
from naslab.train.nonfinite import describe_names, nonfinite_tensors
from naslab.train.objectives import ImageObjective, Objective, StepLoss

log = logging.getLogger(__name__)
Batch = tuple[torch.Tensor, torch.Tensor]
EPOCH_STATS = ("train_loss", "train_correct", "samples", "valid_loss", "steps", "skipped_steps")
VIRTUAL_STEPS = ("code", "paper")


class DartsSearchModule(L.LightningModule):
    """A mixed-op supernet, its architecture parameters and DARTS' alternating updates."""

    def __init__(
        self,
        supernet: nn.Module,
        order: int = 1,
        epochs: int = 50,
        w_lr: float = 0.025,
        w_lr_min: float = 0.001,
        momentum: float = 0.9,
        weight_decay: float = 3e-4,
        grad_clip: float = 5.0,
        alpha_lr: float = 3e-4,
        alpha_betas: tuple[float, float] = (0.5, 0.999),
        alpha_weight_decay: float = 1e-3,
        alpha_init: float = 1e-3,
        xi: float | None = None,
        fd_r: float = 0.01,
        virtual_step: str = "code",
        bptt: int | None = None,
        max_nonfinite_steps: int = 10,
        objective: Objective | None = None,
    ):
        super().__init__()
        if order not in (1, 2):
            raise ValueError(f"strategy.order must be 1 (first order) or 2 (unrolled second order), got {order}")
        if virtual_step not in VIRTUAL_STEPS:
            raise ValueError(f"strategy.virtual_step must be 'code' or 'paper', got '{virtual_step}'")
        if bptt is not None and bptt < 1:
            raise ValueError(f"bptt must be >= 1, got {bptt}")
        self.automatic_optimization = False
        self.objective = objective or ImageObjective()  # a language model's carries hidden state per stream
        self.supernet = lay_out_network(supernet, self.objective.memory_format)  # images: NHWC if the objective's is
        shapes: Mapping[str, tuple[int, int]] = supernet.alpha_shapes  # type: ignore[assignment]
        # DARTS initialises alpha at 1e-3 * N(0, 1): every op starts almost equally weighted.
        self.alphas = nn.ParameterDict({k: nn.Parameter(alpha_init * torch.randn(*s)) for k, s in shapes.items()})
        self.order, self.epochs = order, epochs
        self.w_optim = {"lr": w_lr, "momentum": momentum, "weight_decay": weight_decay}
        self.w_lr_min, self.grad_clip = w_lr_min, grad_clip
        self.alpha_optim = {"lr": alpha_lr, "betas": tuple(alpha_betas), "weight_decay": alpha_weight_decay}
        self.xi, self.fd_r, self.virtual_step = xi, fd_r, virtual_step
        self.max_nonfinite_steps = max_nonfinite_steps
        self.bptt = bptt  # text: the learning rate is scaled by window length / bptt (None: not scaled)
        self.nonfinite_in_a_row = 0
        self.epoch_stats = dict.fromkeys(EPOCH_STATS, 0.0)  # sums over the current epoch's steps

    # -- the relaxation ------------------------------------------------------------------------
    def architecture_weights(self, detach: bool = False) -> dict[str, torch.Tensor]:
        """softmax(alpha) per row: the mixing weights of every edge."""
        return {k: F.softmax(a.detach() if detach else a, dim=-1) for k, a in self.alphas.items()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.supernet(self.objective.lay_out(x), self.architecture_weights())

    def batch_loss(
        self,
        batch: Batch,
        weights: Mapping[str, torch.Tensor],
        stream: str = "train",
        advance: bool = True,
        regularise: bool = True,
    ) -> StepLoss:
        """Loss of the supernet under mixing `weights`, from the task's objective.

        A language model's hidden state runs on per stream ("train" / "valid"); `advance=False` (the
        second-order virtual step) reads it without moving it, as DARTS' rnn architect does. The alpha
        losses are plain cross-entropy (`regularise=False`); the weight step adds the objective's
        regularisation (a language model's TAR), as DARTS' rnn/train_search.py does.
        """
        return self.objective.loss(self.supernet, batch, weights, stream, advance, regularise)

    def alpha_tensors(self) -> dict[str, torch.Tensor]:
        """Detached copies of the raw alphas (for derivation, pictures and the archive)."""
        return {k: a.detach().cpu().clone() for k, a in self.alphas.items()}

    # -- optimisation ----------------------------------------------------------------------------
    def configure_optimizers(self):
        w_optimizer = torch.optim.SGD(self.supernet.parameters(), **self.w_optim)
        alpha_optimizer = torch.optim.Adam(self.alphas.parameters(), **self.alpha_optim)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            w_optimizer, T_max=max(self.epochs, 1), eta_min=self.w_lr_min
        )
        return [w_optimizer, alpha_optimizer], [scheduler]

    def on_train_epoch_start(self) -> None:
        scheduler = self.lr_schedulers()
        while scheduler.last_epoch < self.current_epoch:  # type: ignore[union-attr]
            scheduler.step()  # type: ignore[union-attr]
        self.epoch_stats = dict.fromkeys(EPOCH_STATS, 0.0)
        self.objective.reset()  # hidden states start from zero each epoch

    def current_lr(self) -> float:
        """The weights' learning rate now (inside a language-model step: the window-scaled one)."""
        w_optimizer = self.optimizers()[0]  # type: ignore[index]
        return float(w_optimizer.param_groups[0]["lr"])

    def _set_lr(self, lr: float) -> None:
        w_optimizer = self.optimizers()[0]  # type: ignore[index]
        for group in w_optimizer.param_groups:
            group["lr"] = lr

    def window_scale(self, train: Batch) -> float:
        """seq_len / bptt for a language model's window (rnn/train_search.py), else 1."""
        if self.objective.kind != "text" or self.bptt is None:
            return 1.0
        return train[0].size(0) / self.bptt

    def _momentum_term(self, weights: list[torch.Tensor]) -> list[torch.Tensor | None]:
        """momentum * SGD momentum buffer per weight (None before the first weight step), as
        cnn/architect.py `_compute_unrolled_model` reads `network_optimizer.state`."""
        w_optimizer = self.optimizers()[0]  # type: ignore[index]
        sgd = getattr(w_optimizer, "optimizer", w_optimizer)
        momentum = float(sgd.param_groups[0]["momentum"])
        buffers = [sgd.state.get(w, {}).get("momentum_buffer") for w in weights]
        return [None if b is None or momentum == 0 else momentum * b for b in buffers]

    def virtual_step_args(self, weights: list[torch.Tensor], scheduled_lr: float) -> dict[str, Any]:
        """xi, clip, weight_decay and momentum_term of the second-order virtual step."""
        if self.virtual_step == "paper":  # Eqns. 6-7: w' = w - xi * grad_w L_train
            xi = scheduled_lr if self.xi is None else self.xi
            return {"xi": xi, "clip": None, "weight_decay": 0.0, "momentum_term": None}
        xi = self.current_lr() if self.xi is None else self.xi  # the authors' eta: the lr in use
        weight_decay = float(self.w_optim["weight_decay"])
        if self.objective.kind == "text":  # rnn/architect.py: clipped gradient + weight decay
            return {"xi": xi, "clip": self.grad_clip, "weight_decay": weight_decay, "momentum_term": None}
        # cnn/architect.py: momentum buffer + gradient + weight decay, no clipping
        return {"xi": xi, "clip": None, "weight_decay": weight_decay, "momentum_term": self._momentum_term(weights)}

    def _alpha_step(self, train: Batch, valid: Batch, scheduled_lr: float | None = None) -> float:
        """One architecture update; returns the validation loss it descended (at w' for order 2).

        `scheduled_lr`: the weights' learning rate before any window scaling (xi of `paper` mode).
        """
        alpha_optimizer = self.optimizers()[1]  # type: ignore[index]
        alphas = list(self.alphas.values())
        seen: list[float] = []
        buffers = self._saved_buffers()

        def train_loss() -> torch.Tensor:
            return self.batch_loss(train, self.architecture_weights(), "train", advance=False, regularise=False).loss

        def float32_train_loss() -> torch.Tensor:  # the finite-difference passes: no autocast (bf16-mixed)
            with torch.autocast(self.device.type, enabled=False):
                return train_loss()

        def valid_loss() -> torch.Tensor:
            loss = self.batch_loss(valid, self.architecture_weights(), "valid", regularise=False).loss
            seen.append(float(loss.detach()))
            return loss

        if self.order == 1:
            grads = first_order_alpha_gradients(alphas, valid_loss)
        else:
            weights = [p for p in self.supernet.parameters() if p.requires_grad]
            lr = self.current_lr() if scheduled_lr is None else scheduled_lr
            step = self.virtual_step_args(weights, lr)
            grads = second_order_alpha_gradients(
                weights, alphas, train_loss, valid_loss, r=self.fd_r, hvp_train_loss=float32_train_loss, **step
            )
        loss = seen[-1]
        if not math.isfinite(loss) or not all(bool(torch.isfinite(g).all()) for g in grads):
            self._skip("architecture", loss, buffers, "valid")
            return float("nan")
        alpha_optimizer.zero_grad()
        for a, g in zip(alphas, grads):
            a.grad = g.detach()
        alpha_optimizer.step()
        return loss

    def _weight_step(self, train: Batch) -> tuple[float, int, int]:
        """One SGD step of the supernet weights with alpha fixed; returns (loss, correct, targets)."""
        w_optimizer = self.optimizers()[0]  # type: ignore[index]
        buffers = self._saved_buffers()
        step = self.batch_loss(train, self.architecture_weights(detach=True), "train")
        loss = step.loss
        if not torch.isfinite(loss):
            self._skip("weight", float(loss.detach()), buffers, "train")
            return float("nan"), 0, step.count
        w_optimizer.zero_grad()
        self.manual_backward(loss)
        norm = torch.nn.utils.clip_grad_norm_(self.supernet.parameters(), self.grad_clip)
        if not torch.isfinite(norm):
            w_optimizer.zero_grad()
            self._skip("weight", float(norm), buffers, "train")
            return float("nan"), 0, step.count
        w_optimizer.step()
        return float(loss.detach()), int(step.correct), step.count

    def _saved_buffers(self) -> list[torch.Tensor]:
        """Copies of the supernet's buffers (BatchNorm running statistics): every training-mode forward pass
        moves them, a non-finite one to NaN, and a skipped update puts them back (`_skip`)."""
        return [b.detach().clone() for b in self.supernet.buffers()]

    def _skip(self, what: str, value: float, buffers: list[torch.Tensor], stream: str) -> None:
        """Undoes what the skipped update's forward passes changed, counts and logs it; `max_nonfinite_steps`
        in a row stop the search (a supernet that gives NaN that often has diverged: skipping more is waste)."""
        with torch.no_grad():
            for b, saved in zip(self.supernet.buffers(), buffers):
                b.copy_(saved)
        self.objective.reset(stream)  # a language model's hidden state of the stream the pass advanced
        self.nonfinite_in_a_row += 1
        self.epoch_stats["skipped_steps"] += 1
        log.warning(
            "DARTS %s step skipped at epoch %d (%d in a row of at most %d): loss or gradient is %s",
            what,
            self.current_epoch,
            self.nonfinite_in_a_row,
            self.max_nonfinite_steps,
            value,
        )
        if self.nonfinite_in_a_row >= self.max_nonfinite_steps:
            raise TrainingDivergedError(
                f"DARTS search diverged: {self.nonfinite_in_a_row} non-finite steps in a row at epoch "
                f"{self.current_epoch}, each skipped; "
                "lower strategy.w_lr or strategy.alpha_lr and start a new run"
            )

    def training_step(self, batch: dict[str, Batch], batch_idx: int) -> None:
        # rnn/train_search.py: lr * seq_len / bptt for architect.step and the weight step, then restored.
        scheduled_lr = self.current_lr()
        self._set_lr(scheduled_lr * self.window_scale(batch["train"]))
        try:
            valid_loss = self._alpha_step(batch["train"], batch["valid"], scheduled_lr)
            train_loss, correct, n = self._weight_step(batch["train"])
        finally:
            self._set_lr(scheduled_lr)
        if math.isfinite(valid_loss) and math.isfinite(train_loss):
            self.nonfinite_in_a_row = 0
        stats = self.epoch_stats
        if math.isfinite(train_loss):
            stats["train_loss"] += train_loss * n
            stats["train_correct"] += correct
            stats["samples"] += n
        if math.isfinite(valid_loss):
            stats["valid_loss"] += valid_loss
            stats["steps"] += 1
        self.log("darts/train_loss", train_loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=n)

    def epoch_metrics(self) -> dict[str, float]:
        """Means over the epoch's steps: train loss and accuracy (weight steps), validation loss (alpha steps)."""
        stats = self.epoch_stats
        samples, steps = max(stats["samples"], 1.0), max(stats["steps"], 1.0)
        return {
            "train_loss": stats["train_loss"] / samples,
            "train_accuracy": stats["train_correct"] / samples,
            "alpha_valid_loss": stats["valid_loss"] / steps,
            "skipped_steps": stats["skipped_steps"],
            "lr": self.current_lr(),
        }

    def evaluate(self, batches: Any, max_batches: int | None = None) -> tuple[float, dict[str, float]]:
        """(score, extras) of the whole mixture on search-valid batches, in eval mode (DARTS' `infer`).

        Images: accuracy. Text: the objective's reward c / perplexity, with the perplexity in extras.
        """
        weights = self.architecture_weights(detach=True)
        return self.objective.score(self.supernet, weights, self.take(batches, max_batches), eval_mode=True)

    def take(self, batches: Any, max_batches: int | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The first `max_batches` (x, y) batches (all for None), on the module's device."""
        return [(x.to(self.device), y.to(self.device)) for x, y in itertools.islice(batches, max_batches)]

    def score_weights(
        self, weights: Mapping[str, torch.Tensor], taken: list[tuple[torch.Tensor, torch.Tensor]]
    ) -> float:
        """The score of fixed architecture weights (e.g. a discrete cell's one-hot rows, the micro space's
        `relaxed_weights`) on batches already on the device (`take`).

        With batch statistics, not DARTS' eval mode: the running averages were gathered under the whole
        mixture, not under the one cell being scored (the shared-weight objective scores ENAS paths alike).
        """
        moved = {k: w.to(self.device) for k, w in weights.items()}
        return self.objective.score(self.supernet, moved, taken, eval_mode=False)[0]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Skipped steps keep the weights finite; weights a finite loss broke (an overflow) are refused here,
        # so the previous epoch's checkpoint stays the one a resume continues from.
        bad = nonfinite_tensors(checkpoint["state_dict"])
        if bad:
            raise TrainingDivergedError(
                f"DARTS search diverged: the weights are not finite after epoch {self.current_epoch} "
                f"({describe_names(bad)}); lower strategy.w_lr or strategy.alpha_lr and start a new run"
            )
        checkpoint["torch_rng"] = torch.get_rng_state()  # data augmentation draws from it

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "torch_rng" in checkpoint:
            torch.set_rng_state(checkpoint["torch_rng"])
