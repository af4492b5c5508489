"""Training a strategy's own model (NAO's encoder-predictor-decoder, EPNAS's surrogate) with a Lightning Trainer.

Strategies train their models many times during a search, so the Trainer is quiet (no logger, bar,
summary or checkpoints) and runs on its own torch RNG stream seeded by `seed`: the same data gives the
same model whatever ran before (e.g. after a resume), and the search's own random streams are left as
they were.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import lightning as L
import torch

from naslab.loggers import quiet_lightning


@contextmanager
def own_torch_rng(seed: int) -> Iterator[None]:
    """Runs the block on a torch RNG seeded with `seed`, restoring the caller's torch RNG afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def train_own_model(
    model: L.LightningModule,
    loader: Any,
    epochs: int,
    seed: int,
    accelerator: str = "cpu",
    **trainer_options: Any,
) -> dict[str, float]:
    """Fits `model` on `loader` for `epochs` epochs (model left on the CPU); returns the last metrics."""
    with own_torch_rng(seed), quiet_lightning():
        trainer = L.Trainer(
            max_epochs=epochs,
            accelerator=accelerator,
            devices=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            **trainer_options,
        )
        trainer.fit(model, loader)
    model.cpu()
    return {k: float(v) for k, v in trainer.callback_metrics.items()}
