"""Weight sharing (ENAS): one supernet whose paths are the architectures, trained in alternation
with the strategy.

Each epoch, as in ENAS (Pham et al. 2018): (1) shared-weight training on the search-train split,
one architecture per step from `strategy.sample_for_training` (the controller's sample; NAO-WS:
a member of its pool); (2) every `strategy_every` epochs and after the last, the strategy's
update: it is asked for architectures, each is scored on a search-valid batch with the current
shared weights, and told the scores. Batches come from one `CombinedLoader` of the train and
search-valid loaders; the valid batches seen during an epoch feed the strategy phase at its end.
After the last epoch, M architectures from `strategy.candidates` (ENAS: sampled from the
controller; NAO-WS: its population) are scored on validation batches; the best is the search's
result (ENAS's derivation). Any strategy works: `strategy=random evaluator=shared` is Random-WS,
the baseline of the search-phase study (file 003).

Loss and score come from the task's `Objective` (`train.objectives`): for images, accuracy with
batch statistics in BatchNorm (the supernet is in training mode, with running statistics frozen),
because running averages mix every architecture the supernet has trained; for language models
(`space=rnn`), ENAS' reward 80 / validation perplexity over `valid_batches` consecutive windows with
the hidden state starting from zero (ENAS carries it across controller steps), and shared-weight
training carries the hidden state from batch to batch in float32 (see `train.language_model`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import lightning as L
import torch
from lightning.pytorch.utilities import CombinedLoader
from torch import nn

from naslab.archive import Archive, ArchiveRecord
from naslab.evaluators.base import Evaluation, Evaluator, G
from naslab.loggers import quiet_lightning
from naslab.search import SearchResult, save_trainer_checkpoint
from naslab.spaces.base import Space, Task
from naslab.strategies.base import Strategy
from naslab.train.objectives import ImageObjective, Objective, objective_for

log = logging.getLogger(__name__)
Batch = tuple[torch.Tensor, torch.Tensor]
CHECKPOINT = "shared_search.ckpt"


class SharedWeightsSearch(L.LightningModule):
    """Manual optimisation: shared-weight steps, then the strategy phase at the end of each epoch."""

    def __init__(
        self,
        supernet: nn.Module,
        space: Space[Any],
        strategy: Strategy[Any],
        archive: Archive,
        train_loader: Any,
        valid_loader: Any,
        run_dir: Path,
        seed: int,
        epochs: int,
        lr: float,
        momentum: float,
        weight_decay: float,
        grad_clip: float,
        strategy_steps: int,
        strategy_batch: int,
        strategy_every: int = 1,
        log_metrics: Callable[[dict[str, float], int], None] | None = None,
        objective: Objective | None = None,
    ):
        super().__init__()
        self.automatic_optimization = False
        self.objective = objective or ImageObjective()
        self.supernet = supernet
        controller = getattr(strategy, "controller", None)
        if isinstance(controller, nn.Module):
            self.controller = controller  # registered: checkpointed with the shared weights
        self.space, self.strategy, self.archive = space, strategy, archive
        self.train_loader, self.valid_loader = train_loader, valid_loader
        self.run_dir, self.seed, self.epochs = Path(run_dir), seed, epochs
        self.optim = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay}
        self.grad_clip = grad_clip
        self.strategy_steps, self.strategy_batch = strategy_steps, strategy_batch
        self.strategy_every = max(1, strategy_every)
        self.log_fn = log_metrics
        self.valid_batches: list[Batch] = []
        self.best_so_far = max((r.score for r in archive.records if r.error is None), default=0.0)

    def train_dataloader(self) -> CombinedLoader:
        return CombinedLoader({"train": self.train_loader, "valid": self.valid_loader}, mode="max_size_cycle")

    def on_train_epoch_start(self) -> None:
        self.objective.reset()  # a language model's hidden state starts from zero each epoch

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.supernet.parameters(), **self.optim)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(self.epochs, 1))
        return [optimizer], [scheduler]

    def training_step(self, batch: dict[str, Batch], batch_idx: int) -> None:
        self.valid_batches.append(batch["valid"])
        genotype = self.strategy.sample_for_training(1)[0]
        step = self.objective.loss(self.supernet, batch["train"], genotype)
        loss = step.loss
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"shared-weight loss is {loss.item()} at epoch {self.current_epoch}, step {batch_idx}"
            )
        optimizer = self.optimizers()
        optimizer.zero_grad()
        self.manual_backward(loss)
        self.clip_gradients(optimizer, gradient_clip_val=self.grad_clip, gradient_clip_algorithm="norm")
        optimizer.step()
        self.log("search/shared_loss", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=step.count)

    def on_train_start(self) -> None:
        if self.strategy.finished:  # resumed after the strategy's last phase (e.g. killed while deriving)
            log.info("the strategy had finished its course before this resume: no more shared training")
            self.trainer.should_stop = True

    def on_train_epoch_end(self) -> None:
        epoch = self.current_epoch
        batches, self.valid_batches = self.valid_batches, []
        if (epoch + 1) % self.strategy_every == 0 or epoch + 1 == self.epochs:
            for step in range(self.strategy_steps):
                valid = [batches[step % len(batches)]]
                genotypes = self.strategy.ask(self.strategy_batch)
                scores = [self.record(g, valid, f"epoch{epoch}:", {"epoch": epoch}).score for g in genotypes]
                self.strategy.tell(genotypes, scores)
                metrics = self.strategy.pop_metrics()
                if metrics and self.log_fn is not None:
                    self.log_fn({f"strategy/{k}": v for k, v in metrics.items()}, len(self.archive))
                if self.strategy.finished:
                    break
            if self.strategy.finished and epoch + 1 < self.epochs:
                log.info(
                    "the strategy finished its course after epoch %d of %d: shared training stops",
                    epoch + 1,
                    self.epochs,
                )
                self.trainer.should_stop = True
        self.lr_schedulers().step()
        self.save_search_checkpoint()

    def record(self, genotype: Any, batches: Sequence[Batch], prefix: str, extra: dict[str, Any]) -> ArchiveRecord:
        """Scores `genotype` and archives it, or returns the archived record (a resumed epoch)."""
        self.space.validate_partial(genotype)  # progressive strategies (EPNAS) score partial paths
        key = prefix + self.space.key(genotype)
        record = self.archive.get(key)
        if record is not None:
            return record
        start = time.perf_counter()
        score, measured = self.objective.score(self.supernet, genotype, batches)
        record = ArchiveRecord(
            index=len(self.archive),
            key=key,
            genotype=self.space.to_dict(genotype),
            readable=self.space.describe(genotype),
            score=score,
            seed=self.seed,
            epochs=float(self.current_epoch + 1),
            params=None,
            wall_seconds=time.perf_counter() - start,
            extra={**extra, **measured, **self.strategy.proposal_info(genotype)},
        )
        self.archive.append(record)
        self.best_so_far = max(self.best_so_far, score)
        if self.log_fn is not None:
            self.log_fn({"search/score": score, "search/best_so_far": self.best_so_far}, record.index)
        return record

    def save_search_checkpoint(self) -> None:
        """After every strategy phase: shared weights, controller, optimizers, RNG state, strategy."""
        save_trainer_checkpoint(self.trainer, self.run_dir / CHECKPOINT)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["strategy"] = self.strategy.state_dict()
        checkpoint["torch_rng"] = torch.get_rng_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.strategy.load_state_dict(checkpoint["strategy"])
        torch.set_rng_state(checkpoint["torch_rng"])


class SharedEvaluator(Evaluator[G]):
    """`evaluator=shared`: owns the search loop, because scores depend on the shared weights."""

    name = "shared"

    def __init__(
        self,
        space: Space[G],
        task: Task,
        datamodule_factory: Callable[..., L.LightningDataModule],
        trainer_factory: Callable[..., L.Trainer],
        seed: int = 0,
        epochs: int = 10,
        batch_size: int = 64,
        channels: int = 16,
        cells_per_stage: int = 1,
        lr: float = 0.05,
        momentum: float = 0.9,
        weight_decay: float = 1e-4,
        grad_clip: float = 5.0,
        train_batches: int | float | None = None,
        strategy_steps: int = 10,
        strategy_batch: int = 1,
        strategy_every: int = 1,
        derive_samples: int = 100,
        valid_batches: int = 1,
        network: dict[str, Any] | None = None,
    ):
        self.space, self.task, self.seed, self.epochs = space, task, seed, epochs
        self.datamodule = datamodule_factory(batch_size=batch_size)
        self.trainer_factory = trainer_factory
        self.train_batches = train_batches
        torch.manual_seed(seed)
        self.objective = objective_for(task)
        self.supernet = space.build_supernet(
            task, channels=channels, cells_per_stage=cells_per_stage, **(network or {})
        )
        self.hparams = {
            "lr": lr,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "grad_clip": grad_clip,
            "strategy_steps": strategy_steps,
            "strategy_batch": strategy_batch,
            "strategy_every": strategy_every,
        }
        self.derive_samples, self.valid_batches = derive_samples, valid_batches

    def _valid(self, n: int) -> list[Batch]:
        self.datamodule.setup()
        batches = []
        for batch in self.datamodule.val_dataloader():
            batches.append(batch)
            if len(batches) == n:
                break
        return batches

    def evaluate(self, genotypes: Sequence[G]) -> list[Evaluation]:
        """Score (accuracy, or 80 / perplexity) of each architecture on the first `valid_batches` valid batches."""
        batches = self._valid(self.valid_batches)
        out = []
        for g in genotypes:
            start = time.perf_counter()
            score, measured = self.objective.score(self.supernet, g, batches)
            out.append(Evaluation(score, None, None, time.perf_counter() - start, extra=measured))
        return out

    def search(
        self,
        strategy: Strategy[G],
        run_dir: Path,
        resume: bool = False,
        log_metrics: Callable[[dict[str, float], int], None] | None = None,
    ) -> SearchResult[G]:
        run_dir = Path(run_dir)
        start = time.perf_counter()
        strategy.scores_drift = True  # shared weights keep training: a score from epoch 1 is stale at epoch 50
        archive = Archive(run_dir / "archive.jsonl", resume=resume)
        self.datamodule.setup()
        module = SharedWeightsSearch(
            self.supernet,
            self.space,
            strategy,
            archive,
            self.datamodule.train_dataloader(),
            self.datamodule.val_dataloader(),
            run_dir,
            self.seed,
            self.epochs,
            log_metrics=log_metrics,
            objective=self.objective,
            **self.hparams,
        )
        overrides = {} if self.train_batches is None else {"limit_train_batches": self.train_batches}
        with quiet_lightning():
            trainer = self.trainer_factory(
                max_epochs=self.epochs,
                logger=False,
                enable_checkpointing=False,
                enable_model_summary=False,
                limit_val_batches=0,
                num_sanity_val_steps=0,
                default_root_dir=str(run_dir),
                **overrides,
                # manual optimisation under mixed precision would clip a language model's gradients unscaled
                **({"precision": "32-true"} if self.task.kind == "text" else {}),
            )
        checkpoint = run_dir / CHECKPOINT
        ckpt_path = str(checkpoint) if resume and checkpoint.exists() else None
        if ckpt_path:
            log.info("resuming the shared-weight search from %s", checkpoint)
        with quiet_lightning():
            trainer.fit(module, ckpt_path=ckpt_path)
        # ENAS's derivation: sample M architectures, score them with the shared weights, keep the best.
        batches = self._valid(self.valid_batches)
        candidates = strategy.candidates(self.derive_samples)
        derived = [module.record(g, batches, "derive:", {"derive": True}) for g in candidates]
        best = max(derived, key=lambda r: r.score)
        return SearchResult(
            best_genotype=self.space.genotype_from_dict(best.genotype),
            best_score=best.score,
            num_evaluated=len(archive),
            wall_seconds=time.perf_counter() - start,
            archive=archive,
        )
