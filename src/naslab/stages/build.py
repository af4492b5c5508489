"""Config -> objects: every Hydra `instantiate` of a run's parts, with one-line errors for bad values.

The classes a config names are read without building them (`strategy_class`, `evaluator_class`), so a
run's search and its data needs are known before anything is built.
"""

from __future__ import annotations

import re
from typing import Any

import lightning as L
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig

from naslab.errors import ConfigError, UserError
from naslab.search import search_kind
from naslab.spaces.base import Space, Task


def build(node: DictConfig, key: str, **kwargs: Any) -> Any:
    """`instantiate(node)`, where a constructor's ValueError (a bad value) or an argument-binding TypeError
    (an unknown setting) becomes one ConfigError line naming `key`; anything else stays the bug it is."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, UserError):
            raise cause from None
        # A constructor's ValueError is its check of a value (naslab's convention); a TypeError from binding
        # the arguments is an unknown or missing setting. Anything else raised inside is a bug: traceback.
        binding = isinstance(cause, TypeError) and re.search(
            r"unexpected keyword|required (positional|keyword)", str(cause)
        )
        if isinstance(cause, ValueError) or binding:
            raise ConfigError(f"{key}: {cause}") from None
        raise


def datamodule(cfg: DictConfig, phase: str, **overrides: Any) -> L.LightningDataModule:
    return instantiate(cfg.dataset.datamodule, phase=phase, **overrides)


def datamodule_factory(cfg: DictConfig, phase: str = "search") -> Any:
    """The datamodule as a factory: searches and evaluators build it with their own batch sizes."""
    return instantiate(cfg.dataset.datamodule, phase=phase, _partial_=True)


def trainer_factory(cfg: DictConfig) -> Any:
    """`cfg.trainer` as a factory of Lightning Trainers: every training loop adds its own settings."""
    return instantiate(cfg.trainer, _partial_=True)


def task_of(cfg: DictConfig, dm: Any) -> Task:
    """What networks must fit, from the datamodule: classes and input shape, or a corpus' vocabulary."""
    if hasattr(dm, "vocab_size"):  # a text corpus: reads its files to know the vocabulary
        return Task(dm.vocab_size, (), cfg.dataset.stem, kind="text")
    # A datamodule may say what its samples are (tabular data: kind = "tabular"); images otherwise.
    kind = getattr(dm, "kind", "image")
    return Task(dm.num_classes, tuple(dm.input_shape), cfg.dataset.stem, kind=kind)


def strategy_class(cfg: DictConfig) -> Any:
    """The class `cfg.strategy` names (its `name`, `search_kinds`, `check_search`), without building it."""
    return get_class(str(cfg.strategy._target_))


def evaluator_class(cfg: DictConfig) -> Any:
    """The class `cfg.evaluator` names: its `name`, `needs_data` and `search_kind`, without building it."""
    return get_class(str(cfg.evaluator._target_))


def run_search_kind(cfg: DictConfig) -> str:
    """The search this run's strategy and evaluator need (naslab.search.SEARCHES)."""
    return search_kind(strategy_class(cfg), evaluator_class(cfg))


def check_strategy_fits_search(cfg: DictConfig) -> None:
    """One ConfigError line when the strategy cannot run in the search its evaluator needs (NASES with
    weight sharing, NAO with shared weights but without re-scoring its population, ...)."""
    kind = run_search_kind(cfg)
    reason = strategy_class(cfg).check_search(kind, cfg.strategy)
    if reason:
        raise ConfigError(f"strategy / evaluator: {reason}")


def build_evaluator(
    cfg: DictConfig, space: Space[Any], task: Task | None, trainer_factory: Any, **overrides: Any
) -> Any:
    """`cfg.evaluator` built for `space` (the Task dataclass stays a Task, config dicts plain dicts)."""
    return build(
        cfg.evaluator,
        "evaluator",
        space=space,
        task=task,
        datamodule_factory=datamodule_factory(cfg, "search"),
        trainer_factory=trainer_factory,
        _convert_="object",
        **overrides,
    )
