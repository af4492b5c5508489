"""Stand-alone evaluation: train each child from scratch for a few epochs, score = val accuracy.

(Language models: score = 80 / validation perplexity, ENAS' reward; `train.modules`.)

This is the expensive but unbiased evaluator (NAO's stand-alone search, Zoph & Le, PNAS). Each
child is trained by its own Lightning `Trainer` on the search-train split and scored on the
held-out search-valid split; the test set is never touched here.
"""

from __future__ import annotations

import itertools
import logging
import time
from typing import Any, Callable, Iterator, Sequence

import lightning as L
import torch
from torch import nn
from torch.optim.swa_utils import update_bn

from naslab.evaluators.backends import BACKENDS, Backend, make_backend
from naslab.evaluators.base import Evaluation, Evaluator, G
from naslab.loggers import quiet_lightning
from naslab.spaces.base import Space, Task
from naslab.spaces.micro.network import count_parameters
from naslab.train.classifier import NonFiniteLossError
from naslab.train.modules import training_module, validation_score

log = logging.getLogger(__name__)


class StandaloneEvaluator(Evaluator[G]):
    """Trains every proposed child for `epochs` epochs and returns its validation score."""

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
        channels_last: bool = True,
        compile: bool = False,
        channels: int = 16,
        cells_per_stage: int = 1,
        lr: float = 0.05,
        momentum: float = 0.9,
        weight_decay: float = 3e-4,
        grad_clip: float = 5.0,
        backend: str = "local",
        workers: int = 2,
        ray_address: str | None = None,
        cpus_per_trial: float = 1,
        gpus_per_trial: float = 0,
        max_retries: int = 3,
        network: dict[str, Any] | None = None,
        lm: dict[str, Any] | None = None,
        validate_every: int | None = None,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
        auxiliary_weight: float = 0.0,
        drop_path_prob: float = 0.0,
        bn_recalibration: int | None = None,
    ):
        """`optimizer` / `scheduler`: Hydra partials for a child's own recipe (NASES: Nesterov SGD, cosine to
        0.001); None = SGD(lr, momentum, weight_decay) with cosine annealing to 0 over `epochs`.
        `auxiliary_weight` > 0 gives image children an auxiliary head and `drop_path_prob` drops their
        paths, as NAO trains its children (renqianluo/NAO NAO/cnn/train_cifar10_search.sh).
        `bn_recalibration`: before validating, recompute every BatchNorm's running statistics from that many
        training batches (`BatchNormRecalibration`); None keeps the running averages of training.
        `max_retries`: how often the pool and Ray backends rerun a trial whose worker process died (killed,
        out of memory); the rerun is seeded as the first run was, so the search gets the same evaluation."""
        if auxiliary_weight < 0 or not 0 <= drop_path_prob < 1:
            raise ValueError(
                f"evaluator.auxiliary_weight must be >= 0 and evaluator.drop_path_prob in [0, 1), "
                f"got {auxiliary_weight} and {drop_path_prob}"
            )
        if validate_every is not None and (validate_every < 1 or epochs % validate_every):
            raise ValueError(f"evaluator.validate_every={validate_every} must divide evaluator.epochs={epochs}")
        if bn_recalibration is not None and bn_recalibration < 1:
            raise ValueError(f"evaluator.bn_recalibration must be null or >= 1 batches, got {bn_recalibration}")
        self.bn_recalibration = bn_recalibration
        self.validate_every = validate_every
        self.space, self.task = space, task
        self.datamodule = datamodule_factory(batch_size=batch_size)
        self.trainer_factory = trainer_factory
        self.seed = seed
        self.epochs = epochs
        self.network_kwargs: dict[str, Any] = {
            "channels": channels,
            "cells_per_stage": cells_per_stage,
            **({"auxiliary": True} if auxiliary_weight > 0 else {}),
            **(network or {}),  # a language model's sizes and dropouts (text datasets)
        }
        self.module_kwargs = {
            "lr": lr,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "channels_last": channels_last,
            "compile": compile,
            "grad_clip": grad_clip,
            "lm": lm,  # a language model's AR / TAR and bptt (text datasets)
            "optimizer": optimizer,
            "scheduler": scheduler,
            "auxiliary_weight": auxiliary_weight,
            "drop_path_prob": drop_path_prob,
        }
        # Proxy fidelity: batches per epoch (count or fraction), as NAO/ENAS train children briefly.
        self.trainer_overrides = {} if train_batches is None else {"limit_train_batches": train_batches}
        self.fidelity = {"train_batches": train_batches, "channels": channels, "cells_per_stage": cells_per_stage}
        if bn_recalibration is not None:
            self.fidelity["bn_recalibration"] = bn_recalibration
        BACKENDS.get(backend)  # a misspelt backend fails here, not after the search has started
        if max_retries < 0:
            raise ValueError(f"evaluator.max_retries must be >= 0, got {max_retries}")
        self.backend_options: dict[str, Any] = {
            "name": backend,
            "workers": workers,
            "ray_address": ray_address,
            "cpus_per_trial": cpus_per_trial,
            "gpus_per_trial": gpus_per_trial,
            "max_retries": max_retries,
        }
        self._backend: Backend | None = None  # started on first use: a pool or Ray costs seconds to start

    def evaluate(self, genotypes: Sequence[G]) -> list[Evaluation]:
        results: list[Evaluation | None] = [None] * len(genotypes)
        for i, evaluation in self.evaluate_each(genotypes):
            results[i] = evaluation
        return results  # type: ignore[return-value]  # evaluate_each yields every index once

    def evaluate_each(self, genotypes: Sequence[G]) -> Iterator[tuple[int, Evaluation]]:
        """Runs the trials on the configured backend (local, pool or ray), yielding each as it finishes."""
        if genotypes:
            yield from self._started_backend().map_unordered(genotypes)

    def _started_backend(self) -> Backend:
        if self._backend is None:
            backend = make_backend(**self.backend_options)
            backend.start(self)  # pickles self for pool/ray workers; __getstate__ leaves the backend out
            self._backend = backend
        return self._backend

    def close(self) -> None:
        """Shuts the pool down or leaves Ray; the next evaluation would start a fresh backend."""
        if self._backend is not None:
            self._backend.close()
            self._backend = None

    def __getstate__(self) -> dict[str, Any]:
        # Workers get the evaluator, never its backend: a process pool or Ray handle cannot be pickled
        # and a worker runs evaluate_one directly.
        state = self.__dict__.copy()
        state["_backend"] = None
        return state

    def evaluate_one(self, genotype: G) -> Evaluation:
        """One trial with `cpus_per_trial` torch threads, whatever the backend.

        CPU kernels sum in an order that depends on the thread count, and a few epochs of SGD turn
        that rounding into different accuracies; a fixed count makes local, pool and Ray trials agree.
        """
        threads = torch.get_num_threads()
        torch.set_num_threads(max(1, int(self.backend_options["cpus_per_trial"])))
        try:
            return self._train_and_score(genotype)
        finally:
            torch.set_num_threads(threads)

    def _train_and_score(self, genotype: G) -> Evaluation:
        # Same seed for every child: differences in score come from the architecture, and a
        # resumed search reproduces the scores it would have had.
        L.seed_everything(self.seed, workers=True, verbose=False)
        start = time.perf_counter()
        network = self.space.build_child(genotype, self.task, **self.network_kwargs)
        return self._fit_and_score(network, start)

    def _fit_and_score(self, network: nn.Module, start: float) -> Evaluation:
        """Trains a freshly built (and seeded) child with a Lightning Trainer and scores it on search-valid;
        subclasses that prepare the network differently (evaluator=bigram's inherited layers) reuse this."""
        params = count_parameters(network)
        module, trainer_options = training_module(self.task, network, self.epochs, self.module_kwargs)
        curve = ValidationCurve(self.task)
        callbacks: list[L.Callback] = [curve] if self.validate_every else []
        if self.bn_recalibration:
            callbacks.insert(0, BatchNormRecalibration(self.bn_recalibration))
        with quiet_lightning():
            trainer = self.trainer_factory(
                max_epochs=self.epochs,
                logger=False,
                enable_checkpointing=False,
                enable_progress_bar=False,
                enable_model_summary=False,
                num_sanity_val_steps=0,
                # validate once, after the last epoch, unless the learning curve is asked for
                check_val_every_n_epoch=self.validate_every or self.epochs,
                callbacks=callbacks or None,
                **trainer_options,
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
        score, measured = validation_score(self.task, trainer.callback_metrics)
        extra = {**self.fidelity, **measured, **({"curve": curve.points} if self.validate_every else {})}
        return Evaluation(score, params, self.epochs, time.perf_counter() - start, extra=extra)


class BatchNormRecalibration(L.Callback):
    """Recomputes BatchNorm running statistics from `batches` training batches before each validation.

    After a few dozen steps the running averages (momentum 0.1) still lag far behind the fast-moving
    weights, so an eval-mode score measures that lag more than the architecture (measured on
    Fashion-MNIST after 40 steps: 0.10-0.29 accuracy in eval mode, 0.68-0.70 after recalibrating).
    Recomputing the statistics, as one-shot NAS does before scoring a path (Guo et al., "Single Path
    One-Shot Neural Architecture Search with Uniform Sampling", arXiv:1904.00420, Sec. 3), makes a
    low-budget child's score its own. torch's `update_bn` does it: reset, cumulative average, restore.
    """

    def __init__(self, batches: int) -> None:
        self.batches = batches

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        loader = trainer.train_dataloader
        if loader is None:
            return
        # update_bn takes each batch's inputs, moves them to the device and restores the module's mode itself
        update_bn(itertools.islice(loader, self.batches), pl_module, pl_module.device)


class ValidationCurve(L.Callback):
    """Records [epoch, validation score] after every validation: the ground truth's rank evolution."""

    def __init__(self, task: Task) -> None:
        self.task = task
        self.points: list[list[float]] = []

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            score, _ = validation_score(self.task, trainer.callback_metrics)
            self.points.append([trainer.current_epoch + 1, score])
