"""Stand-alone evaluation: train each child from scratch for a few epochs, score = val accuracy.

This is the expensive but unbiased evaluator (NAO's stand-alone search, Zoph & Le, PNAS). Each
child is trained by its own Lightning `Trainer` on the search-train split and scored on the
held-out search-valid split; the test set is never touched here.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Sequence

import lightning as L

from naslab.evaluators.base import Evaluation, Evaluator, G
from naslab.loggers import quiet_lightning
from naslab.spaces.base import Space, Task
from naslab.spaces.micro_network import count_parameters
from naslab.train.classifier import ClassifierModule, NonFiniteLossError

log = logging.getLogger(__name__)


class StandaloneEvaluator(Evaluator[G]):
    """Trains every proposed child for `epochs` epochs and returns its validation accuracy."""

    name = "standalone"

    def __init__(
        self,
        space: Space[G],
        task: Task,
        datamodule_factory: Callable[..., L.LightningDataModule],
        trainer_factory: Callable[..., L.Trainer],
        seed: int = 0,
        epochs: int = 5,
        batch_size: int = 64,
        train_batches: int | float | None = None,
        channels_last: bool = False,
        channels: int = 16,
        cells_per_stage: int = 1,
        lr: float = 0.05,
        momentum: float = 0.9,
        weight_decay: float = 3e-4,
        grad_clip: float = 5.0,
    ):
        self.space, self.task = space, task
        self.datamodule = datamodule_factory(batch_size=batch_size)
        self.trainer_factory = trainer_factory
        self.seed = seed
        self.epochs = epochs
        self.network_kwargs: dict[str, Any] = {
            "channels": channels,
            "cells_per_stage": cells_per_stage,
            "auxiliary": False,
        }
        self.module_kwargs = {
            "lr": lr,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "channels_last": channels_last,
        }
        self.grad_clip = grad_clip
        # Proxy fidelity: batches per epoch (count or fraction), as NAO/ENAS train children briefly.
        self.trainer_overrides = {} if train_batches is None else {"limit_train_batches": train_batches}
        self.fidelity = {"train_batches": train_batches, "channels": channels, "cells_per_stage": cells_per_stage}

    def evaluate(self, genotypes: Sequence[G]) -> list[Evaluation]:
        return [self.evaluate_one(g) for g in genotypes]

    def evaluate_one(self, genotype: G) -> Evaluation:
        # Same seed for every child: differences in score come from the architecture, and a
        # resumed search reproduces the scores it would have had.
        L.seed_everything(self.seed, workers=True, verbose=False)
        start = time.perf_counter()
        network = self.space.build_child(genotype, self.task, **self.network_kwargs)
        params = count_parameters(network)
        module = ClassifierModule(network, self.task.num_classes, epochs=self.epochs, **self.module_kwargs)
        with quiet_lightning():
            trainer = self.trainer_factory(
                max_epochs=self.epochs,
                logger=False,
                enable_checkpointing=False,
                enable_progress_bar=False,
                enable_model_summary=False,
                gradient_clip_val=self.grad_clip,
                num_sanity_val_steps=0,
                check_val_every_n_epoch=self.epochs,  # validate once, after the last epoch
                **self.trainer_overrides,
            )
        try:
            with quiet_lightning():
                trainer.fit(module, datamodule=self.datamodule)
        except NonFiniteLossError as err:
            log.warning("child failed, scored 0: %s", err)
            return Evaluation(
                0.0, params, self.epochs, time.perf_counter() - start, error=str(err), extra=self.fidelity
            )
        return Evaluation(
            float(trainer.callback_metrics["val/acc"]),
            params,
            self.epochs,
            time.perf_counter() - start,
            extra=self.fidelity,
        )
