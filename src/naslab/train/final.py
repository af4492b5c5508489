"""Final training: the searched (or published) genotype trained from scratch, then tested once."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import Logger

from naslab.loggers import quiet_lightning
from naslab.spaces.base import Space, Task
from naslab.summary import network_size
from naslab.train.classifier import ClassifierModule

log = logging.getLogger(__name__)


def train_final(
    space: Space[Any],
    genotype: Any,
    task: Task,
    datamodule: L.LightningDataModule,
    trainer_factory: Callable[..., L.Trainer],
    run_dir: Path,
    train_cfg: dict[str, Any],
    logger: Logger | None = None,
    seed: int = 0,
    resume: bool = False,
) -> dict[str, Any]:
    """Trains on the whole train split, tests on the test split; returns results.json's `final`.

    `resume=true` continues from the run dir's last checkpoint when there is one.
    """
    L.seed_everything(seed, workers=True, verbose=False)
    start = time.perf_counter()
    network = space.build_child(
        genotype,
        task,
        channels=train_cfg["channels"],
        cells_per_stage=train_cfg["cells_per_stage"],
        auxiliary=train_cfg["auxiliary_weight"] > 0,
    )
    size = network_size(network, task.input_shape)
    log.info(
        "final network: %s parameters (auxiliary head excluded), %s multiply-adds",
        f"{size['params']:,}",
        f"{size['macs']:,}",
    )
    module = ClassifierModule(
        network,
        task.num_classes,
        optimizer=instantiate(train_cfg["optimizer"]) if train_cfg.get("optimizer") else None,
        scheduler=instantiate(train_cfg["scheduler"]) if train_cfg.get("scheduler") else None,
        label_smoothing=train_cfg.get("label_smoothing", 0.0),
        lr=train_cfg["lr"],
        momentum=train_cfg["momentum"],
        weight_decay=train_cfg["weight_decay"],
        epochs=train_cfg["epochs"],
        auxiliary_weight=train_cfg["auxiliary_weight"],
        drop_path_prob=train_cfg["drop_path_prob"],
        channels_last=train_cfg.get("channels_last", False),
    )
    checkpoints = Path(run_dir) / "checkpoints"
    with quiet_lightning():
        trainer = trainer_factory(
            max_epochs=train_cfg["epochs"],
            logger=logger if logger is not None else False,
            callbacks=[ModelCheckpoint(dirpath=checkpoints, save_last=True, save_top_k=0)],
            gradient_clip_val=train_cfg["grad_clip"],
            num_sanity_val_steps=0,
            default_root_dir=str(run_dir),
        )
    last = checkpoints / "last.ckpt"
    ckpt_path = str(last) if resume and last.exists() else None
    if ckpt_path:
        log.info("resuming final training from %s", ckpt_path)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    test = trainer.test(module, datamodule=datamodule, verbose=False)[0]
    return {
        "params": size["params"],
        "macs": size["macs"],
        "test_accuracy": float(test["test/acc"]),
        "test_perplexity": None,
        "wall_seconds": time.perf_counter() - start,
    }
