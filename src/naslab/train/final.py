"""Final training: the searched (or published) genotype trained from scratch, then tested once.

A NaN or infinite training loss stops it (nothing to skip: the network diverged) with one line, a
`TrainingDivergedError`, that names the epoch and the last good checkpoint (the previous epoch's, which
stays; no checkpoint with non-finite weights is ever written, `FiniteCheckpoints`); results.json records
the run as failed with that line. A resume first checks the checkpoint it would continue from
(`check_checkpoint`): a damaged one is refused in one line naming it.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import Logger

from naslab.errors import STORAGE_ERRNOS, RunDirWriteError, TrainingDivergedError
from naslab.loggers import quiet_lightning
from naslab.spaces.base import Space, Task
from naslab.summary import network_size
from naslab.train.modules import test_metrics, training_module
from naslab.train.nonfinite import check_checkpoint, describe_names, nonfinite_tensors

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

    Images: `ClassifierModule`, test accuracy. Text (`space=rnn`): `LanguageModelModule`, validated
    every epoch (its perplexity drives the SGD -> ASGD switch), test perplexity.

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
        **(train_cfg.get("network") or {}),  # a language model's sizes and dropouts
    )
    size = network_size(network, task.input_shape)
    log.info(
        "final network: %s parameters (auxiliary head excluded), %s multiply-adds%s",
        f"{size['params']:,}",
        f"{size['macs']:,}",
        " per token" if task.kind == "text" else "",
    )
    options = dict(train_cfg)
    for key in ("optimizer", "scheduler"):
        options[key] = instantiate(train_cfg[key]) if train_cfg.get(key) else None
    module, trainer_options = training_module(task, network, train_cfg["epochs"], options)
    checkpoints = Path(run_dir) / "checkpoints"
    with quiet_lightning():
        trainer = trainer_factory(
            max_epochs=train_cfg["epochs"],
            logger=logger if logger is not None else False,
            # Saved at the epoch's end, after validation: a checkpoint written at validation end would
            # resume with the epoch counter of the sampler one behind (the windows of the last epoch again).
            # Every epoch: Lightning (2.6) writes `last` only when it saved a top-k checkpoint in that step, so
            # save_top_k=0 would leave last.ckpt to the end of fit and a stop mid-training would lose every
            # epoch. save_top_k=1 without a monitor keeps the latest epoch's file; last.ckpt links to it.
            callbacks=[
                ModelCheckpoint(dirpath=checkpoints, save_last="link", save_top_k=1, save_on_train_epoch_end=True),
                FiniteCheckpoints(),
            ],
            num_sanity_val_steps=0,
            default_root_dir=str(run_dir),
            **trainer_options,
        )
    last = resumable_checkpoint(checkpoints) if resume else None
    ckpt_path = str(last) if last is not None else None
    if last is not None:
        check_checkpoint(
            last.resolve(),
            f"move {checkpoints} away and run resume=true again to train the final network from epoch 0",
        )
        log.info("resuming final training from %s", ckpt_path)
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    except TrainingDivergedError as err:
        raise type(err)(
            f"final training diverged: {err}; {last_good_checkpoint(checkpoints)}; lower train.lr and start a new run"
        ) from err
    except OSError as err:
        if err.errno not in STORAGE_ERRNOS:
            raise
        # Lightning writes a checkpoint to a temporary file of fsspec's (in the temporary dir) and moves it
        # into place: its OSError names no file. Either disk may be the full one; the epoch files before stay.
        reason = f"{err.strerror or err} (Lightning writes it through {tempfile.gettempdir()})"
        raise RunDirWriteError(checkpoints, reason, err.errno) from err
    test = trainer.test(module, datamodule=datamodule, verbose=False)[0]
    return {
        "params": size["params"],
        "macs": size["macs"],
        **test_metrics(task, module, test),
        "wall_seconds": time.perf_counter() - start,
    }


def resumable_checkpoint(checkpoints: Path) -> Path | None:
    """The checkpoint a resumed final training continues from: `last.ckpt` (a link to the latest epoch's
    file), or the newest `epoch=*.ckpt` when a kill came between Lightning removing the previous epoch's
    file and linking the new one (a dangling `last.ckpt`); None when there is none."""
    last = checkpoints / "last.ckpt"
    if last.exists():
        return last
    epochs = sorted(checkpoints.glob("epoch=*.ckpt"), key=lambda p: p.stat().st_mtime)
    return epochs[-1] if epochs else None


def last_good_checkpoint(checkpoints: Path) -> str:
    """What a diverged final training leaves to go back to, for its one-line error."""
    last = resumable_checkpoint(checkpoints)
    if last is None:
        return "no epoch had finished, so no checkpoint was written"
    return f"the last good checkpoint is {last.resolve()}"


class FiniteCheckpoints(L.Callback):
    """Refuses to write a checkpoint whose weights are not finite, so the previous one stays the latest.

    The loss check (`NonFiniteWatch`) catches a diverged loss; this catches weights that a finite loss
    broke (an overflowing gradient), which only the next epoch's loss would show. One pass over the weights
    per checkpoint.
    """

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        bad = nonfinite_tensors(checkpoint["state_dict"])
        if bad:
            raise TrainingDivergedError(
                f"the weights are not finite after epoch {checkpoint.get('epoch')} ({describe_names(bad)}): "
                "that checkpoint was not written"
            )
