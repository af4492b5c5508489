"""The NASES autoencoder stage (the NASES paper Sec. 4.1): shapes, ranges, best weights, growing batches, the table."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
from torch import nn

from naslab.spaces.nases.space import NASESSpace
from naslab.strategies.nases.autoencoder import (
    COLUMNS,
    PAPER_TABLE1,
    ArchitectureAutoencoder,
    BatchSchedule,
    compression_table,
    linear_bound,
    load_pretrained,
    midpoint_loss,
    plot_compression,
    pretrain,
    reconstruction_loss,
    save_pretrained,
    uniform_architectures,
    write_table,
)

TINY = {"hidden": (16,), "lr": 1e-2, "train_size": 256, "test_size": 128}


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def linears(net: nn.Sequential) -> list[tuple[int, int]]:
    return [(m.in_features, m.out_features) for m in net if isinstance(m, nn.Linear)]


def test_paper_networks_shapes_activations_and_ranges() -> None:
    torch.manual_seed(0)
    model = ArchitectureAutoencoder(embedding=20)  # the paper's 1000-500-100, both ways
    assert linears(model.simulator) == [(60, 1000), (1000, 500), (500, 100), (100, 20)]
    assert linears(model.decoder) == [(20, 100), (100, 500), (500, 1000), (1000, 60)]
    acts = [type(m) for m in model.simulator if isinstance(m, (nn.ReLU, nn.Tanh, nn.Sigmoid))]
    assert acts == [nn.ReLU, nn.Tanh, nn.Tanh, nn.Sigmoid]
    x = torch.cat([torch.zeros(1, 60), torch.full((1, 60), 30.0), uniform_architectures(6, 0)])
    z = model.encode(x)
    assert z.shape == (8, 20) and bool(((z > 0) & (z < 1)).all())
    out = model(x)
    assert out.shape == (8, 60) and bool(((out >= 0) & (out <= 30)).all())
    extreme = model.decode(torch.tensor([[-1e4] * 20, [1e4] * 20, [0.5] * 20]))  # beyond (0, 1) as well
    assert bool(((extreme >= 0) & (extreme <= 30)).all())
    same_order = ArchitectureAutoencoder(embedding=5, hidden=(40, 30), decoder_hidden=(40, 30))
    assert linears(same_order.decoder) == [(5, 40), (40, 30), (30, 60)]
    with pytest.raises(ValueError, match="embedding"):
        ArchitectureAutoencoder(embedding=0)


def test_one_gradient_step_reaches_every_layer() -> None:
    torch.manual_seed(1)
    model = ArchitectureAutoencoder(embedding=4, hidden=(24, 12, 8))
    before = {k: v.clone() for k, v in model.named_parameters()}
    optimizer = model.configure_optimizers()
    x = uniform_architectures(32, 1)
    loss = (model(x) - x).pow(2).mean()
    loss.backward()
    assert len(before) == 2 * 8  # 4 linear layers each way, weight + bias
    for name, p in model.named_parameters():
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, name
    optimizer.step()
    for name, p in model.named_parameters():
        assert not torch.equal(p, before[name]), name


def test_loss_scale_reading_matches_table1() -> None:
    # Predicting the average 15 is the paper's upper bound: per-value MSE on raw values gives 75,
    # just above Table 1's embedding-1 row; every paper row is under 75 and near the linear bound.
    assert midpoint_loss() == 75.0
    data = uniform_architectures(20_000, 3)
    assert float((data - 15.0).pow(2).mean()) == pytest.approx(75.0, rel=0.01)
    assert linear_bound(1) == pytest.approx(73.75) and linear_bound(60) == 0.0
    for size, (ratio, train, test) in PAPER_TABLE1.items():
        assert ratio == pytest.approx(size / 60, abs=0.006)
        assert train < test < midpoint_loss()
        assert linear_bound(size) - 6 < test < linear_bound(size) + 2.3  # 1.2 to 5.4 under; 60: 2.23 over 0


def test_uniform_vectors_are_the_nases_space_samples() -> None:
    space = NASESSpace()
    rng = np.random.default_rng(7)
    expected = torch.tensor([space.sample(rng).values for _ in range(5)], dtype=torch.float32)
    data = uniform_architectures(5, 7, origin=space.num_values, low=space.low, high=space.high)
    assert torch.equal(data, expected)
    assert not torch.equal(uniform_architectures(5, 8), data)


class Corrupt(L.Callback):
    """Wrecks the decoder just before epoch `epoch` is scored (outputs pinned at 30) and records each epoch's state."""

    def __init__(self, epoch: int):
        self.epoch = epoch
        self.states: dict[int, dict[str, torch.Tensor]] = {}

    def on_validation_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        if trainer.current_epoch == self.epoch:
            with torch.no_grad():
                pl_module.decoder[-3].bias.fill_(50.0)  # last Linear before sigmoid and scaling

    def on_validation_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        self.states[trainer.current_epoch] = {k: v.clone() for k, v in pl_module.state_dict().items()}


def test_the_best_test_loss_weights_are_kept() -> None:
    corrupt = Corrupt(epoch=2)
    model, metrics = pretrain(3, epochs=3, batch_schedule=BatchSchedule(32), seed=0, callbacks=[corrupt], **TINY)
    losses = [h["test_loss"] for h in metrics["history"]]
    assert [h["epoch"] for h in metrics["history"]] == [0, 1, 2]
    assert losses[2] > 150  # the wrecked epoch is far worse than predicting 15
    best = metrics["best_epoch"]
    assert best in (0, 1) and losses[best] == min(losses)
    kept = model.state_dict()
    assert all(torch.equal(kept[k], v) for k, v in corrupt.states[best].items())
    assert not all(torch.equal(kept[k], v) for k, v in corrupt.states[2].items())
    assert metrics["test_loss"] == pytest.approx(losses[best], rel=1e-6)
    test = uniform_architectures(TINY["test_size"], [0, 1])
    assert reconstruction_loss(model, test) == pytest.approx(metrics["test_loss"], rel=1e-9)


class BatchSizes(L.Callback):
    def __init__(self) -> None:
        self.sizes: dict[int, list[int]] = {}

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: Any, batch: Any, batch_idx: int) -> None:
        self.sizes.setdefault(trainer.current_epoch, []).append(len(batch[0]))


def test_batch_size_grows_over_epochs() -> None:
    schedule = BatchSchedule(start=8, factor=2, every=2, maximum=32)
    assert [schedule.at(e) for e in range(7)] == [8, 8, 16, 16, 32, 32, 32]
    with pytest.raises(ValueError):
        BatchSchedule(start=64, maximum=32)
    seen = BatchSizes()
    _, metrics = pretrain(2, epochs=5, batch_schedule=schedule, seed=0, callbacks=[seen], **{**TINY, "train_size": 64})
    assert metrics["batch_sizes"] == [8, 8, 16, 16, 32]
    assert [len(seen.sizes[e]) for e in range(5)] == [8, 8, 4, 4, 2]
    assert [max(seen.sizes[e]) for e in range(5)] == [8, 8, 16, 16, 32]


def test_loss_falls_as_the_embedding_grows() -> None:
    # No hidden layer: nearly a linear autoencoder, which learns in seconds; the bounds are 73.75, 37.5, 0.
    options = {"train_size": 2000, "test_size": 500, "epochs": 15, "lr": 1e-2, "hidden": ()}
    rows = compression_table([1, 30, 60], batch_schedule=BatchSchedule(32, 2, 5, 256), seed=0, **options)
    test = [r["test_loss"] for r in rows]
    assert test[0] > test[1] > test[2]
    assert 70 < test[0] < 76 and test[2] < 0.5 * test[1]
    assert all(r["train_loss"] < midpoint_loss() for r in rows)


def test_seeded_runs_repeat_and_leave_the_callers_rng_alone() -> None:
    state = torch.get_rng_state()
    a, ma = pretrain(3, epochs=2, seed=5, **TINY)
    assert torch.equal(torch.get_rng_state(), state)
    b, mb = pretrain(3, epochs=2, seed=5, **TINY)
    c, mc = pretrain(3, epochs=2, seed=6, **TINY)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert ma["test_loss"] == mb["test_loss"] and ma["history"] == mb["history"]
    assert not torch.equal(a.simulator[1].weight, c.simulator[1].weight)
    assert ma["test_loss"] != mc["test_loss"]


def test_table_markdown_csv_and_plot(tmp_path: Path) -> None:
    rows = compression_table([1, 2], epochs=1, seed=0, **TINY)
    assert [r["embedding"] for r in rows] == [1, 2]
    assert set(rows[0]) == set(COLUMNS)
    assert rows[0]["compression_ratio"] == pytest.approx(1 / 60, abs=1e-4)
    assert rows[0]["paper_test_loss"] == 72.58 and rows[1]["paper_test_loss"] is None
    md, table = write_table(rows, tmp_path / "out")
    text = md.read_text()
    assert "| embedding | compression ratio | train loss | test loss | paper train | paper test" in text
    assert "| 72.58 |" in text and f"| {rows[0]['test_loss']:.2f} |" in text
    with table.open() as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames or ()) == COLUMNS
        read = list(reader)
    assert [int(r["embedding"]) for r in read] == [1, 2]
    assert float(read[0]["test_loss"]) == pytest.approx(rows[0]["test_loss"])
    assert read[0]["paper_train_loss"] == "71.78" and read[1]["paper_train_loss"] == ""
    png = plot_compression(rows, tmp_path / "out" / "compression.png")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    model, metrics = pretrain(4, epochs=1, seed=2, decoder_hidden=(16, 8), **TINY)
    path = save_pretrained(model, tmp_path / "ckpt" / "nases_ae.pt", metrics)
    loaded, saved = load_pretrained(path)
    assert dict(loaded.hparams) == dict(model.hparams)
    assert linears(loaded.decoder) == [(4, 16), (16, 8), (8, 60)]
    assert saved["test_loss"] == metrics["test_loss"] and saved["best_epoch"] == metrics["best_epoch"]
    x = uniform_architectures(16, 9)
    model.eval(), loaded.eval()
    assert torch.equal(loaded.encode(x), model.encode(x)) and torch.equal(loaded(x), model(x))
