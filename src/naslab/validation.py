"""One validation pass over a composed config, before anything is built, trained or logged.

Hydra types what the YAML files type, but an override such as `evaluator.channels=abc` or
`evaluator.epochs=0` composes fine and would fail (or silently do nothing) minutes later, after W&B
started or an autoencoder pretrained. `validate_config` checks the numeric settings every run uses
against the rules below and raises `ConfigError` naming the key, its value and what it must be.
A key that is absent (another evaluator, another strategy) or null is not checked.

Imports no torch: `run.py` validates before Hydra makes the run dir, so a refused run writes nothing.
"""

from __future__ import annotations

import numbers
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from naslab.errors import ConfigError

MODES = ("search", "train", "search_train", "summary", "groundtruth", "ranking", "report", "export")
BACKENDS = ("local", "pool", "ray")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def positive_int(value: Any) -> str | None:
    return None if _is_int(value) and value >= 1 else "an integer >= 1"


def non_negative_int(value: Any) -> str | None:
    return None if _is_int(value) and value >= 0 else "an integer >= 0"


def any_int(value: Any) -> str | None:
    return None if _is_int(value) else "an integer"


def positive_number(value: Any) -> str | None:
    return None if _is_number(value) and value > 0 else "a number > 0"


def non_negative_number(value: Any) -> str | None:
    return None if _is_number(value) and value >= 0 else "a number >= 0"


def probability(value: Any) -> str | None:
    return None if _is_number(value) and 0 <= value <= 1 else "a number in [0, 1]"


def batches(value: Any) -> str | None:
    """A count of batches (>= 1) or a fraction of them in (0, 1]."""
    if _is_int(value) and value >= 1 or _is_number(value) and 0 < value <= 1:
        return None
    return "a number of batches >= 1 or a fraction in (0, 1]"


def seed_list(value: Any) -> str | None:
    ok = isinstance(value, (list, tuple)) and len(value) > 0 and all(_is_int(v) for v in value)
    return None if ok else "a non-empty list of integer seeds, e.g. [0,1,2]"


def boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else "true or false"


def one_of(*choices: Any) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if value in choices else "one of " + ", ".join(str(c) for c in choices)

    return check


# key -> rule; each rule returns None when the value is fine, else what the value must be.
RULES: dict[str, Callable[[Any], str | None]] = {
    "mode": one_of(*MODES),
    "resume": boolean,
    "seed": any_int,
    "threads": positive_int,
    "search.num_architectures": positive_int,
    "search.batch_size": positive_int,
    "search.rank_batches": positive_int,
    "evaluator.epochs": positive_int,
    "evaluator.batch_size": positive_int,
    "evaluator.channels": positive_int,
    "evaluator.cells_per_stage": positive_int,
    "evaluator.train_batches": batches,
    "evaluator.lr": positive_number,
    "evaluator.backend": one_of(*BACKENDS),
    "evaluator.workers": positive_int,
    "evaluator.cpus_per_trial": positive_number,
    "evaluator.gpus_per_trial": non_negative_number,
    "evaluator.max_retries": non_negative_int,
    "evaluator.strategy_steps": non_negative_int,
    "evaluator.strategy_every": positive_int,
    "evaluator.valid_batches": positive_int,
    "evaluator.derive_samples": positive_int,
    "evaluator.bn_recalibration": positive_int,
    "train.epochs": positive_int,
    "train.batch_size": positive_int,
    "train.channels": positive_int,
    "train.cells_per_stage": positive_int,
    "train.lr": positive_number,
    "train.weight_decay": non_negative_number,
    "train.auxiliary_weight": non_negative_number,
    "train.drop_path_prob": probability,
    "train.label_smoothing": probability,
    "train.seed": any_int,
    "strategy.epochs": positive_int,
    "strategy.batch_size": positive_int,
    "strategy.order": one_of(1, 2),
    "strategy.budget": positive_int,
    "strategy.iterations": positive_int,
    "strategy.k": positive_int,
    "strategy.population_size": positive_int,  # evolution (its constructor also asks for >= 2 and S <= P)
    "strategy.sample_size": positive_int,
    "strategy.identity_prob": probability,
    "groundtruth.seeds": seed_list,
    "groundtruth.sample": positive_int,
    "ranking.seeds": seed_list,
    "ranking.valid_batches": positive_int,
}


def _value(cfg: DictConfig, key: str) -> Any:
    """The resolved value at `key` (None when absent); a value that cannot resolve is a ConfigError."""
    try:
        value = OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=True)
    except OmegaConfBaseException as err:
        raise ConfigError(f"{key}: {str(err).splitlines()[0]}") from None
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def validate_config(cfg: DictConfig) -> None:
    """Raises ConfigError for the first setting that breaks its rule (see RULES), or a mode without the
    setting it needs."""
    if _value(cfg, "mode") == "export" and not _value(cfg, "export.run"):
        raise ConfigError("mode=export needs export.run=<the dir of a mode=train or mode=search_train run>")
    for key, rule in RULES.items():
        value = _value(cfg, key)
        if value is None:
            continue
        expected = rule(value)
        if expected is not None:
            raise ConfigError(f"{key}={value!r} is not valid: it must be {expected}")
