"""Training a strategy's own model (NAO's encoder-predictor-decoder, EPNAS's surrogate) with a Lightning Trainer.

Strategies train their models many times during a search, so the Trainer is quiet (no logger, bar,
summary or checkpoints) and runs on its own torch RNG stream seeded by `seed`: the same data gives the
same model whatever ran before (e.g. after a resume), and the search's own random streams are left as
they were. It also runs on exactly one torch thread (`one_thread`), as should the model's inference: CPU
kernels sum in an order that depends on the thread count, and a strategy's decisions (which cell NAO's
decoder emits, which the surrogate ranks first) must not change with the process's `threads` setting.
These models are tiny, so a second thread only adds synchronisation.

A strategy's model sees a few to a few hundred architectures for hundreds of epochs (NAO: 1000), so an
epoch is often one or two steps and Lightning's per-epoch work would cost more than the steps.
`ShuffledPasses` hands the Trainer all the epochs' batches as one epoch, in exactly the order the
per-epoch DataLoader gave them, so a generation costs time in proportion to its data.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import lightning as L
import torch
from torch.utils.data import Dataset, TensorDataset, default_collate

from naslab.loggers import quiet_lightning


class OwnModel(L.LightningModule):
    """A strategy's own model: its `training_step` logs per-epoch metrics only when `logs(batch_idx)`.

    `train_in_passes` runs many epochs as one Lightning epoch and sets `log_from_step` to the first
    step of the last pass, so the epoch means it logs are the last pass's, as the last epoch's were.
    """

    log_from_step = 0

    def logs(self, batch_idx: int) -> bool:
        """Whether this step's losses enter the logged epoch means."""
        return batch_idx >= self.log_from_step


@contextmanager
def own_torch_rng(seed: int) -> Iterator[None]:
    """Runs the block on a torch RNG seeded with `seed`, restoring the caller's torch RNG afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@contextmanager
def one_thread() -> Iterator[None]:
    """Runs the block on one torch intra-op thread, restoring the caller's count afterwards; also a decorator
    (`@one_thread()`). A strategy's own model trains and infers under it, so its numbers, bit for bit, do
    not depend on `torch.set_num_threads` (run.py's `threads`, OMP_NUM_THREADS)."""
    threads = torch.get_num_threads()
    if threads != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


def train_own_model(
    model: L.LightningModule,
    loader: Any,
    epochs: int,
    seed: int,
    accelerator: str = "cpu",
    **trainer_options: Any,
) -> dict[str, float]:
    """Fits `model` on `loader` for `epochs` epochs on one torch thread (model left on the CPU); returns the
    last metrics."""
    with own_torch_rng(seed), one_thread(), quiet_lightning():
        trainer = L.Trainer(
            max_epochs=epochs,
            accelerator=accelerator,
            devices=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            **trainer_options,
        )
        trainer.fit(model, loader)
    model.cpu()
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


class ShuffledPasses:
    """`passes` shuffled passes over a dataset as one iterable of batches.

    The batches, in order, that `passes` epochs of `DataLoader(dataset, batch_size, shuffle=True,
    generator=generator, collate_fn=collate)` give: each pass draws from `generator` what that loader
    draws per epoch (its iterator's base seed, the sampler's permutation, and the sampler's second
    permutation for the empty remainder of `num_samples % n`), so a search trains the same model as
    before while Lightning runs one epoch instead of `passes`. A `TensorDataset` is indexed directly.
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        passes: int,
        generator: torch.Generator,
        collate: Callable[[list[Any]], Any] = default_collate,
    ) -> None:
        self.dataset, self.batch_size, self.passes = dataset, batch_size, passes
        self.generator, self.collate = generator, collate
        self.size = len(dataset)  # type: ignore[arg-type]

    @property
    def batches_per_pass(self) -> int:
        return math.ceil(self.size / self.batch_size)

    def __len__(self) -> int:
        return self.passes * self.batches_per_pass

    def __iter__(self) -> Iterator[Any]:
        for _ in range(self.passes):
            torch.empty((), dtype=torch.int64).random_(generator=self.generator)  # the loader iterator's base seed
            order = torch.randperm(self.size, generator=self.generator)
            torch.randperm(self.size, generator=self.generator)  # RandomSampler's draw for the empty remainder
            for ids in order.split(self.batch_size):
                if isinstance(self.dataset, TensorDataset):
                    yield [t[ids] for t in self.dataset.tensors]
                else:
                    yield self.collate([self.dataset[i] for i in ids.tolist()])


def train_in_passes(
    model: OwnModel,
    loader: ShuffledPasses,
    seed: int,
    accelerator: str = "cpu",
    **trainer_options: Any,
) -> dict[str, float]:
    """`train_own_model` over `loader.passes` epochs run as one Lightning epoch; returns the last pass's
    metrics (see `OwnModel`)."""
    model.log_from_step = (loader.passes - 1) * loader.batches_per_pass
    try:
        return train_own_model(model, loader, 1, seed, accelerator, **trainer_options)
    finally:
        del model.log_from_step  # back to the class's 0: a later plain Trainer logs every step
