"""`strategy=darts`: differentiable architecture search.

"DARTS: Differentiable Architecture Search", Hanxiao Liu, Karen Simonyan, Yiming Yang,
arXiv:1806.09055; the defaults follow the authors' code, quark0/darts (docs/methods/darts.md lists
every setting with its source and every remaining deviation).

DARTS proposes no genotypes to an evaluator: it relaxes the space (`Relaxable.build_mixed_supernet`)
and optimises weights and architecture parameters in alternation (`DartsSearchModule`, first or
second order). This class holds the method's settings and builds that module; the gradient search
(`naslab.search.gradient.GradientSearch`) trains it and, after every epoch,

* derives the discrete genotype (`Relaxable.derive`: per node the two strongest edges by their
  strongest non-`none` op) and archives it with the supernet's validation accuracy,
* draws the alpha heatmaps (softmax per edge) into `<run dir>/darts/` and W&B,
* writes a checkpoint (supernet, alphas, optimisers, scheduler, RNG), so `resume=true` continues
  a killed search at the last finished epoch and keeps every derivation made so far.

The search's genotype is the last epoch's derivation, as in the paper (`select=best` takes the
one derived when the supernet's validation accuracy was highest). Nothing here is CNN-specific:
any `Relaxable` space (the micro cells and the recurrent cell) is searched the same way.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from naslab.spaces.base import Relaxable, Space, Task
from naslab.strategies.darts.module import VIRTUAL_STEPS, DartsSearchModule
from naslab.train.objectives import objective_for

# strategy.precision -> the search Trainer's precision. bf16 needs no loss scaling; the finite-difference
# Hessian-vector product of order 2 runs in float32 inside it (DartsSearchModule).
DARTS_PRECISIONS = {"32-true": "32-true", "32": "32-true", "bf16-mixed": "bf16-mixed", "16-mixed": "32-true"}


class DartsStrategy:
    """Hydra target of `strategy=darts`; defaults are quark0/darts cnn/train_search.py's CIFAR-10 search.

    Not an ask/tell `Strategy`: it runs only in the gradient search (`search_kinds`), on a space with the
    `Relaxable` capability (checked here, when the run is built, before any data is read).
    """

    name = "darts"
    search_kinds: tuple[str, ...] = ("gradient",)

    @classmethod
    def check_search(cls, kind: str, settings: Mapping[str, Any]) -> str | None:
        """DARTS searches by gradient with its own supernet; it has no other search (see strategies.base)."""
        return None if kind == "gradient" else f"strategy {cls.name} runs only in the gradient search"

    def __init__(
        self,
        space: Space[Any],
        seed: int = 0,
        order: int = 1,
        epochs: int = 50,
        batch_size: int = 64,
        valid_fraction: float = 0.5,
        channels: int = 16,
        cells_per_stage: int = 2,
        stem_multiplier: int = 3,
        w_lr: float = 0.025,
        w_lr_min: float = 0.001,
        momentum: float = 0.9,
        weight_decay: float = 3e-4,
        grad_clip: float = 5.0,
        alpha_lr: float = 3e-4,
        alpha_betas: Sequence[float] = (0.5, 0.999),
        alpha_weight_decay: float = 1e-3,
        alpha_init: float = 1e-3,
        xi: float | None = None,
        fd_r: float = 0.01,
        virtual_step: str = "code",
        window_std: float | None = None,
        train_batches: int | float | None = None,
        eval_batches: int | None = None,
        select: str = "last",
        network: dict[str, Any] | None = None,
        channels_last: bool = True,
        precision: str = "32-true",
    ):
        if not isinstance(space, Relaxable):
            raise ValueError(f"space '{space.name}' has no mixed-op supernet, so strategy=darts cannot search it")
        self.space = space
        if str(precision) not in DARTS_PRECISIONS:
            raise ValueError(f"strategy.precision must be one of {', '.join(DARTS_PRECISIONS)}, got '{precision}'")
        # fp16 needs loss scaling, which the alpha gradients (torch.autograd.grad) would not get: float32 then.
        self.precision = DARTS_PRECISIONS[str(precision)]
        if order not in (1, 2):
            raise ValueError(f"strategy.order must be 1 or 2, got {order}")
        if select not in ("last", "best"):
            raise ValueError(f"strategy.select must be 'last' (the paper) or 'best', got '{select}'")
        if epochs < 1:
            raise ValueError(f"strategy.epochs must be >= 1, got {epochs}")
        if virtual_step not in VIRTUAL_STEPS:
            raise ValueError(
                f"strategy.virtual_step must be 'code' (the authors' code) or 'paper', got '{virtual_step}'"
            )
        self.seed, self.order, self.epochs, self.select = seed, order, epochs, select
        self.batch_size, self.valid_fraction = batch_size, valid_fraction
        # Cell-space sizes; `network` adds a language model's (emb_size, hidden_size, dropouts).
        self.network = {"channels": channels, "cells_per_stage": cells_per_stage, "stem_multiplier": stem_multiplier}
        self.network.update(network or {})
        self.module_args: dict[str, Any] = {
            "order": order,
            "epochs": epochs,
            "w_lr": w_lr,
            "w_lr_min": w_lr_min,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "grad_clip": grad_clip,
            "alpha_lr": alpha_lr,
            "alpha_betas": tuple(alpha_betas),
            "alpha_weight_decay": alpha_weight_decay,
            "alpha_init": alpha_init,
            "xi": xi,
            "fd_r": fd_r,
            "virtual_step": virtual_step,
        }
        self.train_batches, self.eval_batches = train_batches, eval_batches
        self.channels_last = channels_last  # images: NHWC supernet and batches (naslab.train.layout)
        if window_std is not None and window_std < 0:
            raise ValueError(f"strategy.window_std must be >= 0 or null, got {window_std}")
        # Language models: the spread of the training windows' lengths (null: the datamodule's, AWD-LSTM's 5).
        self.window_std = window_std

    def build_module(self, task: Task, bptt: int | None = None) -> DartsSearchModule:
        """The supernet and its alphas, initialised from the seed; `bptt` scales a language model's lr."""
        torch.manual_seed(self.seed)
        supernet = self.space.build_mixed_supernet(task, **self.network)
        objective = objective_for(task, channels_last=self.channels_last)
        return DartsSearchModule(supernet, objective=objective, bptt=bptt, **self.module_args)
