"""NASES first stage: the architecture simulator (encoder) and decoder, pretrained as one autoencoder.

Liu, "Neural Architecture Search in Embedding Space", Sec. 3.2.1 and Sec. 4.1: before the
search, an autoencoder is trained on vectors drawn uniformly from the architecture box [0, 30]^60
(15 layers x 4 numbers, `NASESSpace`); its encoder is the *architecture simulator*, whose weights
initialise the controller, and its decoder maps an architecture-embedding back to the 60 numbers
that the child network decodes. Table 1 / Appendix B Fig. 3 measure how much is lost at each
embedding size; the paper picks 20 (compression ratio 0.33).

What the paper fixes, and what is chosen here:

* Networks (Sec. 4.1.2): "three fully connected layers with the number units of 1000, 500, and
  100 ... the first layer exhibited the ReLU activation function, and the second and third layers
  exhibited the tanh", a sigmoid on the embedding ("the middle layer"). Here `hidden=(1000, 500,
  100)`: simulator 60 -> 1000 (ReLU) -> 500 (tanh) -> 100 (tanh) -> embedding (sigmoid). The paper
  says the decoder "exhibited the same neural architecture"; by default it mirrors the simulator,
  embedding -> 100 -> 500 -> 1000 -> 60, with the same activations by position (first hidden layer
  ReLU, the others tanh); `decoder_hidden=(1000, 500, 100)` gives the literal same-order reading.
  Choices: the simulator divides its input by the box width (values in [0, 1] reach the first
  layer; the raw scale would only slow Adam's start) and the decoder's output is
  low + (high - low) * sigmoid(.), so every reconstruction lies in [0, 30] and decodes.
* Loss (Sec. 4.1.2, "a least square error"): the mean over the 60 values of the squared error on
  the raw [0, 30] scale (MSE, as Keras' `mean_squared_error`). Reading checked against Table 1: with
  values iid uniform on [0, 30], predicting the average 15 everywhere (the paper's stated upper
  bound) costs E(v - 15)^2 = 30^2 / 12 = 75 under this reading, 60 * 75 = 4500 as a sum of squares
  per vector, 1 / 12 = 0.083 on [0, 1]-scaled values and 8.66 as an RMSE. Table 1's embedding-1 row
  (71.78 / 72.58) sits just under 75, and every test loss but the last sits 1.2 to 5.4 units under
  the best any *linear* autoencoder can do, 75 * (60 - k) / 60 (the covariance is 75 I, so k linear
  directions keep k of 60 equal shares: 73.75, 68.75, 62.5, 50, 37.5, 25, 12.5, 0 for k = 1 ... 60
  against the paper's 72.58, 63.37, 57.52, 46.15, 34.77, 22.66, 10.76, 2.23; a nonlinear decoder may
  beat the linear bound). Only the per-value MSE on raw values fits.
* Data (Sec. 4.1.1): 300000 training and 100000 test vectors, uniform on [0, 30]; drawn here with
  numpy from seeded streams (`uniform_architectures`), row by row the same numbers as
  `NASESSpace.sample` on that stream.
* Optimiser (Sec. 4.1.2): Adam, lr 1e-5, "increased the batch size instead of decaying the learning
  rate (Smith et al., 2018)", and the weights "with the lowest test loss" are kept. The paper gives
  no schedule; `BatchSchedule` multiplies the batch size by `factor` every `every` epochs up to
  `maximum` (default 64 doubling every 5 epochs up to 4096: Smith et al. replace each decay of the
  rate by a factor with a growth of the batch by the same factor). The test set is scored after
  every epoch and the best state dict is copied (`KeepBestTestLoss`); `pretrain` returns the
  autoencoder holding it. Reported losses are those weights' MSE over the whole training and test
  sets (the paper does not say whether its training loss is the running epoch mean; the running
  means are in `history`).

One Lightning Trainer per `pretrain` (`train_own_model`: quiet, own seeded torch RNG stream), with
the training loader rebuilt each epoch at the scheduled batch size. `save_pretrained` /
`load_pretrained` keep hyperparameters, weights and metrics in one file, from which a NASES strategy
copies `simulator` (the controller's initial weights) and `decoder`.
"""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import lightning as L
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from naslab.strategies.own_model import one_thread, own_torch_rng, train_own_model

__all__ = [
    "ArchitectureAutoencoder",
    "BatchSchedule",
    "KeepBestTestLoss",
    "PAPER_TABLE1",
    "compression_table",
    "linear_bound",
    "load_pretrained",
    "midpoint_loss",
    "plot_compression",
    "pretrain",
    "reconstruction_loss",
    "save_pretrained",
    "uniform_architectures",
    "write_table",
]

ORIGIN_SIZE = 60  # 15 layers x 4 numbers (NASESSpace(num_layers=15).num_values)
LOW, HIGH = 0.0, 30.0

# Liu's NASES paper Table 1: embedding size -> (compression ratio, training loss, testing loss)
PAPER_TABLE1: dict[int, tuple[float, float, float]] = {
    1: (0.02, 71.78, 72.58),
    5: (0.08, 59.82, 63.37),
    10: (0.17, 53.38, 57.52),
    20: (0.33, 40.79, 46.15),
    30: (0.5, 30.53, 34.77),
    40: (0.67, 19.14, 22.66),
    50: (0.83, 7.54, 10.76),
    60: (1.0, 1.74, 2.23),
}

COLUMNS = (
    "embedding",
    "compression_ratio",
    "train_loss",
    "test_loss",
    "paper_train_loss",
    "paper_test_loss",
    "linear_bound",
    "best_epoch",
    "seconds",
)


def midpoint_loss(low: float = LOW, high: float = HIGH) -> float:
    """Expected MSE of predicting (low + high) / 2 for a value uniform on [low, high]: (high - low)^2 / 12."""
    return (high - low) ** 2 / 12.0


def linear_bound(embedding: int, origin: int = ORIGIN_SIZE, low: float = LOW, high: float = HIGH) -> float:
    """Least MSE of any linear autoencoder with `embedding` units on iid uniform values (PCA of 75 I)."""
    return midpoint_loss(low, high) * max(0, origin - embedding) / origin


def uniform_architectures(
    n: int, seed: int | Sequence[int], origin: int = ORIGIN_SIZE, low: float = LOW, high: float = HIGH
) -> torch.Tensor:
    """(n, origin) float32 vectors uniform on [low, high) from numpy's stream `default_rng(seed)`.

    Row i is what the (i+1)-th `NASESSpace(low, high).sample(rng)` would give on that stream.
    """
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.uniform(low, high, size=(n, origin))).float()


class _Scale(nn.Module):
    """x -> (x - low) / (high - low) (`inverse`: sigmoid output -> low + (high - low) * x); no parameters."""

    def __init__(self, low: float, high: float, inverse: bool = False):
        super().__init__()
        self.low, self.high, self.inverse = float(low), float(high), inverse

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.inverse:
            return self.low + (self.high - self.low) * x
        return (x - self.low) / (self.high - self.low)

    def extra_repr(self) -> str:
        return f"low={self.low}, high={self.high}, inverse={self.inverse}"


def _mlp(sizes: Sequence[int]) -> list[nn.Module]:
    """Linear layers through `sizes`; after each hidden layer ReLU (the first) or tanh (the others)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU() if i == 0 else nn.Tanh())
    return layers


class ArchitectureAutoencoder(L.LightningModule):
    """Simulator (60 -> hidden -> embedding, sigmoid) and decoder (embedding -> hidden -> 60 in [low, high])."""

    def __init__(
        self,
        embedding: int = 20,
        hidden: Sequence[int] = (1000, 500, 100),
        decoder_hidden: Sequence[int] | None = None,
        origin: int = ORIGIN_SIZE,
        low: float = LOW,
        high: float = HIGH,
        lr: float = 1e-5,
    ):
        super().__init__()
        if embedding < 1 or origin < 1:
            raise ValueError(f"embedding and origin sizes must be >= 1, got {embedding}, {origin}")
        if not low < high:
            raise ValueError(f"need low < high, got {low}, {high}")
        hidden = [int(h) for h in hidden]
        decoder_hidden = list(reversed(hidden)) if decoder_hidden is None else [int(h) for h in decoder_hidden]
        if any(h < 1 for h in hidden + decoder_hidden):
            raise ValueError(f"hidden sizes must be >= 1, got {hidden}, {decoder_hidden}")
        self.save_hyperparameters(
            {
                "embedding": int(embedding),
                "hidden": hidden,
                "decoder_hidden": decoder_hidden,
                "origin": int(origin),
                "low": float(low),
                "high": float(high),
                "lr": float(lr),
            }
        )
        self.simulator = nn.Sequential(
            _Scale(low, high), *_mlp([origin, *hidden, embedding]), nn.Sigmoid()
        )  # the architecture simulator / encoder; its embedding is in (0, 1)
        self.decoder = nn.Sequential(*_mlp([embedding, *decoder_hidden, origin]), nn.Sigmoid(), _Scale(low, high, True))
        self._sums = {"train": [0.0, 0], "test": [0.0, 0]}  # squared-error sum, value count of this epoch
        self.last_test_loss = math.nan  # MSE over the whole test set at the last validation

    @property
    def epoch_train_loss(self) -> float:
        """Running mean squared error over the current (or last) training epoch's batches."""
        total, count = self._sums["train"]
        return total / count if count else math.nan

    @one_thread()  # its decisions must not depend on the run's `threads` (own_model.one_thread)
    def encode(self, architectures: torch.Tensor) -> torch.Tensor:
        """(batch, origin) values in [low, high] -> (batch, embedding) in (0, 1)."""
        return self.simulator(architectures)

    @one_thread()  # its decisions must not depend on the run's `threads` (own_model.one_thread)
    def decode(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(batch, embedding) -> (batch, origin) values in [low, high]."""
        return self.decoder(embeddings)

    def forward(self, architectures: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(architectures))

    def _step(self, batch: Any, split: str) -> torch.Tensor:
        x = batch[0]
        squared = (self(x) - x).pow(2)
        sums = self._sums[split]
        sums[0] += float(squared.detach().sum(dtype=torch.float64))
        sums[1] += squared.numel()
        return squared.mean()

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss = self._step(batch, "train")
        self.log("nases_ae/train_loss", loss, on_step=False, on_epoch=True, batch_size=len(batch[0]))
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "test")

    def on_train_epoch_start(self) -> None:
        self._sums["train"] = [0.0, 0]

    def on_validation_epoch_start(self) -> None:
        self._sums["test"] = [0.0, 0]

    def on_validation_epoch_end(self) -> None:
        total, count = self._sums["test"]
        self.last_test_loss = total / max(count, 1)
        self.log("nases_ae/test_loss", self.last_test_loss)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


def reconstruction_loss(model: ArchitectureAutoencoder, data: torch.Tensor, batch_size: int = 8192) -> float:
    """Mean squared error of `model(data)` against `data` over every value (float64 sum), no gradients."""
    was_training = model.training
    model.eval()
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            x = data[start : start + batch_size]
            total += float((model(x) - x).pow(2).sum(dtype=torch.float64))
    model.train(was_training)
    return total / max(data.numel(), 1)


@dataclass(frozen=True)
class BatchSchedule:
    """Batch size start * factor ** (epoch // every), at most `maximum` (growing instead of decaying the lr)."""

    start: int = 64
    factor: int = 2
    every: int = 5
    maximum: int = 4096

    def __post_init__(self) -> None:
        if self.start < 1 or self.factor < 1 or self.every < 1 or self.maximum < self.start:
            raise ValueError(f"bad batch schedule {self}")

    def at(self, epoch: int) -> int:
        return int(min(self.maximum, self.start * self.factor ** (epoch // self.every)))


class _GrowingBatches(L.LightningDataModule):
    """Training loader rebuilt each epoch at the schedule's batch size (seeded shuffling); test set as validation."""

    def __init__(self, train: torch.Tensor, test: torch.Tensor, schedule: BatchSchedule, seed: int):
        super().__init__()
        self.train, self.test, self.schedule = train, test, schedule
        self.generator = torch.Generator().manual_seed(seed)
        self.batch_sizes: list[int] = []  # one per epoch, as built

    def train_dataloader(self) -> DataLoader:
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        size = self.schedule.at(epoch)
        self.batch_sizes.append(size)
        return DataLoader(TensorDataset(self.train), batch_size=size, shuffle=True, generator=self.generator)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(self.test), batch_size=8192)


class KeepBestTestLoss(L.Callback):
    """Copies the state dict whenever the test loss (`last_test_loss`) improves; logs each epoch in `history`."""

    def __init__(self) -> None:
        self.best_loss = math.inf
        self.best_epoch = -1
        self.best_state: dict[str, torch.Tensor] | None = None
        self.history: list[dict[str, float]] = []

    def on_validation_end(self, trainer: L.Trainer, pl_module: ArchitectureAutoencoder) -> None:
        if trainer.sanity_checking:
            return
        loss = float(pl_module.last_test_loss)
        self.history.append({"epoch": trainer.current_epoch, "test_loss": loss})
        if loss < self.best_loss:
            self.best_loss, self.best_epoch = loss, trainer.current_epoch
            self.best_state = {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()}

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: ArchitectureAutoencoder) -> None:
        if self.history and self.history[-1]["epoch"] == trainer.current_epoch:
            self.history[-1]["train_loss"] = pl_module.epoch_train_loss


def pretrain(
    embedding_size: int,
    train_size: int = 300_000,
    test_size: int = 100_000,
    epochs: int = 30,
    batch_schedule: BatchSchedule | None = None,
    lr: float = 1e-5,
    seed: int = 0,
    hidden: Sequence[int] = (1000, 500, 100),
    decoder_hidden: Sequence[int] | None = None,
    accelerator: str = "cpu",
    callbacks: Iterable[L.Callback] = (),
    origin: int = ORIGIN_SIZE,
    low: float = LOW,
    high: float = HIGH,
) -> tuple[ArchitectureAutoencoder, dict[str, Any]]:
    """Trains an autoencoder as Liu's NASES paper Sec. 4.1; returns it with its best-test-loss weights and metrics.

    Metrics: train_loss / test_loss (MSE of the kept weights over the whole sets), best_epoch (0-based),
    batch_sizes (one per epoch) and history (per epoch: running train loss, test loss). Training and
    test vectors come from the streams default_rng([seed, 0]) and default_rng([seed, 1]), so two
    embedding sizes at one seed see the same data; initialisation and shuffling are seeded too.
    `origin`, `low` and `high` fit it to a NASES space of another length or box (a shrunk search).
    """
    if epochs < 1 or train_size < 1 or test_size < 1:
        raise ValueError(f"need epochs, train_size, test_size >= 1, got {epochs}, {train_size}, {test_size}")
    schedule = batch_schedule or BatchSchedule()
    train = uniform_architectures(train_size, [seed, 0], origin, low, high)
    test = uniform_architectures(test_size, [seed, 1], origin, low, high)
    with own_torch_rng(seed):
        model = ArchitectureAutoencoder(embedding_size, hidden, decoder_hidden, origin, low, high, lr=lr)
    data = _GrowingBatches(train, test, schedule, seed)
    keeper = KeepBestTestLoss()
    train_own_model(
        model,
        data,
        epochs,
        seed,
        accelerator,
        callbacks=[keeper, *callbacks],
        reload_dataloaders_every_n_epochs=1,
        num_sanity_val_steps=0,
    )
    assert keeper.best_state is not None  # validation runs after every epoch
    model.load_state_dict(keeper.best_state)
    metrics = {
        "train_loss": reconstruction_loss(model, train),
        "test_loss": reconstruction_loss(model, test),
        "best_epoch": keeper.best_epoch,
        "batch_sizes": list(data.batch_sizes),
        "history": keeper.history,
    }
    return model, metrics


def compression_table(
    sizes: Sequence[int] = tuple(PAPER_TABLE1),
    verbose: bool = False,
    save_dir: str | Path | None = None,
    **pretrain_options: Any,
) -> list[dict[str, Any]]:
    """One `pretrain` per embedding size -> rows {embedding, compression_ratio, train_loss, test_loss, ...}.

    compression_ratio is embedding / 60 as in Table 1 (0.33 for 20); paper values and the linear
    bound ride along for comparison (None where Table 1 has no such size). With `save_dir`, each
    autoencoder is saved there as nases_autoencoder_<size>.pt (`save_pretrained`).
    """
    rows = []
    for size in sizes:
        start = time.perf_counter()
        model, metrics = pretrain(int(size), **pretrain_options)
        if save_dir is not None:
            save_pretrained(model, Path(save_dir) / f"nases_autoencoder_{int(size)}.pt", metrics)
        paper = PAPER_TABLE1.get(int(size))
        row = {
            "embedding": int(size),
            "compression_ratio": round(int(size) / ORIGIN_SIZE, 4),
            "train_loss": metrics["train_loss"],
            "test_loss": metrics["test_loss"],
            "paper_train_loss": paper[1] if paper else None,
            "paper_test_loss": paper[2] if paper else None,
            "linear_bound": linear_bound(int(size)),
            "best_epoch": metrics["best_epoch"],
            "seconds": round(time.perf_counter() - start, 2),
        }
        rows.append(row)
        if verbose:
            print(json.dumps(row), flush=True)
    return rows


def _cell(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """Table 1 as Markdown: measured losses next to the paper's and the linear-autoencoder bound."""
    head = (
        "| embedding | compression ratio | train loss | test loss | paper train | paper test "
        "| linear bound | best epoch | seconds |"
    )
    lines = [head, "|" + "---:|" * 9]
    for r in rows:
        cells = [
            _cell(r["embedding"]),
            _cell(r["compression_ratio"]),
            _cell(r["train_loss"]),
            _cell(r["test_loss"]),
            _cell(r["paper_train_loss"]),
            _cell(r["paper_test_loss"]),
            _cell(r["linear_bound"]),
            _cell(r["best_epoch"]),
            _cell(r["seconds"], 1),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        f"Losses: mean squared error per value on the raw [0, 30] scale (Liu's NASES paper Table 1). Predicting 15 "
        f"everywhere costs {midpoint_loss():.0f}; linear bound = {midpoint_loss():.0f} * (60 - embedding) / 60."
    )
    return "\n".join(lines) + "\n"


def write_table(rows: Sequence[dict[str, Any]], out_dir: str | Path) -> tuple[Path, Path]:
    """Writes `compression.md` and `compression.csv` (columns `COLUMNS`) in out_dir; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md_path, csv_path = out_dir / "compression.md", out_dir / "compression.csv"
    md_path.write_text(markdown_table(rows))
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for r in rows:
            writer.writerow({c: "" if r.get(c) is None else r.get(c) for c in COLUMNS})
    return md_path, csv_path


def plot_compression(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Double-axis PNG as the NASES paper Fig. 3: losses (left) and compression ratio (right) against embedding size."""
    from naslab.plots.canvas import plot_axes

    path, fig, ax = plot_axes(path, (6.0, 4.0))
    sizes = [r["embedding"] for r in rows]
    ax.plot(sizes, [r["test_loss"] for r in rows], "o-", color="tab:red", label="test loss")
    ax.plot(sizes, [r["train_loss"] for r in rows], "s--", color="tab:orange", label="train loss")
    paper = [(r["embedding"], r["paper_test_loss"]) for r in rows if r.get("paper_test_loss") is not None]
    if paper:
        ax.plot(*zip(*paper), "x:", color="grey", label="paper test loss")
    ax.axhline(midpoint_loss(), color="black", linewidth=0.8, linestyle=":", label="predict 15")
    ax.set_xlabel("embedding size")
    ax.set_ylabel("loss (MSE on [0, 30])")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    twin = ax.twinx()
    twin.plot(sizes, [r["compression_ratio"] for r in rows], "^-", color="tab:blue", label="compression ratio")
    twin.set_ylabel("compression ratio (embedding / 60)", color="tab:blue")
    twin.set_ylim(0, 1.05)
    handles = ax.get_legend_handles_labels()
    twin_handles = twin.get_legend_handles_labels()
    ax.legend(handles[0] + twin_handles[0], handles[1] + twin_handles[1], fontsize=8, loc="center right")
    ax.set_title("NASES autoencoder: information loss vs embedding size")
    fig.tight_layout()
    fig.savefig(path)
    return path


def save_pretrained(model: ArchitectureAutoencoder, path: str | Path, metrics: dict[str, Any] | None = None) -> Path:
    """Writes {"hparams", "state_dict", "metrics"} (plain types; loadable with weights_only=True)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    hparams = {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in dict(model.hparams).items()}
    plain = {k: v for k, v in (metrics or {}).items() if k in ("train_loss", "test_loss", "best_epoch", "batch_sizes")}
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({"hparams": hparams, "state_dict": state, "metrics": plain}, path)
    return path


def load_pretrained(path: str | Path) -> tuple[ArchitectureAutoencoder, dict[str, Any]]:
    """(autoencoder with the saved weights, saved metrics) from a `save_pretrained` file."""
    saved = torch.load(Path(path), map_location="cpu", weights_only=True)
    model = ArchitectureAutoencoder(**saved["hparams"])
    model.load_state_dict(saved["state_dict"])
    return model, dict(saved.get("metrics", {}))
