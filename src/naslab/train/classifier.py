"""Image classification training of a (child or final) network, as DARTS/NAO train their cells.

SGD with momentum and cosine annealing, an auxiliary-head loss and a linearly increasing
drop-path probability. The same module trains proxy children during search (few epochs, no
auxiliary head) and the final network from scratch.
"""

from __future__ import annotations

from typing import Callable, NoReturn

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from naslab.errors import TrainingDivergedError
from naslab.train.layout import laid_out, lay_out_network, memory_format
from naslab.train.nonfinite import NonFiniteWatch, log_interval


class NonFiniteLossError(TrainingDivergedError):
    """The training loss became NaN or infinite.

    A stand-alone child's is a failed trial (the evaluator records it and the search goes on); final
    training's stops the run in one line (a `UserError`: the fix is a lower learning rate) naming the epoch
    and the last good checkpoint (`train.final`).
    """


class ClassifierModule(L.LightningModule):
    """Trains `network` on (image, label) batches and reports accuracy on val/test."""

    def __init__(
        self,
        network: nn.Module,
        num_classes: int,
        lr: float = 0.025,
        lr_min: float = 0.0,
        momentum: float = 0.9,
        weight_decay: float = 3e-4,
        epochs: int = 1,
        auxiliary_weight: float = 0.0,
        drop_path_prob: float = 0.0,
        channels_last: bool = True,
        compile: bool = False,
        label_smoothing: float = 0.0,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
    ):
        super().__init__()
        # Factories from Hydra (`_partial_: true`); None = SGD(lr, momentum, wd) + cosine to lr_min.
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        # NHWC: about 2x faster for these depthwise-heavy nets on CPU (naslab.train.layout).
        self.memory_format = memory_format(channels_last)
        self.network = lay_out_network(network, self.memory_format)
        # torch.compile of the training and evaluation forwards (not registered as modules: the state
        # dict keeps the network's own keys). A drop-path probability that changes every epoch may
        # recompile once per epoch; torch falls back to eager beyond its recompile limit.
        with_aux = getattr(network, "forward_with_aux", None)
        self.train_forward = torch.compile(with_aux) if compile and with_aux is not None else with_aux
        self.eval_forward = torch.compile(network.forward) if compile else network.__call__
        self.save_hyperparameters(ignore=["network", "optimizer", "scheduler"])
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.nonfinite = NonFiniteWatch()  # no device sync per step on an accelerator

    def _laid_out(self, x: torch.Tensor) -> torch.Tensor:
        """The batch in the network's memory format; only image batches (rank 4) have a channels-last one."""
        return laid_out(x, self.memory_format)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.eval_forward(self._laid_out(x))

    def on_train_epoch_start(self) -> None:
        self.nonfinite.reset()
        if hasattr(self.network, "set_drop_path"):
            # DARTS schedule: drop_path_prob * epoch / epochs, so early epochs are undisturbed.
            self.network.set_drop_path(self.hparams.drop_path_prob * self.current_epoch / max(self.hparams.epochs, 1))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        x = self._laid_out(x)
        if self.train_forward is not None:
            logits, aux = self.train_forward(x)
        else:
            logits, aux = self.eval_forward(x), None
        smoothing = self.hparams.label_smoothing
        loss = F.cross_entropy(logits, y, label_smoothing=smoothing)
        if aux is not None and self.hparams.auxiliary_weight > 0:
            loss = loss + self.hparams.auxiliary_weight * F.cross_entropy(aux, y, label_smoothing=smoothing)
        if self.nonfinite.diverged(loss, batch_idx, log_interval(self)):
            self._diverged()
        self.train_acc(logits, y)
        self.log("train/loss", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=x.size(0))
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, batch_size=x.size(0))
        return loss

    def on_train_epoch_end(self) -> None:
        # Before the epoch's checkpoint (Lightning runs ModelCheckpoint's hook after the module's): the last
        # steps of an epoch on an accelerator were not read yet, and their weights must not be saved.
        if self.nonfinite.read_now():
            self._diverged()

    def _diverged(self) -> NoReturn:
        raise NonFiniteLossError(
            f"training loss is not finite at epoch {self.current_epoch}, {self.nonfinite.window()} "
            f"(lr={self.hparams.lr})"
        )

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.val_acc(logits, y)
        self.log("val/loss", F.cross_entropy(logits, y), on_epoch=True, batch_size=x.size(0))
        self.log("val/acc", self.val_acc, prog_bar=True, on_epoch=True, batch_size=x.size(0))

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.test_acc(logits, y)
        self.log("test/loss", F.cross_entropy(logits, y), on_epoch=True, batch_size=x.size(0))
        self.log("test/acc", self.test_acc, on_epoch=True, batch_size=x.size(0))

    def configure_optimizers(self):
        if self.optimizer_factory is not None:
            optimizer = self.optimizer_factory(self.parameters())
        else:
            optimizer = torch.optim.SGD(
                self.parameters(),
                lr=self.hparams.lr,
                momentum=self.hparams.momentum,
                weight_decay=self.hparams.weight_decay,
            )
        if self.scheduler_factory is not None:
            scheduler = self.scheduler_factory(optimizer)
        else:
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
                optimizer, T_max=max(self.hparams.epochs, 1), eta_min=self.hparams.lr_min
            )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
