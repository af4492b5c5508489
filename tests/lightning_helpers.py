"""A quiet CPU Lightning Trainer for the tests' own small fits (no logger, checkpoints, bar or summary)."""

from __future__ import annotations

from typing import Any

import lightning as L


def quiet_trainer(**options: Any) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **options,
    )
