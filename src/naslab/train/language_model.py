"""Word-level language-model training of an rnn-space network, as AWD-LSTM / DARTS / NAO train their cells.

Truncated BPTT: the hidden state runs on from window to window of the batchified stream (detached),
and starts from zero at each epoch. Each window's learning rate is scaled by its length / bptt
(variable-length windows, `data.text`). Plain SGD (DARTS: lr 20, weight decay 8e-7) switches to
averaged SGD (`torch.optim.ASGD`, t0 = 0, lambda = 0) once validation loss is worse than the best of
all but the last `nonmono` epochs; from then on validation and test use the averaged weights.
Gradients are clipped to `grad_clip` (0.25). The loss adds AWD-LSTM's AR / TAR (`objectives`).
As AWD-LSTM, DARTS and NAO do, the weights of the best validation epoch (averaged ones after the
switch) are kept and are the ones tested. A non-finite loss raises `NonFiniteLossError`, which the
stand-alone evaluator records as a failed trial. Training runs in float32 (`train.modules` asks the
Trainer for it): under mixed precision, manual optimisation would clip gradients before unscaling.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import lightning as L
import torch
from torch import nn

from naslab.train.classifier import NonFiniteLossError
from naslab.train.objectives import TextObjective, perplexity

Batch = tuple[torch.Tensor, torch.Tensor]


def stalled(history: list[float], loss: float, nonmono: int) -> bool:
    """AWD-LSTM's non-monotone trigger: `loss` is worse than the best of all but the last `nonmono` epochs."""
    return len(history) > nonmono and loss > min(history[: len(history) - nonmono])


class LanguageModelModule(L.LightningModule):
    """Trains an `RNNLanguageModel` on (x, y) windows of shape (T, B); logs loss and perplexity."""

    def __init__(
        self,
        network: nn.Module,
        lr: float = 20.0,
        weight_decay: float = 8e-7,
        grad_clip: float = 0.25,
        alpha: float = 0.0,
        beta: float = 1e-3,
        bptt: int = 35,
        nonmono: int = 5,
        asgd: bool = True,
        epochs: int = 1,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False  # per-window learning rate, the SGD -> ASGD switch
        self.network = network
        self.save_hyperparameters(ignore=["network"])
        self.objective = TextObjective(alpha=alpha, beta=beta)  # carries the hidden state per stream
        self.sums: dict[str, list[float]] = {}
        self.val_losses: list[float] = []
        self.asgd_active = False
        self.best_state: dict[str, torch.Tensor] | None = None  # weights of the best validation epoch

    # -- optimisation -----------------------------------------------------------------------------
    def configure_optimizers(self):
        params = list(self.network.parameters())
        sgd = torch.optim.SGD(params, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        asgd = torch.optim.ASGD(params, lr=self.hparams.lr, t0=0, lambd=0.0, weight_decay=self.hparams.weight_decay)
        self.asgd = asgd  # kept: evaluation after fit (trainer.test) reads its running average
        return [sgd, asgd]

    def _optimizer(self) -> torch.optim.Optimizer:
        return self.optimizers()[1 if self.asgd_active else 0]  # type: ignore[index]

    def on_train_epoch_start(self) -> None:
        self.objective.reset("train")

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        step = self.objective.loss(self.network, batch, stream="train")
        if not torch.isfinite(step.loss):
            raise NonFiniteLossError(
                f"language-model loss is {step.loss.item()} at epoch {self.current_epoch}, step {batch_idx} "
                f"(lr={self.hparams.lr})"
            )
        optimizer = self._optimizer()
        optimizer.zero_grad()
        self.manual_backward(step.loss)
        self.clip_gradients(optimizer, gradient_clip_val=self.hparams.grad_clip, gradient_clip_algorithm="norm")
        group = optimizer.param_groups[0]
        group["lr"] = self.hparams.lr * batch[0].size(0) / self.hparams.bptt  # AWD-LSTM: longer window, larger step
        optimizer.step()
        group["lr"] = self.hparams.lr
        self.log("train/loss", step.nll, prog_bar=True, on_step=False, on_epoch=True, batch_size=step.count)
        self.log("train/ppl", perplexity(float(step.nll.detach())), on_step=True, on_epoch=False, batch_size=step.count)
        return step.loss

    # -- evaluation -------------------------------------------------------------------------------
    @contextmanager
    def swapped_in(self, state: dict[str, torch.Tensor] | None) -> Iterator[None]:
        """Other weights (a state dict) in the network for the block; the trained ones afterwards."""
        if state is None:
            yield
            return
        current = {k: v.detach().clone() for k, v in self.network.state_dict().items()}
        self.network.load_state_dict(state)
        try:
            yield
        finally:
            self.network.load_state_dict(current)

    def averaged_state(self) -> dict[str, torch.Tensor] | None:
        """ASGD's running average as a state dict (None before the switch), as AWD-LSTM evaluates."""
        if not self.asgd_active:
            return None
        averages = {id(p): self.asgd.state[p]["ax"] for p in self.network.parameters() if "ax" in self.asgd.state[p]}
        if not averages:
            return None
        named = dict(self.network.named_parameters(remove_duplicate=False))
        state = self.network.state_dict()
        return {k: averages.get(id(named[k]), v) if k in named else v for k, v in state.items()}

    def _evaluate(self, batch: Batch, stream: str) -> None:
        step = self.objective.loss(self.network, batch, stream=stream)
        self.sums[stream][0] += float(step.nll) * step.count
        self.sums[stream][1] += step.count

    def _mean_loss(self, stream: str) -> float:
        total, count = self.sums[stream]
        mean = total / max(count, 1.0)
        self.log(f"{stream}/loss", mean)
        self.log(f"{stream}/ppl", perplexity(mean), prog_bar=stream == "val")
        return mean

    def on_validation_epoch_start(self) -> None:
        self.objective.reset("val")
        self.sums["val"] = [0.0, 0.0]
        self._validating = self.swapped_in(self.averaged_state())
        self._validating.__enter__()

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        try:
            loss = self._mean_loss("val")
            if self.trainer.sanity_checking:
                return
            if not self.val_losses or loss < min(self.val_losses):  # the weights evaluated now (averaged or not)
                self.best_state = {k: v.detach().cpu().clone() for k, v in self.network.state_dict().items()}
                self.log("val/best_ppl", perplexity(loss))
            else:
                self.log("val/best_ppl", perplexity(min(self.val_losses)))
        finally:
            self._validating.__exit__(None, None, None)
        if self.hparams.asgd and not self.asgd_active and stalled(self.val_losses, loss, self.hparams.nonmono):
            self.asgd_active = True  # AWD-LSTM / DARTS: validation stopped improving, average from here on
            self.print(f"switching to ASGD at epoch {self.current_epoch}")
        self.val_losses.append(loss)

    def on_test_epoch_start(self) -> None:
        """Tests the best validation epoch's weights (the last ones when nothing was validated)."""
        self.objective.reset("test")
        self.sums["test"] = [0.0, 0.0]
        best = None if self.best_state is None else {k: v.to(self.device) for k, v in self.best_state.items()}
        self._testing = self.swapped_in(best if best is not None else self.averaged_state())
        self._testing.__enter__()

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_test_epoch_end(self) -> None:
        try:
            self._mean_loss("test")
        finally:
            self._testing.__exit__(None, None, None)

    def best_valid_perplexity(self) -> float | None:
        return perplexity(min(self.val_losses)) if self.val_losses else None

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["language_model"] = {
            "asgd_active": self.asgd_active,
            "val_losses": list(self.val_losses),
            "best_state": self.best_state,
        }
        checkpoint["torch_rng"] = torch.get_rng_state()  # dropout masks draw from it ...
        if torch.cuda.is_available():
            checkpoint["cuda_rng"] = torch.cuda.get_rng_state_all()  # ... or from the GPU's

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("language_model", {})
        self.asgd_active = bool(state.get("asgd_active", False))
        self.val_losses = list(state.get("val_losses", []))
        self.best_state = state.get("best_state")
        if "torch_rng" in checkpoint:
            torch.set_rng_state(checkpoint["torch_rng"])
        if "cuda_rng" in checkpoint and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(checkpoint["cuda_rng"])
