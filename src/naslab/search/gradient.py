"""The gradient search (DARTS): architecture weights of a relaxed supernet trained by gradient.

"DARTS: Differentiable Architecture Search", Hanxiao Liu, Karen Simonyan, Yiming Yang,
arXiv:1806.09055. The strategy (`strategy=darts`, `naslab.strategies.darts`) holds the method's
settings and builds its bilevel module (first or second order); this search runs it: a Lightning
Trainer over a `CombinedLoader` of the train half and the search-valid half (DARTS splits the train
set in two: `valid_fraction=0.5`), and after every epoch

* derives the discrete genotype (the space's `derive`: per node the two strongest edges by their
  strongest non-`none` op) and archives it with the supernet's validation accuracy,
* draws the alpha heatmaps (softmax per edge) into `<run dir>/darts/` and W&B,
* writes a checkpoint (supernet, alphas, optimisers, scheduler, RNG), so `resume=true` continues
  a killed search at the last finished epoch and keeps every derivation made so far.

Faults. A non-finite alpha or weight update is skipped and counted (`DartsSearchModule`); too many in a
row stop the search with one `TrainingDivergedError` line that names the epoch, the last good checkpoint
(the previous epoch's, never overwritten with non-finite weights) and the archive, which keeps every
derivation made before. A resume refuses a checkpoint it cannot trust (truncated, garbage, non-finite)
in one `CorruptStateError` line naming the file: its weights cannot be rebuilt without training again,
so the user moves it away and the search trains again from epoch 0, keeping the archive.

The search's genotype is the last epoch's derivation, as in the paper (`select=best` takes the
one derived when the supernet's validation accuracy was highest). Any relaxable space
(`naslab.spaces.base.Relaxable`: micro and the recurrent cell) is searched the same way.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import lightning as L
import torch
from lightning.pytorch.utilities import CombinedLoader

from naslab.archive import Archive
from naslab.errors import TrainingDivergedError
from naslab.loggers import log_images, log_metrics, quiet_lightning
from naslab.plots.alpha_plot import plot_alpha_heatmaps, softmax_rows
from naslab.search.base import G, Search, SearchResult, make_record, save_trainer_checkpoint
from naslab.spaces.base import Space, Task
from naslab.train.nonfinite import check_checkpoint, describe_names, nonfinite_tensors

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
        epoch = module.current_epoch
        bad = nonfinite_tensors(module.state_dict())
        if bad:  # neither archived (its score would be NaN) nor checkpointed: the previous epoch's stays
            raise TrainingDivergedError(
                f"DARTS search diverged: the weights are not finite after epoch {epoch} ({describe_names(bad)}); "
                "lower strategy.w_lr or strategy.alpha_lr and start a new run"
            )
        if any(r.extra.get("darts", {}).get("epoch") == epoch for r in self.archive.records):
            log.info("epoch %d is already archived (a resumed search): not recorded again", epoch)
        else:
            self._record(module, epoch)
        save_trainer_checkpoint(trainer, self.run_dir / CHECKPOINT)

    def _record(self, module: Any, epoch: int) -> None:
        alphas = module.alpha_tensors()
        genotype = self.space.derive(alphas)
        accuracy, extras = module.evaluate(self.valid_loader, self.eval_batches)  # text: 80 / perplexity
        metrics = {**module.epoch_metrics(), **{f"valid_{k}": v for k, v in extras.items()}}
        metrics.update({f"alpha_entropy_{k}": alpha_entropy(a) for k, a in alphas.items()})
        key = self.space.key(genotype)
        previous = self.archive.records[-1] if self.archive.records else None
        metrics["genotype_changed"] = float(previous is None or previous.key.split(":", 1)[1] != key)
        record = make_record(
            self.space,
            genotype,
            f"epoch{epoch}:{key}",
            len(self.archive),
            self.seed,
            accuracy,
            epochs=float(epoch + 1),
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


class GradientSearch(Search[G]):
    """`strategy=darts`: the strategy's relaxed supernet trained on the data; no evaluator."""

    kind = "gradient"
    budget_unit = "shared_epochs"

    def __init__(
        self,
        space: Space[G],
        strategy: Any,
        task: Task,
        datamodule_factory: Callable[..., L.LightningDataModule],
        trainer_factory: Callable[..., L.Trainer],
    ):
        self.space, self.strategy, self.task = space, strategy, task
        self.datamodule_factory, self.trainer_factory = datamodule_factory, trainer_factory

    def run(self, run_dir: Path, resume: bool = False, logger: Any = None) -> SearchResult[G]:
        run_dir = Path(run_dir)
        strategy, task, trainer_factory = self.strategy, self.task, self.trainer_factory
        archive = Archive(run_dir / "archive.jsonl", resume=resume)
        start = time.perf_counter() - sum(r.wall_seconds for r in archive.records)  # a resumed search counts all
        windows = {}
        if task.kind == "text" and strategy.window_std is not None:
            windows = {"seq_len_std": strategy.window_std}
        datamodule = self.datamodule_factory(
            batch_size=strategy.batch_size, search_valid_size=strategy.valid_fraction, **windows
        )
        datamodule.setup()
        # Text: lr * window length / bptt per step, bptt the datamodule's (rnn/train_search.py --bptt).
        module = strategy.build_module(task, bptt=getattr(datamodule, "bptt", None) if task.kind == "text" else None)
        # Images: two equal halves, one batch of each per step. Text: the valid stream is ~8x shorter
        # than the train stream and is cycled through, as DARTS' rnn/train_search.py does.
        bilevel = CombinedLoader(
            {"train": datamodule.train_dataloader(), "valid": datamodule.shuffled_valid_dataloader()},  # type: ignore[attr-defined]
            mode="max_size_cycle" if task.kind == "text" else "min_size",
        )
        recorder = DerivationRecorder(
            self.space, archive, datamodule.val_dataloader(), run_dir, strategy.seed, strategy.eval_batches, logger
        )
        overrides = {} if strategy.train_batches is None else {"limit_train_batches": strategy.train_batches}
        with quiet_lightning():
            trainer = trainer_factory(
                max_epochs=strategy.epochs,
                logger=False,
                callbacks=[recorder],
                enable_checkpointing=False,
                enable_model_summary=False,
                limit_val_batches=0,
                num_sanity_val_steps=0,
                default_root_dir=str(run_dir),
                precision=strategy.precision,
                **overrides,
            )
        if trainer.world_size > 1:
            raise ValueError(
                "strategy=darts runs on one device: its alpha gradients bypass DDP's all-reduce; use trainer.devices=1"
            )
        checkpoint = run_dir / CHECKPOINT
        ckpt_path = str(checkpoint) if resume and checkpoint.exists() else None
        if ckpt_path:
            check_checkpoint(
                checkpoint,
                "move it away and run resume=true again: the DARTS search then trains again from epoch 0 and keeps "
                f"{archive.path.name} (an epoch already archived is not recorded twice)",
            )
            log.info("resuming the DARTS search from %s", checkpoint)
        try:
            with quiet_lightning():
                trainer.fit(module, train_dataloaders=bilevel, ckpt_path=ckpt_path)
        except TrainingDivergedError as err:
            raise TrainingDivergedError(f"{err}; {self.what_is_kept(archive, checkpoint)}") from err
        records = [r for r in archive.records if "darts" in r.extra]
        if not records:
            raise RuntimeError(f"the DARTS search in {run_dir} finished no epoch")
        chosen = records[-1] if strategy.select == "last" else max(records, key=lambda r: r.score)
        valid = datamodule.val_dataloader()

        def shared_scorer(genotypes: Sequence[Any], num_batches: int) -> list[float]:
            """Each architecture as one-hot weights in the trained mixed supernet (`relaxed_weights`), all
            on the same first `num_batches` search-valid batches, read once."""
            taken = module.take(valid, num_batches)
            return [module.score_weights(self.space.relaxed_weights(g), taken) for g in genotypes]

        return SearchResult(
            best_genotype=self.space.genotype_from_dict(chosen.genotype),
            best_score=max(r.score for r in records),
            num_evaluated=len(records),
            wall_seconds=time.perf_counter() - start,
            archive=archive,
            # Scoring a discrete architecture needs its one-hot weights (micro's `relaxed_weights`); a space
            # without them (the recurrent cell) leaves search.rank_all with nothing to rank, which it logs.
            shared_scorer=shared_scorer if hasattr(self.space, "relaxed_weights") else None,
        )

    @staticmethod
    def what_is_kept(archive: Archive, checkpoint: Path) -> str:
        """The last good checkpoint and the archived epochs, for a diverged search's one-line error."""
        epochs = [r.extra["darts"]["epoch"] for r in archive.records if "darts" in r.extra]
        if not epochs or not checkpoint.exists():
            return "no epoch had finished, so no checkpoint was written"
        return (
            f"the last good checkpoint is {checkpoint} and {archive.path} keeps the derivations of "
            f"epochs {min(epochs)}-{max(epochs)}"
        )
