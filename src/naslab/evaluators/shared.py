"""`evaluator=shared`: the weight-sharing supernet of a space and how it scores architectures.

The supernet, its search-time regularisers (dropout, auxiliary head) and its training settings live
here; `naslab.search.shared.SharedWeightSearch` trains it in alternation with a strategy (the
module docstring there has ENAS's recipe and sources). As an evaluator it scores architectures with
the current shared weights on fixed search-valid batches (`evaluate`: the ranking study of
`naslab.studies.ranking`), and on per-record random batches during a search (`score_batches`).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Sequence

import lightning as L
import numpy as np
import torch

from naslab.evaluators.base import Evaluation, Evaluator, G
from naslab.spaces.base import Space, Task
from naslab.train.layout import lay_out_network
from naslab.train.objectives import objective_for

log = logging.getLogger(__name__)
Batch = tuple[torch.Tensor, torch.Tensor]
CHECKPOINT = "shared_search.ckpt"
SCHEDULERS = ("sgdr", "cosine")
# The learning-rate schedule a null `scheduler` / `lr_min` stands for, per task kind. Images: ENAS's
# (melodyguan/enas scripts/cifar10_micro_search.sh --child_lr_cosine --child_lr_min=0.0005). Text: the
# cosine to 0 over the epochs naslab's language-model search has always run (conf/dataset/ptb.yaml's
# `search.shared` names no schedule, and that file is the recipe of its own task).
TASK_SCHEDULES: dict[str, tuple[str, float]] = {"image": ("sgdr", 5e-4), "text": ("cosine", 0.0)}


def valid_batch_seed(seed: int, index: int) -> int:
    """Seed of the search-valid batches that score archive record `index` of a run seeded `seed`."""
    state = np.random.SeedSequence([seed % 2**64, index]).generate_state(1, np.uint64)[0]
    return int(state) >> 1  # torch.Generator.manual_seed takes < 2**63 as is


class SharedEvaluator(Evaluator[G]):
    """`evaluator=shared`: the supernet whose weights score architectures (`naslab.search.shared` trains it).

    The defaults are ENAS's image search (see the module docstring and conf/evaluator/shared.yaml);
    `scheduler` / `lr_min` None take the task's schedule (`TASK_SCHEDULES`). `classifier_dropout` and
    `auxiliary_weight` act on supernets that have them (`search_regularisers`: the micro supernet both,
    the macro supernet dropout only, as ENAS's macro child has no auxiliary head; a language model
    neither, its dropouts are `network`'s). `auxiliary_trained=False` leaves the auxiliary head at its
    initialisation as ENAS does (micro_child.py `_build_train` trains the variables without "aux_head"
    in their name); NAO-WS trains it (renqianluo/NAO NAO-WS/cnn/model_search.py). `valid_batch_size`
    None = the datamodule's default (images: the training batch size, ENAS's; text: the valid stream's
    columns).
    """

    name = "shared"
    search_kind = "shared"  # scores depend on weights that keep training: naslab.search.shared runs it

    def __init__(
        self,
        space: Space[G],
        task: Task,
        datamodule_factory: Callable[..., L.LightningDataModule],
        trainer_factory: Callable[..., L.Trainer],
        seed: int = 0,
        epochs: int = 10,
        batch_size: int = 64,
        channels: int = 16,
        cells_per_stage: int = 1,
        lr: float = 0.05,
        momentum: float = 0.9,
        nesterov: bool = True,
        weight_decay: float = 2e-4,
        grad_clip: float | None = None,
        scheduler: str | None = None,
        lr_min: float | None = None,
        lr_T_0: int = 10,
        lr_T_mul: int = 2,
        auxiliary_weight: float = 0.4,
        auxiliary_trained: bool = False,
        classifier_dropout: float = 0.1,
        train_batches: int | float | None = None,
        strategy_steps: int = 10,
        strategy_batch: int = 1,
        strategy_every: int = 1,
        derive_samples: int = 100,
        valid_batches: int = 1,
        valid_batch_size: int | None = None,
        network: dict[str, Any] | None = None,
        channels_last: bool = True,
    ):
        if valid_batches < 1:
            raise ValueError(f"evaluator.valid_batches must be >= 1, got {valid_batches}")
        if valid_batch_size is not None and valid_batch_size < 1:
            raise ValueError(f"evaluator.valid_batch_size must be >= 1 or null, got {valid_batch_size}")
        if int(lr_T_0) != lr_T_0 or lr_T_0 < 1 or int(lr_T_mul) != lr_T_mul or lr_T_mul < 1:
            raise ValueError(f"evaluator.lr_T_0 and lr_T_mul must be whole numbers >= 1, got {lr_T_0} and {lr_T_mul}")
        if not 0 <= classifier_dropout < 1 or auxiliary_weight < 0:
            raise ValueError(
                f"evaluator.classifier_dropout must be in [0, 1) and evaluator.auxiliary_weight >= 0, "
                f"got {classifier_dropout} and {auxiliary_weight}"
            )
        default_scheduler, default_lr_min = TASK_SCHEDULES.get(task.kind, TASK_SCHEDULES["image"])
        scheduler = scheduler or default_scheduler
        if scheduler not in SCHEDULERS:
            raise ValueError(f"unknown evaluator.scheduler '{scheduler}'; expected one of {SCHEDULERS}")
        self.space, self.task, self.seed, self.epochs = space, task, seed, epochs
        self.datamodule = datamodule_factory(batch_size=batch_size)
        self.trainer_factory = trainer_factory
        self.train_batches = train_batches
        torch.manual_seed(seed)
        self.objective = objective_for(task, channels_last=channels_last)
        self.supernet = space.build_supernet(
            task, channels=channels, cells_per_stage=cells_per_stage, **(network or {})
        )
        lay_out_network(self.supernet, self.objective.memory_format)
        has_aux = self._regularise(classifier_dropout, auxiliary_weight, auxiliary_trained)
        self.hparams = {
            "lr": lr,
            "momentum": momentum,
            "nesterov": nesterov,
            "weight_decay": weight_decay,
            "grad_clip": grad_clip,
            "scheduler": scheduler,
            "lr_min": default_lr_min if lr_min is None else lr_min,
            "lr_T_0": lr_T_0,
            "lr_T_mul": lr_T_mul,
            "auxiliary_weight": auxiliary_weight if has_aux else 0.0,
            # ENAS's l2 reaches every weight at every step; a language model keeps torch's sparse steps
            "step_every_weight": self.objective.kind == "image",
            "strategy_steps": strategy_steps,
            "strategy_batch": strategy_batch,
            "strategy_every": strategy_every,
        }
        self.derive_samples, self.valid_batches, self.valid_batch_size = derive_samples, valid_batches, valid_batch_size

    def _regularise(self, dropout: float, auxiliary_weight: float, auxiliary_trained: bool) -> bool:
        """Sets the supernet's search-time dropout and auxiliary head; True if it has the head."""
        supported = getattr(self.supernet, "search_regularisers", ())
        missing = [
            key
            for key, wanted, name in (
                ("classifier_dropout", dropout > 0, "dropout"),
                ("auxiliary_weight", auxiliary_weight > 0, "auxiliary"),
            )
            if wanted and name not in supported
        ]
        if missing:
            log.info(
                "%s takes no %s: unused", type(self.supernet).__name__, " / ".join(f"evaluator.{k}" for k in missing)
            )
        if "dropout" in supported:
            self.supernet.dropout = dropout
        if auxiliary_weight <= 0 or "auxiliary" not in supported:
            return False
        self.supernet.add_auxiliary_head()
        if not auxiliary_trained:
            self.supernet.auxiliary_head.requires_grad_(False)
        return True

    def score_batches(self, index: int) -> list[Batch]:
        """The search-valid batches that score archive record `index`: random, seeded by (seed, index)."""
        generator = torch.Generator().manual_seed(valid_batch_seed(self.seed, index))
        return self.datamodule.random_valid_batches(self.valid_batches, self.valid_batch_size, generator)

    def _valid(self, n: int) -> list[Batch]:
        self.datamodule.setup()
        batches = []
        for batch in self.datamodule.val_dataloader():
            batches.append(batch)
            if len(batches) == n:
                break
        return batches

    def evaluate(self, genotypes: Sequence[G]) -> list[Evaluation]:
        """Score (accuracy, or 80 / perplexity) of each architecture on the first `valid_batches` valid batches.

        Unlike the search, every architecture reads the same fixed batches, on purpose: the ranking
        study (`naslab.studies.ranking`) compares architectures with each other (Kendall tau against a
        ground truth), and per-architecture random batches would add batch-to-batch noise to every pair.
        """
        return self._score_fixed(genotypes, self.valid_batches)

    def _score_fixed(self, genotypes: Sequence[G], num_batches: int) -> list[Evaluation]:
        batches = self._valid(num_batches)
        out = []
        for g in genotypes:
            start = time.perf_counter()
            score, measured = self.objective.score(self.supernet, g, batches)
            out.append(Evaluation(score, None, None, time.perf_counter() - start, extra=measured))
        return out

    def score_shared(self, genotypes: Sequence[G], num_batches: int) -> list[float]:
        """Scores with the current shared weights on the first `num_batches` search-valid batches (all alike)."""
        return [e.score for e in self._score_fixed(genotypes, num_batches)]
