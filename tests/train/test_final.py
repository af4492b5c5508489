"""Final training's checkpoints: what a resumed run continues from, what a diverged run keeps, and a damaged
checkpoint refused on resume."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from naslab.errors import CorruptStateError, TrainingDivergedError
from naslab.lifecycle import run_task
from naslab.pipeline import run
from naslab.train.classifier import ClassifierModule
from naslab.train.final import resumable_checkpoint


def test_resume_takes_last_or_the_newest_epoch_when_the_link_dangles(tmp_path: Path) -> None:
    assert resumable_checkpoint(tmp_path) is None  # nothing saved yet: training starts over
    first, second = tmp_path / "epoch=0-step=16.ckpt", tmp_path / "epoch=1-step=32.ckpt"
    first.write_bytes(b"0")
    os.utime(first, (1, 1))
    second.write_bytes(b"1")
    (tmp_path / "last.ckpt").symlink_to(second.name)
    assert resumable_checkpoint(tmp_path) == tmp_path / "last.ckpt"
    second.unlink()  # a kill between Lightning removing a file and linking the next: last.ckpt dangles
    assert resumable_checkpoint(tmp_path) == first


# -- faults: a diverged final training, a damaged checkpoint on resume ------------------------------------
@pytest.fixture
def train_cfg(compose_cfg: Callable[..., DictConfig], tmp_path: Path) -> Callable[..., DictConfig]:
    """train_cfg(*overrides) -> a debug=fast mode=train config of a genotype sampled from the space (2 steps
    an epoch), in tmp_path / "run"."""
    genotype_path = tmp_path / "genotype.json"

    def _cfg(*overrides: str) -> DictConfig:
        cfg = compose_cfg("debug=fast", "mode=train", "train.epochs=2", *overrides)
        if not genotype_path.exists():
            space = instantiate(cfg.space)
            space.save_genotype(space.sample(np.random.default_rng(0)), genotype_path)
        cfg.genotype = str(genotype_path)
        return cfg

    return _cfg


def finite(path: Path) -> dict[str, Any]:
    checkpoint = torch.load(path, weights_only=False)
    assert all(bool(torch.isfinite(v).all()) for v in checkpoint["state_dict"].values() if v.is_floating_point())
    return checkpoint


def test_a_non_finite_loss_stops_final_training_in_one_line_naming_the_last_good_checkpoint(
    train_cfg, tmp_path, monkeypatch, capsys
) -> None:
    """A NaN batch at epoch 1, step 1: the user reads one `error:` line (exit 2) with the epoch, the step and
    epoch 0's checkpoint, which stays loadable; results.json records the run as failed with that line."""
    original = ClassifierModule.training_step

    def poison(self, batch, batch_idx):
        x, y = batch
        if self.current_epoch == 1 and batch_idx == 1:
            x = torch.full_like(x, float("nan"))
        return original(self, (x, y), batch_idx)

    monkeypatch.setattr(ClassifierModule, "training_step", poison)
    cfg = train_cfg()
    with pytest.raises(SystemExit) as exit_:
        run_task(cfg)
    run_dir = tmp_path / "run"
    good = run_dir / "checkpoints" / "epoch=0-step=2.ckpt"
    line = (
        f"final training diverged: training loss is not finite at epoch 1, step 1 (lr={cfg.train.lr}); "
        f"the last good checkpoint is {good}; lower train.lr and start a new run"
    )
    assert exit_.value.code == 2 and capsys.readouterr().err == f"error: {line}\n"
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "failed" and results["error"] == f"NonFiniteLossError: {line}"
    assert finite(good)["epoch"] == 0 and resumable_checkpoint(good.parent) == good.parent / "last.ckpt"


def test_weights_a_finite_loss_broke_are_not_checkpointed(train_cfg, tmp_path, monkeypatch) -> None:
    """An overflow that the loss does not show yet: epoch 1's checkpoint is refused, epoch 0's stays the last."""

    def break_weights(module: ClassifierModule) -> None:
        if module.current_epoch == 1:
            with torch.no_grad():
                next(module.network.parameters()).fill_(float("inf"))

    monkeypatch.setattr(ClassifierModule, "on_train_epoch_end", break_weights)
    with pytest.raises(TrainingDivergedError) as err:
        run(train_cfg())
    good = tmp_path / "run" / "checkpoints" / "epoch=0-step=2.ckpt"
    assert str(err.value).startswith("final training diverged: the weights are not finite after epoch 1 (network.")
    assert str(err.value).endswith(
        f"): that checkpoint was not written; the last good checkpoint is {good}; lower train.lr and start a new run"
    )
    assert finite(good)["epoch"] == 0
    assert sorted(p.name for p in good.parent.iterdir()) == ["epoch=0-step=2.ckpt", "last.ckpt"]


def test_a_damaged_checkpoint_is_refused_on_resume_in_one_line_naming_the_file(train_cfg, tmp_path) -> None:
    run(train_cfg("train.epochs=1"))
    checkpoints = tmp_path / "run" / "checkpoints"
    damaged = checkpoints / "epoch=0-step=2.ckpt"
    damaged.write_bytes(damaged.read_bytes()[:1000])
    with pytest.raises(CorruptStateError) as err:
        run(train_cfg("train.epochs=1", "resume=true"))
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{damaged} is unreadable (")
    assert message.endswith(
        f"; move {checkpoints} away and run resume=true again to train the final network from epoch 0"
    )
    assert len(damaged.read_bytes()) == 1000  # refused, not replaced


def test_a_full_disk_while_checkpointing_final_training_is_one_line_and_the_resume_continues(
    train_cfg, tmp_path, monkeypatch, capsys
) -> None:
    """Lightning's checkpoint write fails with ENOSPC (and no file name) at epoch 1: one `error:` line naming the
    checkpoints dir, the cause and the resume command; epoch 0's checkpoint stays, and the resume finishes."""
    from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

    original = TorchCheckpointIO.save_checkpoint

    def full_at_epoch_1(self, checkpoint, path, storage_options=None) -> None:
        if checkpoint["epoch"] == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        original(self, checkpoint, path, storage_options)

    monkeypatch.setattr(TorchCheckpointIO, "save_checkpoint", full_at_epoch_1)
    with pytest.raises(SystemExit) as exit_:
        run_task(train_cfg())
    run_dir = tmp_path / "run"
    checkpoints = run_dir / "checkpoints"
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1, err
    assert err.startswith(f"error: cannot write {checkpoints}: No space left on device (Lightning writes it through ")
    assert err.endswith(
        f"free space on the disk of {run_dir} and continue with: python run.py hydra.run.dir={run_dir} resume=true\n"
    )
    assert json.loads((run_dir / "results.json").read_text())["status"] == "failed"
    assert resumable_checkpoint(checkpoints).resolve().name == "epoch=0-step=2.ckpt"
    monkeypatch.setattr(TorchCheckpointIO, "save_checkpoint", original)
    resumed = run(train_cfg("resume=true"))
    assert resumed["status"] == "finished" and resumed["final"]["test_accuracy"] is not None
