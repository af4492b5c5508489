"""`strategy=darts`: differentiable architecture search.

"DARTS: Differentiable Architecture Search", Hanxiao Liu, Karen Simonyan, Yiming Yang,
arXiv:1806.09055; the defaults follow the authors' code, quark0/darts (docs/methods/darts.md lists
every setting with its source and every remaining deviation).

DARTS owns its search network instead of proposing genotypes to an evaluator: it builds the
space's mixed-op supernet (`Space.build_mixed_supernet`), optimises weights and architecture
parameters in alternation (`DartsSearchModule`, first or second order) with a Lightning Trainer
over a `CombinedLoader` of the train half and the search-valid half (DARTS splits the train set in
two: `valid_fraction=0.5`), and after every epoch

* derives the discrete genotype (`Space.derive`: per node the two strongest edges by their
  strongest non-`none` op) and archives it with the supernet's validation accuracy,
* draws the alpha heatmaps (softmax per edge) into `<run dir>/darts/` and W&B,
* writes a checkpoint (supernet, alphas, optimisers, scheduler, RNG), so `resume=true` continues
  a killed search at the last finished epoch and keeps every derivation made so far.

The search's genotype is the last epoch's derivation, as in the paper (`select=best` takes the
one derived when the supernet's validation accuracy was highest). Nothing here is CNN-specific:
any space with a mixed-op supernet and `derive` (the recurrent cell of the language-model issue)
is searched the same way.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import lightning as L
import torch
from lightning.pytorch.utilities import CombinedLoader

from naslab.analysis.alpha_plot import plot_alpha_heatmaps, softmax_rows
from naslab.archive import Archive, ArchiveRecord
from naslab.loggers import log_images, log_metrics, quiet_lightning
from naslab.search import SearchResult, save_trainer_checkpoint
from naslab.spaces.base import Space, Task
from naslab.strategies.base import G, GradientStrategy
from naslab.strategies.darts_module import VIRTUAL_STEPS, DartsSearchModule
from naslab.train.objectives import objective_for

log = logging.getLogger(__name__)
CHECKPOINT = "darts_search.ckpt"
PICTURES = "darts"


def alpha_entropy(alphas: torch.Tensor) -> float:
    """Mean entropy (nats) of the rows' softmax: log(#ops) at the start, 0 when every edge has decided."""
    p = torch.as_tensor(softmax_rows(alphas))
    return float(-(p * torch.log(p.clamp_min(1e-12))).sum(-1).mean())


class DerivationRecorder(L.Callback):
    """At each epoch's end: supernet accuracy, derivation, archive record, heatmaps, checkpoint."""

    def __init__(
        self,
        space: Space[Any],
        archive: Archive,
        valid_loader: Any,
        run_dir: Path,
        seed: int,
        eval_batches: int | None,
        logger: Any = None,
    ):
        self.space, self.archive, self.valid_loader = space, archive, valid_loader
        self.run_dir, self.seed, self.eval_batches, self.logger = run_dir, seed, eval_batches, logger
        self.epoch_start = time.perf_counter()

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.epoch_start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        assert isinstance(module, DartsSearchModule)
        epoch = module.current_epoch
        if any(r.extra.get("darts", {}).get("epoch") == epoch for r in self.archive.records):
            log.info("epoch %d is already archived (a resumed search): not recorded again", epoch)
        else:
            self._record(module, epoch)
        save_trainer_checkpoint(trainer, self.run_dir / CHECKPOINT)

    def _record(self, module: DartsSearchModule, epoch: int) -> None:
        alphas = module.alpha_tensors()
        genotype = self.space.derive(alphas)
        accuracy, extras = module.evaluate(self.valid_loader, self.eval_batches)  # text: 80 / perplexity
        metrics = {**module.epoch_metrics(), **{f"valid_{k}": v for k, v in extras.items()}}
        metrics.update({f"alpha_entropy_{k}": alpha_entropy(a) for k, a in alphas.items()})
        key = self.space.key(genotype)
        previous = self.archive.records[-1] if self.archive.records else None
        metrics["genotype_changed"] = float(previous is None or previous.key.split(":", 1)[1] != key)
        record = ArchiveRecord(
            index=len(self.archive),
            key=f"epoch{epoch}:{key}",
            genotype=self.space.to_dict(genotype),
            readable=self.space.describe(genotype),
            score=accuracy,
            seed=self.seed,
            epochs=float(epoch + 1),
            params=None,
            wall_seconds=time.perf_counter() - self.epoch_start,
            extra={
                "darts": {
                    "epoch": epoch,
                    **{k: round(v, 6) for k, v in metrics.items()},
                    "alphas": {k: [[round(float(v), 6) for v in row] for row in a.tolist()] for k, a in alphas.items()},
                }
            },
        )
        self.archive.append(record)
        supernet = module.supernet
        picture = plot_alpha_heatmaps(
            alphas,
            supernet.edge_labels,  # type: ignore[arg-type]
            supernet.op_names,  # type: ignore[arg-type]
            self.run_dir / PICTURES / f"alphas_epoch{epoch:03d}.png",
            title=f"DARTS order {module.order}, epoch {epoch + 1}: softmax(alpha) per edge",
        )
        log_images(self.logger, "darts", [picture])
        logged = {"darts/valid_score": accuracy, **{f"darts/{k}": v for k, v in metrics.items()}}
        log_metrics(self.logger, logged, epoch)
        measured = f"perplexity {extras['perplexity']:.1f}" if "perplexity" in extras else f"acc {accuracy:.4f}"
        log.info(
            "DARTS epoch %d: supernet valid %s, train loss %.4f, derived %s",
            epoch + 1,
            measured,
            metrics["train_loss"],
            record.readable,
        )


# strategy.precision -> the search Trainer's precision. bf16 needs no loss scaling; the finite-difference
# Hessian-vector product of order 2 runs in float32 inside it (DartsSearchModule).
DARTS_PRECISIONS = {"32-true": "32-true", "32": "32-true", "bf16-mixed": "bf16-mixed", "16-mixed": "32-true"}


class DartsStrategy(GradientStrategy[G]):
    """Hydra target of `strategy=darts`; defaults are quark0/darts cnn/train_search.py's CIFAR-10 search."""

    name = "darts"

    def __init__(
        self,
        space: Space[G],
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
        super().__init__(space)
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

    def search(
        self,
        task: Task,
        datamodule_factory: Callable[..., L.LightningDataModule],
        trainer_factory: Callable[..., L.Trainer],
        run_dir: str | Path,
        resume: bool = False,
        logger: Any = None,
    ) -> SearchResult[G]:
        run_dir = Path(run_dir)
        archive = Archive(run_dir / "archive.jsonl", resume=resume)
        start = time.perf_counter() - sum(r.wall_seconds for r in archive.records)  # a resumed search counts all
        windows = {"seq_len_std": self.window_std} if task.kind == "text" and self.window_std is not None else {}
        datamodule = datamodule_factory(batch_size=self.batch_size, search_valid_size=self.valid_fraction, **windows)
        datamodule.setup()
        # Text: lr * window length / bptt per step, bptt the datamodule's (rnn/train_search.py --bptt).
        module = self.build_module(task, bptt=getattr(datamodule, "bptt", None) if task.kind == "text" else None)
        # Images: two equal halves, one batch of each per step. Text: the valid stream is ~8x shorter
        # than the train stream and is cycled through, as DARTS' rnn/train_search.py does.
        bilevel = CombinedLoader(
            {"train": datamodule.train_dataloader(), "valid": datamodule.shuffled_valid_dataloader()},  # type: ignore[attr-defined]
            mode="max_size_cycle" if task.kind == "text" else "min_size",
        )
        recorder = DerivationRecorder(
            self.space, archive, datamodule.val_dataloader(), run_dir, self.seed, self.eval_batches, logger
        )
        overrides = {} if self.train_batches is None else {"limit_train_batches": self.train_batches}
        with quiet_lightning():
            trainer = trainer_factory(
                max_epochs=self.epochs,
                logger=False,
                callbacks=[recorder],
                enable_checkpointing=False,
                enable_model_summary=False,
                limit_val_batches=0,
                num_sanity_val_steps=0,
                default_root_dir=str(run_dir),
                precision=self.precision,
                **overrides,
            )
        if trainer.world_size > 1:
            raise ValueError(
                "strategy=darts runs on one device: its alpha gradients bypass DDP's all-reduce; use trainer.devices=1"
            )
        checkpoint = run_dir / CHECKPOINT
        ckpt_path = str(checkpoint) if resume and checkpoint.exists() else None
        if ckpt_path:
            log.info("resuming the DARTS search from %s", checkpoint)
        with quiet_lightning():
            trainer.fit(module, train_dataloaders=bilevel, ckpt_path=ckpt_path)
        records = [r for r in archive.records if "darts" in r.extra]
        if not records:
            raise RuntimeError(f"the DARTS search in {run_dir} finished no epoch")
        chosen = records[-1] if self.select == "last" else max(records, key=lambda r: r.score)
        valid = datamodule.val_dataloader()

        def shared_scorer(genotypes: Sequence[Any], num_batches: int) -> list[float]:
            """Each architecture as one-hot weights in the trained mixed supernet (`Space.relaxed_weights`), all
            on the same first `num_batches` search-valid batches, read once."""
            taken = module.take(valid, num_batches)
            return [module.score_weights(self.space.relaxed_weights(g), taken) for g in genotypes]

        return SearchResult(
            best_genotype=self.space.genotype_from_dict(chosen.genotype),
            best_score=max(r.score for r in records),
            num_evaluated=len(records),
            wall_seconds=time.perf_counter() - start,
            archive=archive,
            shared_scorer=shared_scorer,
        )
