"""The weight-sharing search (ENAS): one supernet whose paths are the architectures, trained in alternation
with the strategy.

Each epoch, as in ENAS ("Efficient Neural Architecture Search via Parameter Sharing", Pham, Guan,
Zoph, Le, Dean, arXiv:1802.03268): (1) shared-weight training on the search-train split, one
architecture per step from the strategy's weight-sharing role `train_on()` (`strategies.base.SharesWeights`;
ENAS: the controller's sample through `ask`; NAO-WS: a member of its pool); (2) every `strategy_every`
epochs and after the last, the strategy's update: it is asked for architectures, each is scored with
the current shared weights, and told the results. After the last epoch, the proposals of the role's
`derive_from(n)` (ENAS: sampled from the controller; NAO-WS: its population) are scored; the best is
the search's result (ENAS's derivation). Any strategy with the `shared` search kind works:
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

Faults. A NaN or infinite shared-weight loss stops the search rather than skipping the step: on an
accelerator the loss is read only every `log_every_n_steps` steps (`NonFiniteWatch`, no device sync per
step), so when it is seen the NaN has already reached the shared weights, on which every later score
depends. The `TrainingDivergedError` line names the epoch and step window, the last good checkpoint (the
previous epoch's: the loss flag and the weights are checked at each epoch's end before anything is
scored or saved) and the archive, which keeps every record. A resume refuses a checkpoint it cannot trust
(truncated, garbage, non-finite) in one `CorruptStateError` line naming the file; moved away, shared
training starts again from epoch 0.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, ContextManager, NoReturn, Sequence

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from naslab.archive import Archive, ArchiveRecord
from naslab.errors import TrainingDivergedError
from naslab.evaluators.shared import CHECKPOINT, Batch, SharedEvaluator
from naslab.loggers import log_metrics, quiet_lightning
from naslab.search.base import G, Search, SearchResult, make_record, save_trainer_checkpoint
from naslab.spaces.base import Space
from naslab.strategies.base import Proposal, Result, Strategy, weight_sharing_role
from naslab.train.nonfinite import (
    NonFiniteWatch,
    check_checkpoint,
    describe_names,
    log_interval,
    nonfinite_tensors,
)
from naslab.train.objectives import ImageObjective, Objective, StepLoss

log = logging.getLogger(__name__)


class SharedWeightsModule(L.LightningModule):
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
        self.role = weight_sharing_role(strategy)  # what to train on and derive from
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
        genotype = self.role.train_on()
        step = self.weight_step_loss(batch, genotype)
        loss = step.loss
        if self.nonfinite.diverged(loss, batch_idx, log_interval(self)):
            self._diverged(f"the loss is not finite at epoch {self.current_epoch}, {self.nonfinite.window()}")
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
        if self.role.finished:  # resumed after the strategy's last phase (e.g. killed while deriving)
            log.info("the strategy had finished its course before this resume: no more shared training")
            self.trainer.should_stop = True

    def _diverged(self, what: str) -> NoReturn:
        raise TrainingDivergedError(
            f"shared-weight training diverged: {what}; lower evaluator.lr (or set evaluator.grad_clip) "
            "and start a new run"
        )

    def _check_finite(self) -> None:
        """The loss steps not read yet (an accelerator's last steps of the epoch) and the weights: a diverged
        supernet would score garbage into the archive and be saved as the epoch's checkpoint."""
        if self.nonfinite.read_now():
            self._diverged(f"the loss is not finite at epoch {self.current_epoch}, {self.nonfinite.window()}")
        bad = nonfinite_tensors(self.state_dict())
        if bad:
            self._diverged(f"the weights are not finite after epoch {self.current_epoch} ({describe_names(bad)})")

    def on_train_epoch_end(self) -> None:
        epoch = self.current_epoch
        self._check_finite()  # before anything is scored, archived or saved
        if (epoch + 1) % self.strategy_every == 0 or epoch + 1 == self.epochs:
            times: Counter[str] = Counter()  # how often each architecture was proposed in this phase
            for _ in range(self.strategy_steps):
                proposals = self.strategy.ask(self.strategy_batch)
                records = self.record_each(proposals, f"epoch{epoch}", {"epoch": epoch}, times)
                self.strategy.tell([Result(p.genotype, r.score, r.extra, r.error) for p, r in zip(proposals, records)])
                metrics = self.strategy.pop_metrics()
                if metrics and self.log_fn is not None:
                    self.log_fn({f"strategy/{k}": v for k, v in metrics.items()}, len(self.archive))
                if self.role.finished:
                    break
            if self.role.finished and epoch + 1 < self.epochs:
                log.info(
                    "the strategy finished its course after epoch %d of %d: shared training stops",
                    epoch + 1,
                    self.epochs,
                )
                self.trainer.should_stop = True
        self.lr_schedulers().step()
        self.save_search_checkpoint()

    def record_each(
        self, proposals: Sequence[Proposal[Any]], stage: str, extra: dict[str, Any], times: Counter[str]
    ) -> list[ArchiveRecord]:
        """Scores and archives `genotypes` under keys `<stage>:<key>`, the n-th repeat of one architecture
        within the stage (`times` counts them) under `<stage>/<n>:<key>`.

        ENAS scores every sample on a fresh batch, a repeated one too (a converging controller proposes the
        same cell again); the keys are a function of the order of proposals, so a resumed run finds them.
        """
        records = []
        for proposal in proposals:
            key = self.space.key(proposal.genotype)
            times[key] += 1
            prefix = f"{stage}:" if times[key] == 1 else f"{stage}/{times[key]}:"
            records.append(self.record(proposal, prefix, extra))
        return records

    def record(self, proposal: Proposal[Any], prefix: str, extra: dict[str, Any]) -> ArchiveRecord:
        """Scores `genotype` on its own search-valid batches and archives it, or returns the archived record.

        A new record's batches are `score_batches(index)` of the index it is archived under, so a
        resumed run (which finds the records archived before the kill and scores the rest in the same
        order) scores every record on the images the uninterrupted run used.
        """
        genotype = proposal.genotype
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
        record = make_record(
            self.space,
            genotype,
            key,
            index,
            self.seed,
            score,
            epochs=float(self.current_epoch + 1),
            wall_seconds=time.perf_counter() - start,
            extra={**extra, **measured, **proposal.info},
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
        bad = nonfinite_tensors(checkpoint["state_dict"])  # e.g. a controller the strategy phase broke
        if bad:
            self._diverged(f"the weights are not finite after epoch {self.current_epoch} ({describe_names(bad)})")
        checkpoint["strategy"] = self.strategy.state_dict()
        checkpoint["torch_rng"] = torch.get_rng_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.strategy.load_state_dict(checkpoint["strategy"])
        torch.set_rng_state(checkpoint["torch_rng"])


class SharedWeightSearch(Search[G]):
    """`evaluator=shared`: the strategy and one supernet (the evaluator's) trained in alternation.

    Scores depend on the shared weights, which keep training, so this search interleaves shared-weight
    epochs with the strategy's ask / tell phases instead of scoring proposals one by one. What the
    strategy trains on and derives from is its weight-sharing role (`strategies.base.SharesWeights`).
    """

    kind = "shared"
    budget_unit = "shared_epochs"

    def __init__(self, space: Space[G], strategy: Strategy[G], evaluator: SharedEvaluator[G]):
        self.space, self.strategy, self.evaluator = space, strategy, evaluator

    def close(self) -> None:
        self.evaluator.close()

    def run(self, run_dir: Path, resume: bool = False, logger: Any = None) -> SearchResult[G]:
        run_dir = Path(run_dir)
        start = time.perf_counter()
        strategy, evaluator = self.strategy, self.evaluator
        log_fn = (lambda metrics, step: log_metrics(logger, metrics, step)) if logger is not None else None
        archive = Archive(run_dir / "archive.jsonl", resume=resume)
        evaluator.datamodule.setup()
        module = SharedWeightsModule(
            evaluator.supernet,
            evaluator.space,
            strategy,
            archive,
            evaluator.datamodule.train_dataloader(),
            evaluator.score_batches,
            run_dir,
            evaluator.seed,
            evaluator.epochs,
            log_metrics=log_fn,
            objective=evaluator.objective,
            **evaluator.hparams,
        )
        overrides = {} if evaluator.train_batches is None else {"limit_train_batches": evaluator.train_batches}
        with quiet_lightning():
            trainer = evaluator.trainer_factory(
                max_epochs=evaluator.epochs,
                logger=False,
                enable_checkpointing=False,
                enable_model_summary=False,
                limit_val_batches=0,
                num_sanity_val_steps=0,
                default_root_dir=str(run_dir),
                **overrides,
                # manual optimisation under mixed precision would clip a language model's gradients unscaled
                **({"precision": "32-true"} if evaluator.task.kind == "text" else {}),
            )
        checkpoint = run_dir / CHECKPOINT
        ckpt_path = str(checkpoint) if resume and checkpoint.exists() else None
        if ckpt_path:
            check_checkpoint(
                checkpoint,
                "move it away and run resume=true again: shared-weight training then starts again from epoch 0 with "
                f"the strategy from its seed, and {archive.path.name} is kept (a record in it is not scored again)",
            )
            log.info("resuming the shared-weight search from %s", checkpoint)
        try:
            with quiet_lightning():
                trainer.fit(module, ckpt_path=ckpt_path)
        except TrainingDivergedError as err:
            if not checkpoint.exists():
                kept = "no epoch had finished, so no checkpoint was written"
            else:
                kept = f"the last good checkpoint is {checkpoint} (after epoch {module.current_epoch - 1})"
            raise TrainingDivergedError(f"{err}; {kept}; {archive.path} keeps its {len(archive)} records") from err
        # ENAS's derivation: sample M architectures, score each with the shared weights on its own
        # search-valid batches, keep the best.
        candidates = module.role.derive_from(evaluator.derive_samples)
        derived = module.record_each(candidates, "derive", {"derive": True}, Counter())
        if not derived:
            raise RuntimeError(f"strategy {strategy.name} offered no architecture to derive the result from")
        best = max(derived, key=lambda r: r.score)
        return SearchResult(
            best_genotype=self.space.genotype_from_dict(best.genotype),
            best_score=best.score,
            num_evaluated=len(archive),
            wall_seconds=time.perf_counter() - start,
            archive=archive,
            shared_scorer=evaluator.score_shared,
        )
