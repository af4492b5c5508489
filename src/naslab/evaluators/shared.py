"""Weight sharing (ENAS): one supernet whose paths are the architectures, trained in alternation
with the strategy.

Each epoch, as in ENAS ("Efficient Neural Architecture Search via Parameter Sharing", Pham, Guan,
Zoph, Le, Dean, arXiv:1802.03268): (1) shared-weight training on the search-train split, one
architecture per step from `strategy.sample_for_training` (the controller's sample; NAO-WS: a member
of its pool); (2) every `strategy_every` epochs and after the last, the strategy's update: it is asked
for architectures, each is scored with the current shared weights, and told the scores. After the
last epoch, the architectures of `strategy.candidates` (ENAS: sampled from the controller; NAO-WS: its
population) are scored; the best is the search's result (ENAS's derivation). Any strategy works:
`strategy=random evaluator=shared` is Random-WS, the baseline of "Evaluating the Search Phase of
Neural Architecture Search" (Sciuto, Yu, Jaggi, Musat, Salzmann, arXiv:1902.08142).

Every scored architecture, in a strategy phase or the derivation, reads its own `valid_batches`
random batches of search-valid (`random_valid_batches` of the datamodule: random images without
augmentation; a language model: consecutive windows from a random start), as ENAS draws a shuffled
validation batch per sampled architecture (melodyguan/enas micro_child.py `build_valid_rl`) and NAO-WS
evaluates each architecture of its pool on its own batch (renqianluo/NAO NAO-WS/cnn/train_search.sh
`--child_eval_batch_size=500`). The draw is seeded by (run seed, the archive index of the record being
scored), so a resumed run, which replays archived records and scores only the missing ones, scores
each record on exactly the images the uninterrupted run used.

The shared-weight step of an image task is ENAS's search (melodyguan/enas scripts/cifar10_micro_search.sh,
micro_child.py, utils.py `get_train_ops`): SGD with Nesterov momentum 0.9, cosine with warm restarts
per epoch (SGDR: T_0 10, T_mul 2, 0.05 -> 0.0005), l2 over every shared weight at every step (torch's
weight decay 2 * l2_reg, with the weights off the sampled path stepped too, as a gradient of the l2 term
reaches every variable), dropout before the classifier, an auxiliary head weighted 0.4 (micro space) and
no gradient clipping (the code's "norm" clipping appends the unclipped gradient). docs/methods/
weight_sharing.md has the table of settings, their sources and the remaining deviations.

Loss and score come from the task's `Objective` (`train.objectives`): for images, accuracy with
batch statistics in BatchNorm (the supernet is in training mode, with running statistics frozen),
because running averages mix every architecture the supernet has trained; for language models
(`space=rnn`), ENAS' reward 80 / validation perplexity over `valid_batches` consecutive windows with
the hidden state starting from zero (ENAS carries it across controller steps), and shared-weight
training carries the hidden state from batch to batch in float32 (see `train.language_model`).
Language models keep their own recipe (conf/dataset/ptb.yaml `search.shared`: SGD lr 20, no momentum,
clip 0.25, cosine to 0 over the epochs, only the sampled path stepped).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, ContextManager, Sequence

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from naslab.archive import Archive, ArchiveRecord
from naslab.evaluators.base import Evaluation, Evaluator, G
from naslab.loggers import quiet_lightning
from naslab.search import SearchResult, save_trainer_checkpoint
from naslab.spaces.base import Space, Task
from naslab.strategies.base import Strategy
from naslab.train.layout import lay_out_network
from naslab.train.nonfinite import NonFiniteWatch, log_interval
from naslab.train.objectives import ImageObjective, Objective, StepLoss, objective_for

log = logging.getLogger(__name__)
Batch = tuple[torch.Tensor, torch.Tensor]
CHECKPOINT = "shared_search.ckpt"
SCHEDULERS = ("sgdr", "cosine")
# The learning-rate schedule a null `scheduler` / `lr_min` stands for, per task kind. Images: ENAS's
# (melodyguan/enas scripts/cifar10_micro_search.sh --child_lr_cosine --child_lr_min=0.0005). Text: the
# cosine to 0 over the epochs naslab's language-model search has always run (conf/dataset/ptb.yaml's
# `search.shared` names no schedule, and that file is the recipe of its own task).
TASK_SCHEDULES: dict[str, tuple[str, float]] = {"image": ("sgdr", 5e-4), "text": ("cosine", 0.0)}


def valid_batch_seed(seed: int, index: int) -> int:
    """Seed of the search-valid batches that score archive record `index` of a run seeded `seed`."""
    state = np.random.SeedSequence([seed % 2**64, index]).generate_state(1, np.uint64)[0]
    return int(state) >> 1  # torch.Generator.manual_seed takes < 2**63 as is


class SharedWeightsSearch(L.LightningModule):
    """Manual optimisation: shared-weight steps, then the strategy phase at the end of each epoch.

    `score_batches(index)` gives the search-valid batches that score archive record `index`.
    `step_every_weight`: every trainable weight takes an optimizer step at every step (zero gradient
    where the sampled path does not reach it, so weight decay and momentum still act), as ENAS's l2 term
    gives every variable a gradient; False: torch's default, parameters without a gradient are skipped.
    """

    def __init__(
        self,
        supernet: nn.Module,
        space: Space[Any],
        strategy: Strategy[Any],
        archive: Archive,
        train_loader: Any,
        score_batches: Callable[[int], Sequence[Batch]],
        run_dir: Path,
        seed: int,
        epochs: int,
        lr: float,
        momentum: float,
        weight_decay: float,
        grad_clip: float | None,
        strategy_steps: int,
        strategy_batch: int,
        strategy_every: int = 1,
        log_metrics: Callable[[dict[str, float], int], None] | None = None,
        objective: Objective | None = None,
        nesterov: bool = False,
        scheduler: str = "cosine",
        lr_min: float = 0.0,
        lr_T_0: int = 10,
        lr_T_mul: int = 2,
        auxiliary_weight: float = 0.0,
        step_every_weight: bool = False,
    ):
        super().__init__()
        self.automatic_optimization = False
        self.objective = objective or ImageObjective()
        self.supernet = supernet
        controller = getattr(strategy, "controller", None)
        if isinstance(controller, nn.Module):
            self.controller = controller  # registered: checkpointed with the shared weights
        self.space, self.strategy, self.archive = space, strategy, archive
        self.train_loader, self.score_batches = train_loader, score_batches
        self.run_dir, self.seed, self.epochs = Path(run_dir), seed, epochs
        # Nesterov momentum with momentum 0 is plain SGD (torch refuses the combination).
        self.optim = {
            "lr": lr,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "nesterov": bool(nesterov and momentum > 0),
        }
        self.schedule = {"name": scheduler, "lr_min": lr_min, "T_0": lr_T_0, "T_mul": lr_T_mul}
        self.grad_clip = grad_clip
        self.auxiliary_weight, self.step_every_weight = auxiliary_weight, step_every_weight
        self.strategy_steps, self.strategy_batch = strategy_steps, strategy_batch
        self.strategy_every = max(1, strategy_every)
        self.log_fn = log_metrics
        self.best_so_far = max((r.score for r in archive.records if r.error is None), default=0.0)
        self.nonfinite = NonFiniteWatch()  # no device sync per step on an accelerator

    def train_dataloader(self) -> Any:
        return self.train_loader

    def on_train_epoch_start(self) -> None:
        self.objective.reset()  # a language model's hidden state starts from zero each epoch
        self.nonfinite.reset()

    def configure_optimizers(self):
        params = [p for p in self.supernet.parameters() if p.requires_grad]  # ENAS: a frozen aux head is not trained
        optimizer = torch.optim.SGD(params, **self.optim)
        s = self.schedule
        if s["name"] == "sgdr":  # stepped once per epoch: ENAS's rate is a function of the epoch
            scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
                optimizer, T_0=int(s["T_0"]), T_mult=int(s["T_mul"]), eta_min=s["lr_min"]
            )
        else:
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
                optimizer, T_max=max(self.epochs, 1), eta_min=s["lr_min"]
            )
        return [optimizer], [scheduler]

    def weight_step_loss(self, batch: Batch, genotype: Any) -> StepLoss:
        """The shared-weight step's loss of `genotype` on a search-train batch.

        Images: cross-entropy of the training graph (`forward_with_aux`: dropout before the classifier)
        + `auxiliary_weight` x the auxiliary head's cross-entropy (ENAS micro_child.py `_build_train`:
        `train_loss = loss + 0.4 * aux_loss`). Language models: the objective's loss.
        """
        forward_with_aux = getattr(self.supernet, "forward_with_aux", None)
        if self.objective.kind != "image" or forward_with_aux is None:
            return self.objective.loss(self.supernet, batch, genotype)
        x, y = self.objective.lay_out(batch[0]), batch[1]
        logits, aux = forward_with_aux(x, genotype)
        nll = F.cross_entropy(logits, y)
        loss = nll
        if aux is not None and self.auxiliary_weight > 0:
            loss = nll + self.auxiliary_weight * F.cross_entropy(aux, y)
        return StepLoss(loss, nll, (logits.detach().argmax(1) == y).sum(), len(y))

    def training_step(self, batch: Batch, batch_idx: int) -> None:
        genotype = self.strategy.sample_for_training(1)[0]
        step = self.weight_step_loss(batch, genotype)
        loss = step.loss
        if self.nonfinite.diverged(loss, batch_idx, log_interval(self)):
            raise FloatingPointError(
                f"shared-weight loss is not finite at epoch {self.current_epoch}, {self.nonfinite.window()}"
            )
        optimizer = self.optimizers()
        optimizer.zero_grad(set_to_none=not self.step_every_weight)
        self.manual_backward(loss)
        if self.grad_clip is not None:
            self.clip_gradients(optimizer, gradient_clip_val=self.grad_clip, gradient_clip_algorithm="norm")
        optimizer.step()
        self.log("search/shared_loss", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=step.count)

    def on_train_start(self) -> None:
        if self.step_every_weight:  # a (zero) gradient from the first step on: every weight decays at every step
            for group in self.optimizers().param_groups:
                for p in group["params"]:
                    if p.grad is None:
                        p.grad = torch.zeros_like(p)
        if self.strategy.finished:  # resumed after the strategy's last phase (e.g. killed while deriving)
            log.info("the strategy had finished its course before this resume: no more shared training")
            self.trainer.should_stop = True

    def on_train_epoch_end(self) -> None:
        epoch = self.current_epoch
        if (epoch + 1) % self.strategy_every == 0 or epoch + 1 == self.epochs:
            times: Counter[str] = Counter()  # how often each architecture was proposed in this phase
            for _ in range(self.strategy_steps):
                genotypes = self.strategy.ask(self.strategy_batch)
                scores = [r.score for r in self.record_each(genotypes, f"epoch{epoch}", {"epoch": epoch}, times)]
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

    def record_each(
        self, genotypes: Sequence[Any], stage: str, extra: dict[str, Any], times: Counter[str]
    ) -> list[ArchiveRecord]:
        """Scores and archives `genotypes` under keys `<stage>:<key>`, the n-th repeat of one architecture
        within the stage (`times` counts them) under `<stage>/<n>:<key>`.

        ENAS scores every sample on a fresh batch, a repeated one too (a converging controller proposes the
        same cell again); the keys are a function of the order of proposals, so a resumed run finds them.
        """
        records = []
        for genotype in genotypes:
            key = self.space.key(genotype)
            times[key] += 1
            prefix = f"{stage}:" if times[key] == 1 else f"{stage}/{times[key]}:"
            records.append(self.record(genotype, prefix, extra))
        return records

    def record(self, genotype: Any, prefix: str, extra: dict[str, Any]) -> ArchiveRecord:
        """Scores `genotype` on its own search-valid batches and archives it, or returns the archived record.

        A new record's batches are `score_batches(index)` of the index it is archived under, so a
        resumed run (which finds the records archived before the kill and scores the rest in the same
        order) scores every record on the images the uninterrupted run used.
        """
        self.space.validate_partial(genotype)  # progressive strategies (EPNAS) score partial paths
        key = prefix + self.space.key(genotype)
        record = self.archive.get(key)
        if record is not None:
            return record
        start = time.perf_counter()
        index = len(self.archive)
        batches = [(x.to(self.device, non_blocking=True), y.to(self.device)) for x, y in self.score_batches(index)]
        with self.precision_context():
            score, measured = self.objective.score(self.supernet, genotype, batches)
        record = ArchiveRecord(
            index=index,
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

    def precision_context(self) -> ContextManager[Any]:
        """The Trainer's autocast (bf16-mixed / 16-mixed) for scoring outside training_step; none unattached."""
        trainer = self._trainer
        return trainer.precision_plugin.forward_context() if trainer is not None else nullcontext()

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
    """`evaluator=shared`: owns the search loop, because scores depend on the shared weights.

    The defaults are ENAS's image search (see the module docstring and conf/evaluator/shared.yaml);
    `scheduler` / `lr_min` None take the task's schedule (`TASK_SCHEDULES`). `classifier_dropout` and
    `auxiliary_weight` act on supernets that have them (`search_regularisers`: the micro supernet both,
    the macro supernet dropout only, as ENAS's macro child has no auxiliary head; a language model
    neither, its dropouts are `network`'s). `auxiliary_trained=False` leaves the auxiliary head at its
    initialisation as ENAS does (micro_child.py `_build_train` trains the variables without "aux_head"
    in their name); NAO-WS trains it (renqianluo/NAO NAO-WS/cnn/model_search.py). `valid_batch_size`
    None = the datamodule's default (images: the training batch size, ENAS's; text: the valid stream's
    columns).
    """

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
        nesterov: bool = True,
        weight_decay: float = 2e-4,
        grad_clip: float | None = None,
        scheduler: str | None = None,
        lr_min: float | None = None,
        lr_T_0: int = 10,
        lr_T_mul: int = 2,
        auxiliary_weight: float = 0.4,
        auxiliary_trained: bool = False,
        classifier_dropout: float = 0.1,
        train_batches: int | float | None = None,
        strategy_steps: int = 10,
        strategy_batch: int = 1,
        strategy_every: int = 1,
        derive_samples: int = 100,
        valid_batches: int = 1,
        valid_batch_size: int | None = None,
        network: dict[str, Any] | None = None,
        channels_last: bool = True,
    ):
        if valid_batches < 1:
            raise ValueError(f"evaluator.valid_batches must be >= 1, got {valid_batches}")
        if valid_batch_size is not None and valid_batch_size < 1:
            raise ValueError(f"evaluator.valid_batch_size must be >= 1 or null, got {valid_batch_size}")
        if int(lr_T_0) != lr_T_0 or lr_T_0 < 1 or int(lr_T_mul) != lr_T_mul or lr_T_mul < 1:
            raise ValueError(f"evaluator.lr_T_0 and lr_T_mul must be whole numbers >= 1, got {lr_T_0} and {lr_T_mul}")
        if not 0 <= classifier_dropout < 1 or auxiliary_weight < 0:
            raise ValueError(
                f"evaluator.classifier_dropout must be in [0, 1) and evaluator.auxiliary_weight >= 0, "
                f"got {classifier_dropout} and {auxiliary_weight}"
            )
        default_scheduler, default_lr_min = TASK_SCHEDULES.get(task.kind, TASK_SCHEDULES["image"])
        scheduler = scheduler or default_scheduler
        if scheduler not in SCHEDULERS:
            raise ValueError(f"unknown evaluator.scheduler '{scheduler}'; expected one of {SCHEDULERS}")
        self.space, self.task, self.seed, self.epochs = space, task, seed, epochs
        self.datamodule = datamodule_factory(batch_size=batch_size)
        self.trainer_factory = trainer_factory
        self.train_batches = train_batches
        torch.manual_seed(seed)
        self.objective = objective_for(task, channels_last=channels_last)
        self.supernet = space.build_supernet(
            task, channels=channels, cells_per_stage=cells_per_stage, **(network or {})
        )
        lay_out_network(self.supernet, self.objective.memory_format)
        has_aux = self._regularise(classifier_dropout, auxiliary_weight, auxiliary_trained)
        self.hparams = {
            "lr": lr,
            "momentum": momentum,
            "nesterov": nesterov,
            "weight_decay": weight_decay,
            "grad_clip": grad_clip,
            "scheduler": scheduler,
            "lr_min": default_lr_min if lr_min is None else lr_min,
            "lr_T_0": lr_T_0,
            "lr_T_mul": lr_T_mul,
            "auxiliary_weight": auxiliary_weight if has_aux else 0.0,
            # ENAS's l2 reaches every weight at every step; a language model keeps torch's sparse steps
            "step_every_weight": self.objective.kind == "image",
            "strategy_steps": strategy_steps,
            "strategy_batch": strategy_batch,
            "strategy_every": strategy_every,
        }
        self.derive_samples, self.valid_batches, self.valid_batch_size = derive_samples, valid_batches, valid_batch_size

    def _regularise(self, dropout: float, auxiliary_weight: float, auxiliary_trained: bool) -> bool:
        """Sets the supernet's search-time dropout and auxiliary head; True if it has the head."""
        supported = getattr(self.supernet, "search_regularisers", ())
        missing = [
            key
            for key, wanted, name in (
                ("classifier_dropout", dropout > 0, "dropout"),
                ("auxiliary_weight", auxiliary_weight > 0, "auxiliary"),
            )
            if wanted and name not in supported
        ]
        if missing:
            log.info(
                "%s takes no %s: unused", type(self.supernet).__name__, " / ".join(f"evaluator.{k}" for k in missing)
            )
        if "dropout" in supported:
            self.supernet.dropout = dropout
        if auxiliary_weight <= 0 or "auxiliary" not in supported:
            return False
        self.supernet.add_auxiliary_head()
        if not auxiliary_trained:
            self.supernet.auxiliary_head.requires_grad_(False)
        return True

    def score_batches(self, index: int) -> list[Batch]:
        """The search-valid batches that score archive record `index`: random, seeded by (seed, index)."""
        generator = torch.Generator().manual_seed(valid_batch_seed(self.seed, index))
        return self.datamodule.random_valid_batches(self.valid_batches, self.valid_batch_size, generator)

    def _valid(self, n: int) -> list[Batch]:
        self.datamodule.setup()
        batches = []
        for batch in self.datamodule.val_dataloader():
            batches.append(batch)
            if len(batches) == n:
                break
        return batches

    def evaluate(self, genotypes: Sequence[G]) -> list[Evaluation]:
        """Score (accuracy, or 80 / perplexity) of each architecture on the first `valid_batches` valid batches.

        Unlike the search, every architecture reads the same fixed batches, on purpose: the ranking
        study (`naslab.ranking_study`) compares architectures with each other (Kendall tau against a
        ground truth), and per-architecture random batches would add batch-to-batch noise to every pair.
        """
        return self._score_fixed(genotypes, self.valid_batches)

    def _score_fixed(self, genotypes: Sequence[G], num_batches: int) -> list[Evaluation]:
        batches = self._valid(num_batches)
        out = []
        for g in genotypes:
            start = time.perf_counter()
            score, measured = self.objective.score(self.supernet, g, batches)
            out.append(Evaluation(score, None, None, time.perf_counter() - start, extra=measured))
        return out

    def score_shared(self, genotypes: Sequence[G], num_batches: int) -> list[float]:
        """Scores with the current shared weights on the first `num_batches` search-valid batches (all alike)."""
        return [e.score for e in self._score_fixed(genotypes, num_batches)]

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
            self.score_batches,
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
        # ENAS's derivation: sample M architectures, score each with the shared weights on its own
        # search-valid batches, keep the best.
        candidates = strategy.candidates(self.derive_samples)
        derived = module.record_each(candidates, "derive", {"derive": True}, Counter())
        best = max(derived, key=lambda r: r.score)
        return SearchResult(
            best_genotype=self.space.genotype_from_dict(best.genotype),
            best_score=best.score,
            num_evaluated=len(archive),
            wall_seconds=time.perf_counter() - start,
            archive=archive,
            shared_scorer=self.score_shared,
        )
