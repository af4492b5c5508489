"""A run's stages in order: check, search (or load a genotype), train, test; results.json throughout.

`run(cfg)` is what `run.py` calls and what tests call with a composed config; it returns the dict it
writes to `results.json`. The stages themselves live in `naslab.stages` (build, search, studies,
final); this module only sequences them, checks what a user can get wrong before anything starts,
and closes the logger on every exit path.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import lightning as L
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from naslab.errors import STORAGE_ERRNOS, ConfigError, GenotypeError, RunDirWriteError, RunInterrupted
from naslab.interrupt import acknowledge
from naslab.loggers import (
    close_logger,
    filter_known_warnings,
    hyperparameters,
    log_images,
    log_summary,
    logger_names,
    wandb_run_id,
)
from naslab.plots.genotype import draw_genotype_pictures
from naslab.records import atomic_write_text, genotype_file, read_json
from naslab.spaces.base import Space
from naslab.spaces.published import load_genotype_data
from naslab.stages.build import (
    build,
    check_strategy_fits_search,
    datamodule,
    evaluator_class,
    run_search_kind,
    trainer_factory,
)
from naslab.stages.final import export_stage, summary_stage, train_stage
from naslab.stages.search import run_search_stage
from naslab.stages.studies import ground_truth_stage, ranking_stage, report_stage
from naslab.validation import validate_config

log = logging.getLogger(__name__)


def _load_genotype(cfg: DictConfig, space: Space[Any], results: dict[str, Any]) -> Any:
    """`genotype=<published name | genotype.json | run dir>` read and checked against the space; a genotype
    found on another dataset is trained as a transfer (logged, and recorded in results.json)."""
    if not cfg.get("genotype"):
        raise ConfigError(f"mode={cfg.mode} needs genotype=<published name | path to genotype.json | run dir>")
    space_name, data = load_genotype_data(str(cfg.genotype))
    if space_name is not None and space_name != space.name:
        raise GenotypeError(f"genotype={cfg.genotype} belongs to space '{space_name}', but space={space.name}")
    path = genotype_file(str(cfg.genotype))
    record = read_json(path) if path is not None and path.is_file() else None
    searched_on = (record or {}).get("dataset")
    if searched_on and searched_on != str(cfg.dataset.name):
        log.info("transfer: the genotype was searched on %s and is trained on %s", searched_on, cfg.dataset.name)
        results["transfer"] = {"from": searched_on, "to": str(cfg.dataset.name)}
    return space.genotype_from_dict(data)


def _logger(cfg: DictConfig, run_id: str | None = None) -> Any:
    """The experiment logger; `run_id` (a resumed run's saved W&B id) continues that W&B run."""
    if not cfg.get("logger"):
        return None
    resume = {"run_id": run_id} if run_id and "wandb_logger" in str(cfg.logger.get("_target_")) else {}
    names = logger_names(cfg, with_evaluator=run_search_kind(cfg) != "gradient")  # DARTS takes no evaluator
    return build(cfg.logger, "logger", **names, **resume)


def _write_genotype_outputs(
    cfg: DictConfig, space: Space[Any], genotype: Any, run_dir: Path, logger: Any, results: dict[str, Any]
) -> None:
    # The choices it was found with: `mode=train genotype=<this run dir>` takes the space and dataset from them.
    choices = {"space": results["choices"].get("space"), "dataset": results["choices"].get("dataset")}
    space.save_genotype(genotype, run_dir / "genotype.json", choices=choices, dataset=str(cfg.dataset.name))
    pictures = draw_genotype_pictures(space, genotype, run_dir)
    log_images(logger, "genotype", pictures)


def run_choices(cfg: DictConfig) -> dict[str, Any]:
    """The config group options the run was composed from, as the user chose them (`micro_small`,
    `nao_small`), from Hydra's record; the class names when the config was composed without Hydra."""
    recorded: dict[str, Any] = dict(HydraConfig.get().runtime.choices) if HydraConfig.initialized() else {}
    choices: dict[str, Any] = {"dataset": recorded.get("dataset") or str(cfg.dataset.name)}
    for key in ("space", "strategy", "evaluator"):
        choices[key] = recorded.get(key) or str(cfg[key]._target_).rsplit(".", 1)[-1]
    for key in ("experiment", "method", "debug", "logger", "trainer"):
        choices[key] = recorded.get(key)
    return choices


def _new_results(cfg: DictConfig, run_dir: Path, previous: dict[str, Any] | None) -> dict[str, Any]:
    """results.json as a run starts: what was chosen, status `running`; a resumed run keeps the record
    of its earlier attempts (`attempts`), so a second failure does not erase the first."""
    attempts = list((previous or {}).get("attempts") or [])
    if previous:
        attempts.append({k: previous.get(k) for k in ("status", "error", "started", "ended") if k in previous})
    choices = run_choices(cfg)
    # What the earlier attempts recorded stays until this one replaces it (a resume that fails at once
    # keeps the search block; a resume with logger=csv keeps the W&B id for a later W&B resume).
    kept = {
        k: previous[k] for k in ("genotype", "genotype_key", "search", "final", "wandb_id") if (previous or {}).get(k)
    }
    return {
        "mode": cfg.mode,
        "status": "running",
        "dataset": cfg.dataset.name,
        "space": None,
        "strategy": None,
        "evaluator": None,
        "choices": choices,
        "classes": {key: str(cfg[key]._target_) for key in ("space", "strategy", "evaluator")},
        "debug": choices.get("debug"),
        "seed": int(cfg.seed),
        "run_dir": str(run_dir),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "attempts": attempts,
        "genotype": None,
        "genotype_key": None,
        "search": None,
        "final": None,
        **kept,
    }


def write_results(run_dir: Path, results: dict[str, Any]) -> None:
    """results.json, replaced atomically and durably: a run killed while writing, or a full disk, leaves the
    previous one intact; a failed write is a RunDirWriteError (one line naming results.json)."""
    atomic_write_text(run_dir / "results.json", json.dumps(results, indent=2) + "\n")


def read_previous_results(run_dir: Path) -> dict[str, Any] | None:
    """The results.json a resumed run continues (its attempts, W&B id, finished stages). A damaged one is
    moved aside to `results.json.damaged`, with a warning, before the run writes a new one: its record
    of earlier attempts is lost from results.json but not deleted, and never silently."""
    path = run_dir / "results.json"
    previous = read_json(path)
    if previous is None and path.exists():
        kept = path.with_name("results.json.damaged")
        os.replace(path, kept)
        log.warning(
            "%s is unreadable: moved to %s; this attempt starts a new results.json (the archive and checkpoints "
            "are what the resume continues from)",
            path,
            kept.name,
        )
    return previous


def as_write_error(err: BaseException, run_dir: Path) -> BaseException:
    """`err` as the user should read it: a failed write of one of the run's files (the run's own writers
    raise RunDirWriteError; a library writing into the run dir raises a plain OSError: disk full,
    permission denied, read-only) is one line naming the file, the cause and the resume command. Any
    other error is returned unchanged."""
    if isinstance(err, RunDirWriteError):
        err.resume_with(run_dir)
        return err
    filename = getattr(err, "filename", None)
    if not isinstance(err, OSError) or err.errno not in STORAGE_ERRNOS or not filename:
        return err
    try:
        inside = Path(filename).resolve().is_relative_to(run_dir.resolve())
    except (OSError, ValueError, TypeError):
        inside = False
    if not inside:
        return err  # a file of the user's elsewhere (data, a genotype): its own error says which
    write_error = RunDirWriteError.from_os_error(filename, err)
    write_error.resume_with(run_dir)
    return write_error


def run(cfg: DictConfig) -> dict[str, Any]:
    """Runs the stages that `cfg.mode` selects and returns the results.json content.

    Everything a user can get wrong is checked before the logger starts or anything trains: the
    settings (naslab.validation), the space, the genotype, the data files. results.json says
    `status`: running, then finished, failed or interrupted.
    """
    validate_config(cfg)
    searching = cfg.mode in ("search", "search_train")
    if searching and "ddp" in str(cfg.trainer.get("strategy") or ""):
        raise ConfigError(
            "trainer=ddp trains one network on several GPUs: search first, then "
            "mode=train genotype=<search run dir> trainer=ddp"
        )
    if searching:
        check_strategy_fits_search(cfg)  # e.g. NASES with shared weights: one line before anything starts
    filter_known_warnings()
    run_dir = Path(cfg.paths.output_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise as_write_error(RunDirWriteError.from_os_error(run_dir, err), run_dir) from err
    previous = read_previous_results(run_dir) if cfg.resume else None
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    results = _new_results(cfg, run_dir, previous)
    # The first write, before anything is built or trained: a run dir that cannot be written (read-only,
    # disk full) is one line now, not after hours of training.
    try:
        write_results(run_dir, results)
    except RunDirWriteError as err:
        raise as_write_error(err, run_dir) from err.__cause__
    logger = None
    status = "failed"
    failure: BaseException | None = None  # what ends the run: an unwritable results.json must not hide it
    start = time.perf_counter()
    try:
        space: Space[Any] = build(cfg.space, "space")
        results["space"] = space.name
        given = _load_genotype(cfg, space, results) if cfg.mode in ("train", "summary") else None
        _check_data(cfg)
        (run_dir / "archive.jsonl").touch()
        logger = _logger(cfg, (previous or {}).get("wandb_id"))
        if logger is not None:
            logger.log_hyperparams(hyperparameters(cfg))
            results["wandb_id"] = wandb_run_id(logger) or results.get("wandb_id")
        write_results(run_dir, results)
        trainers = trainer_factory(cfg)
        if searching:
            genotype = run_search_stage(cfg, space, trainers, run_dir, logger, results)
        elif cfg.mode == "groundtruth":
            genotype = ground_truth_stage(cfg, space, trainers, run_dir, logger, results)
        elif cfg.mode == "ranking":
            genotype = ranking_stage(cfg, space, trainers, run_dir, logger, results)
        elif cfg.mode == "report":
            results["report"] = report_stage(cfg, run_dir, logger)
            status = "finished"
            return results
        elif cfg.mode == "export":
            results["export"] = export_stage(cfg)
            status = "finished"
            return results
        else:
            genotype = given
        results["genotype"] = space.describe(genotype)
        results["genotype_key"] = space.key(genotype)  # the architecture's identity, e.g. in a ground-truth table
        _write_genotype_outputs(cfg, space, genotype, run_dir, logger, results)

        if cfg.mode == "summary":
            results["final"] = summary_stage(cfg, space, genotype)
        elif cfg.mode in ("train", "search_train"):
            results["final"] = train_stage(cfg, space, genotype, trainers, run_dir, logger)
        status = results["status"] = "finished"
        log.debug("results: %s", json.dumps(results))  # the console gets the closing summary (naslab.lifecycle)
        log_summary(logger, {"results": results})  # what a study report read from W&B needs
        return results
    except RunInterrupted as stop:
        acknowledge()  # the stop reached the run: its cleanup below runs undisturbed
        status = "interrupted"
        failure = stop
        raise
    except Exception as err:
        failure = as_write_error(err, run_dir)
        results["error"] = f"{type(failure).__name__}: {failure}"  # a failed run still says what it got to
        if failure is not err:
            raise failure from err
        raise
    finally:
        results["status"] = status
        results["ended"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        results["wall_seconds"] = time.perf_counter() - start
        try:
            write_results(run_dir, results)
        except RunDirWriteError as write_error:
            if failure is None:  # the run itself went well: this is its error
                raise as_write_error(write_error, run_dir) from write_error.__cause__
            # The run's own error (raised on from here) is the one line; results.json keeps its last
            # valid content (status running), which a resume reads as not finished. When that error is
            # the disk or the dir itself, the note stays out of the console and out of run.log (on the
            # same full disk, a log record that cannot be written prints a traceback).
            level = logging.DEBUG if isinstance(failure, RunDirWriteError) else logging.WARNING
            log.log(level, "results.json keeps its previous content: %s", write_error)
        finally:
            close_logger(logger, "success" if status == "finished" else "failed")


def _check_data(cfg: DictConfig) -> None:
    """The data files are where the datamodule expects them (one MissingDataError line if not), before
    anything starts; modes that read no data (a table search, report, summary, export) skip it."""
    if cfg.mode in ("report", "summary", "export"):
        return
    if cfg.mode in ("search", "search_train", "groundtruth") and run_search_kind(cfg) != "gradient":
        if not evaluator_class(cfg).needs_data and cfg.mode != "search_train":
            return
    phase = "final" if cfg.mode == "train" else "search"
    datamodule(cfg, phase).prepare_data()  # files put in place (a local source, dataset.download=true), then checked
