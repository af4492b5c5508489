"""Experiment loggers: W&B by default (offline without an API key), CSV, or none.

W&B must never prompt or touch the network when no key is configured: `mode: auto` picks
offline mode then, and the run can be synced later with `wandb sync <run dir>/wandb`.
"""

from __future__ import annotations

import logging
import netrc
import os
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from omegaconf import DictConfig

from naslab.errors import ConfigError

log = logging.getLogger(__name__)


def wandb_key_available() -> bool:
    """True when W&B can authenticate without asking: WANDB_API_KEY or a netrc entry."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def wandb_logger(
    save_dir: str,
    project: str = "naslab",
    name: str | None = None,
    group: str | None = None,
    tags: Sequence[str] = (),
    mode: str = "auto",
    run_id: str | None = None,
) -> WandbLogger:
    """A WandbLogger; mode 'auto' is online only when a key is available, else offline.

    `run_id`: a resumed naslab run's saved W&B id; the logger continues that W&B run (`resume="allow"`),
    so its charts go on where they stopped instead of starting a second run.
    """
    if mode not in ("auto", "online", "offline"):
        raise ConfigError(f"logger.mode must be auto, online or offline, got '{mode}'")
    offline = mode == "offline" or (mode == "auto" and not wandb_key_available())
    if offline:
        log.info("W&B in offline mode (no API key); sync later with `wandb sync %s/wandb`", save_dir)
    os.environ.setdefault("WANDB_SILENT", "true")
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    resume = {"id": run_id, "resume": "allow"} if run_id else {}
    logger = WandbLogger(
        project=project, name=name, group=group, tags=list(tags), save_dir=save_dir, offline=offline, **resume
    )
    # Lightning passes `anonymous=None` to wandb.init, and wandb 0.31 warns about any anonymous value
    # ("The anonymous setting has no effect"); the key is dropped so every run does not print it.
    getattr(logger, "_wandb_init", {}).pop("anonymous", None)
    return logger


def wandb_run_id(logger: Logger | None) -> str | None:
    """The W&B run id of a WandbLogger (saved in results.json, so a resume continues the run), else None."""
    if isinstance(logger, WandbLogger):
        return str(logger.experiment.id)
    return None


def csv_logger(save_dir: str, name: str = "csv") -> CSVLogger:
    return CSVLogger(save_dir=save_dir, name=name, version="")


def log_images(logger: Logger | None, key: str, paths: Sequence[Path]) -> None:
    """Sends pictures to W&B; other loggers keep them as files in the run dir only."""
    if isinstance(logger, WandbLogger):
        for path in paths:  # one key per picture: W&B shows a list of differently sized images badly
            logger.log_image(key=f"{key}/{Path(path).stem}", images=[str(path)])


def log_table(logger: Logger | None, key: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A sortable table in W&B (e.g. every evaluated architecture); other loggers have the JSONL."""
    if isinstance(logger, WandbLogger) and rows:
        logger.log_table(key=key, columns=list(columns), data=[list(r) for r in rows])


def log_summary(logger: Logger | None, values: dict[str, Any]) -> None:
    """Puts values in the W&B run's summary (e.g. results.json, for a report built from a W&B group)."""
    if isinstance(logger, WandbLogger):
        logger.experiment.summary.update(values)


def log_metrics(logger: Logger | None, metrics: dict[str, float], step: int | None = None) -> None:
    if logger is not None:
        logger.log_metrics(metrics, step=step)


def close_logger(logger: Logger | None, status: str) -> None:
    """Finalizes the logger and ends the W&B run (also after an error), so no process lingers."""
    if logger is None:
        return
    try:
        logger.finalize(status)
    finally:
        if isinstance(logger, WandbLogger):
            import wandb

            if wandb.run is not None:
                wandb.finish(exit_code=0 if status == "success" else 1)


def hyperparameters(cfg: Any) -> dict[str, Any]:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


_LIGHTNING_INFO_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """Hides Lightning's per-Trainer banners (GPU available, tips) while many children train."""
    loggers = [logging.getLogger(name) for name in _LIGHTNING_INFO_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def filter_known_warnings() -> None:
    """Silences warnings that are expected in naslab's use of Lightning and say nothing useful."""
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")
    # final training has no validation split on purpose (the test set is touched once, at the end)
    warnings.filterwarnings("ignore", message=".*Total length of `list` across ranks is zero.*")
    warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    # DARTS steps its cosine schedule at each epoch's start (so a resumed run gets the right rate);
    # in a resumed process that step comes before the first optimizer step, which torch flags.
    warnings.filterwarnings("ignore", message=".*lr_scheduler.step\\(\\)` before `optimizer.step\\(\\)`.*")


# --- W&B names: groups that aggregate seeds, run names within a study ---------------------------------
def _setting(cfg: DictConfig) -> tuple[list[str], str | None]:
    """([dataset, space, strategy, evaluator], experiment) as Hydra recorded the choices (class names without Hydra)."""
    choices: dict[str, Any] = {}
    if HydraConfig.initialized():
        choices = dict(HydraConfig.get().runtime.choices)
    names = [str(cfg.dataset.name)]
    for key in ("space", "strategy", "evaluator"):
        names.append(str(choices.get(key) or cfg[key]._target_.rsplit(".", 1)[-1]))
    return names, choices.get("experiment")


def run_group(cfg: DictConfig, with_evaluator: bool = True) -> str:
    """The W&B group of a run: runs that differ only in their seed share it, so W&B aggregates them.

    Made of the config choices (dataset, space, strategy, evaluator and the experiment preset, as
    Hydra recorded them), e.g. `digits/micro_small/nao+standalone`; `logger.group=...` overrides it.
    `with_evaluator=False` for a search that takes no evaluator (DARTS: the pipeline says which).
    """
    names, experiment = _setting(cfg)
    group = f"{names[0]}/{names[1]}/{names[2]}" + (f"+{names[3]}" if with_evaluator else "")
    return f"{experiment}:{group}" if experiment else group


def logger_names(cfg: DictConfig, with_evaluator: bool = True) -> dict[str, str]:
    """The W&B group and run name a run gets when `logger.group` / `logger.name` are left null.

    Runs of one `study=` share its group (`study_group`) and are named `<strategy>+<evaluator>/seed<s>`;
    otherwise the group is the setting (`run_group`), so the seeds of one setting are aggregated together.
    """
    names: dict[str, str] = {}
    if "group" in cfg.logger and cfg.logger.group is None:
        names["group"] = study_group(cfg) if cfg.get("study") else run_group(cfg, with_evaluator)
    if cfg.get("study") and "name" in cfg.logger and cfg.logger.name is None and cfg.mode != "report":
        setting, _ = _setting(cfg)
        method = f"{setting[2]}+{setting[3]}" if with_evaluator else setting[2]
        names["name"] = f"{method}/seed{cfg.seed}"
    return names


def study_group(cfg: DictConfig) -> str:
    """A study's W&B group: `<study>/<sweep dir name>` in a multirun (one group per sweep, so re-runs and
    debug trials do not mix into it), the study's name otherwise."""
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return f"{cfg.study}/{Path(HydraConfig.get().sweep.dir).name}"
    return str(cfg.study)
