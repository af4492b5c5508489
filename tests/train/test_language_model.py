"""Language-model training: truncated BPTT, per-window learning rate, SGD -> ASGD, final training and resume."""

from __future__ import annotations

import json

import lightning as L
import numpy as np
import pytest
import torch

from naslab.data.text import PTBDataModule
from naslab.pipeline import run
from naslab.spaces.base import Task
from naslab.spaces.rnn.space import RNNSpace
from naslab.train.language_model import LanguageModelModule, stalled
from naslab.train.objectives import evaluate_perplexity
from tests.fake_data import write_text_corpus


def test_asgd_trigger_is_awd_lstms_non_monotone_rule() -> None:
    assert not stalled([5.0, 4.0, 3.0], 3.5, nonmono=5)  # too few epochs to judge
    assert not stalled([5.0, 4.0, 3.0], 3.5, nonmono=2)  # better than 5.0, the best before the last 2
    assert stalled([3.0, 4.0, 3.5], 3.2, nonmono=2)  # worse than the best of all but the last 2 (3.0)
    assert stalled([3.0], 3.1, nonmono=0) and not stalled([3.0], 2.9, nonmono=0)


def fit(tmp_path, epochs: int, **module_options) -> tuple[LanguageModelModule, L.Trainer]:
    write_text_corpus(tmp_path, "ptb", train_lines=200)
    data = PTBDataModule(str(tmp_path), batch_size=4, eval_batch_size=2, bptt=8, phase="final", seed=0)
    data.setup()
    space = RNNSpace(2, output="all")
    L.seed_everything(0, verbose=False)
    net = space.build_child(space.from_tokens([0, 0, 1, 1]), Task(data.vocab_size, (), "text", "text"), emb_size=16)
    module = LanguageModelModule(net, lr=20.0, bptt=8, epochs=epochs, **module_options)
    trainer = quiet_trainer(epochs)
    trainer.fit(module, datamodule=data)
    return module, trainer


def quiet_trainer(epochs: int) -> L.Trainer:
    return L.Trainer(
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        accelerator="cpu",
    )


def test_training_lowers_validation_perplexity_and_records_every_epoch(tmp_path) -> None:
    module, trainer = fit(tmp_path, epochs=3, asgd=False)
    losses = module.val_losses
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert float(trainer.callback_metrics["val/ppl"]) == pytest.approx(np.exp(losses[-1]), rel=1e-5)
    assert module.objective.hidden["train"].shape == (4, 16)  # carried from window to window


def test_learning_rate_scales_with_window_length_and_is_restored(tmp_path, monkeypatch) -> None:
    seen: list[float] = []
    original = torch.optim.SGD.step

    def spy(self, closure=None):
        seen.append(self.param_groups[0]["lr"])
        return original(self, closure)

    monkeypatch.setattr(torch.optim.SGD, "step", spy)
    module, _ = fit(tmp_path, epochs=1, asgd=False)
    assert len(seen) > 3 and len(set(seen)) > 1  # variable-length windows: lr * length / bptt
    assert all(0 < lr <= 20.0 * (8 + 20) / 8 for lr in seen)
    assert module.optimizers()[0].param_groups[0]["lr"] == 20.0


def test_after_the_switch_evaluation_swaps_in_asgds_running_average_and_restores(tmp_path) -> None:
    module, trainer = fit(tmp_path, epochs=1, asgd=False)
    assert module.averaged_state() is None  # before the switch: the weights themselves
    module.asgd_active = True
    batch = next(iter(trainer.datamodule.train_dataloader()))
    for _ in range(3):  # ASGD (t0 = 0) copies the weights for two steps, then averages
        module.asgd.zero_grad()
        module.objective.loss(module.network, batch, stream="probe").loss.backward()
        module.asgd.step()
    first_name, first = next(iter(module.network.named_parameters()))
    averaged = module.averaged_state()
    assert torch.equal(averaged[first_name], module.asgd.state[first]["ax"])
    assert not torch.equal(averaged[first_name], first)
    before = first.detach().clone()
    with module.swapped_in(averaged):
        assert torch.equal(first, module.asgd.state[first]["ax"])
    assert torch.equal(first, before)


def test_the_best_validation_epoch_is_what_gets_tested(tmp_path) -> None:
    module, trainer = fit(tmp_path, epochs=3, asgd=False)
    best = int(np.argmin(module.val_losses))
    assert module.best_valid_perplexity() == pytest.approx(np.exp(module.val_losses[best]))
    tested = trainer.test(module, datamodule=trainer.datamodule, verbose=False)[0]["test/ppl"]
    with module.swapped_in(module.best_state):
        expected = evaluate_perplexity(module.network, list(trainer.datamodule.test_dataloader()))
    assert tested == pytest.approx(expected, rel=1e-5)
    with module.swapped_in(None):  # the last epoch's weights differ from the best one's unless it was the best
        last = evaluate_perplexity(module.network, list(trainer.datamodule.test_dataloader()))
    assert (last == pytest.approx(expected, rel=1e-5)) == (best == len(module.val_losses) - 1)


def test_final_training_on_text_resumes_exactly(compose_cfg, tmp_path) -> None:
    data_dir = tmp_path / "data"
    write_text_corpus(data_dir, "ptb")
    common = ("mode=train", "dataset=ptb", "space=rnn_darts", "genotype=darts_ptb", "debug=fast")
    common += (f"paths.data_dir={data_dir}", "trainer.limit_train_batches=3", "trainer.limit_val_batches=3")
    straight = run(compose_cfg(*common, "train.epochs=2", run_dir=tmp_path / "straight"))
    run(compose_cfg(*common, "train.epochs=1", run_dir=tmp_path / "resumed"))
    resumed = run(compose_cfg(*common, "train.epochs=2", "resume=true", run_dir=tmp_path / "resumed"))
    assert resumed["final"]["test_perplexity"] == pytest.approx(straight["final"]["test_perplexity"], rel=1e-6)
    assert straight["final"]["params"] == resumed["final"]["params"] and straight["final"]["test_accuracy"] is None
    assert resumed["final"]["valid_perplexity"] == pytest.approx(straight["final"]["valid_perplexity"], rel=1e-6)
    written = json.loads((tmp_path / "straight" / "results.json").read_text())
    assert written["final"]["test_perplexity"] == straight["final"]["test_perplexity"]


def test_variable_length_epochs_are_validated_once_at_their_end(tmp_path) -> None:
    """Window counts differ per epoch (56, 63, 62, ... here): validation must still come once, after the last."""
    seen: list[tuple[int, int]] = []

    class Recording(LanguageModelModule):
        def training_step(self, batch, batch_idx):
            seen.append((self.current_epoch, batch_idx))
            return super().training_step(batch, batch_idx)

        def on_validation_epoch_start(self) -> None:
            seen.append((self.current_epoch, -1))  # -1 marks a validation
            super().on_validation_epoch_start()

    write_text_corpus(tmp_path, "ptb", train_lines=200)
    data = PTBDataModule(str(tmp_path), batch_size=4, eval_batch_size=2, bptt=8, phase="final", seed=0)
    space = RNNSpace(2, output="all")
    net = space.build_child(space.from_tokens([0, 0, 1, 1]), Task(41, (), "text", "text"), emb_size=8)
    module = Recording(net, lr=20.0, bptt=8, epochs=4, asgd=False)
    trainer = quiet_trainer(4)
    trainer.fit(module, datamodule=data)
    for epoch in range(4):
        steps = [b for e, b in seen if e == epoch]
        assert steps.count(-1) == 1 and steps[-1] == -1, f"epoch {epoch}: validation not once at the end"
    counts = [sum(1 for e, b in seen if e == epoch and b >= 0) for epoch in range(4)]
    assert len(set(counts)) > 1  # the epochs really had different numbers of windows
    assert len(module.val_losses) == 4
