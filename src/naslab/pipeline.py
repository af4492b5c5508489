"""The stages of a run: search -> genotype -> final training -> test, as a plain function.

`run(cfg)` is what `run.py` calls and what tests call with a composed config; it returns the
dict it writes to `results.json`. Loggers are closed on every exit path.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from naslab.analysis.prediction_plot import plot_predicted_vs_measured
from naslab.analysis.progression_plot import COLUMNS as PROGRESSION_COLUMNS
from naslab.analysis.progression_plot import plot_progression, progression_rows
from naslab.analysis.ranking import SHARED_RANKING_FILE, write_shared_ranking
from naslab.analysis.search_plot import plot_search_curve
from naslab.analysis.study import load_wandb_runs
from naslab.errors import ConfigError, GenotypeError, RunInterrupted, UserError
from naslab.evaluators.base import Evaluator
from naslab.evaluators.table import ResultTable
from naslab.groundtruth import build_ground_truth, distinct_architectures
from naslab.interrupt import acknowledge
from naslab.loggers import (
    close_logger,
    filter_known_warnings,
    hyperparameters,
    log_images,
    log_metrics,
    log_summary,
    log_table,
    wandb_run_id,
)
from naslab.ranking_study import run_ranking_study
from naslab.records import atomic_write_text, genotype_file, read_json
from naslab.report import study_table, write_report
from naslab.search import run_search
from naslab.spaces.base import Space, Task
from naslab.spaces.published import load_genotype_data
from naslab.strategies.base import GradientStrategy
from naslab.summary import network_size
from naslab.train.final import train_final
from naslab.train.objectives import reward_perplexity
from naslab.validation import validate_config

log = logging.getLogger(__name__)


def _datamodule(cfg: DictConfig, phase: str, **overrides: Any) -> L.LightningDataModule:
    return instantiate(cfg.dataset.datamodule, phase=phase, **overrides)


def _task(cfg: DictConfig, datamodule: Any) -> Task:
    if hasattr(datamodule, "vocab_size"):  # a text corpus: reads its files to know the vocabulary
        return Task(datamodule.vocab_size, (), cfg.dataset.stem, kind="text")
    # A datamodule may say what its samples are (tabular data: kind = "tabular"); images otherwise.
    kind = getattr(datamodule, "kind", "image")
    return Task(datamodule.num_classes, tuple(datamodule.input_shape), cfg.dataset.stem, kind=kind)


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


def owns_supernet(cfg: DictConfig) -> bool:
    """Whether `cfg.strategy` searches by gradient with its own supernet (DARTS): no evaluator then."""
    return issubclass(get_class(str(cfg.strategy._target_)), GradientStrategy)


def _setting(cfg: DictConfig) -> tuple[list[str], str | None]:
    """([dataset, space, strategy, evaluator], experiment) as Hydra recorded the choices (class names without Hydra)."""
    choices: dict[str, Any] = {}
    if HydraConfig.initialized():
        choices = dict(HydraConfig.get().runtime.choices)
    names = [str(cfg.dataset.name)]
    for key in ("space", "strategy", "evaluator"):
        names.append(str(choices.get(key) or cfg[key]._target_.rsplit(".", 1)[-1]))
    return names, choices.get("experiment")


def run_group(cfg: DictConfig) -> str:
    """The W&B group of a run: runs that differ only in their seed share it, so W&B aggregates them.

    Made of the config choices (dataset, space, strategy, evaluator and the experiment preset, as
    Hydra recorded them), e.g. `digits/micro_small/nao+standalone`; `logger.group=...` overrides it.
    """
    names, experiment = _setting(cfg)
    group = f"{names[0]}/{names[1]}/{names[2]}" + ("" if owns_supernet(cfg) else f"+{names[3]}")
    return f"{experiment}:{group}" if experiment else group


def logger_names(cfg: DictConfig) -> dict[str, str]:
    """The W&B group and run name a run gets when `logger.group` / `logger.name` are left null.

    Runs of one `study=` share its group (`study_group`) and are named `<strategy>+<evaluator>/seed<s>`;
    otherwise the group is the setting (`run_group`), so the seeds of one setting are aggregated together.
    """
    names: dict[str, str] = {}
    if "group" in cfg.logger and cfg.logger.group is None:
        names["group"] = study_group(cfg) if cfg.get("study") else run_group(cfg)
    if cfg.get("study") and "name" in cfg.logger and cfg.logger.name is None and cfg.mode != "report":
        setting, _ = _setting(cfg)
        method = setting[2] if owns_supernet(cfg) else f"{setting[2]}+{setting[3]}"
        names["name"] = f"{method}/seed{cfg.seed}"
    return names


def study_group(cfg: DictConfig) -> str:
    """A study's W&B group: `<study>/<sweep dir name>` in a multirun (one group per sweep, so re-runs and
    debug trials do not mix into it), the study's name otherwise."""
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return f"{cfg.study}/{Path(HydraConfig.get().sweep.dir).name}"
    return str(cfg.study)


def _logger(cfg: DictConfig, run_id: str | None = None) -> Any:
    """The experiment logger; `run_id` (a resumed run's saved W&B id) continues that W&B run."""
    if not cfg.get("logger"):
        return None
    resume = {"run_id": run_id} if run_id and "wandb_logger" in str(cfg.logger.get("_target_")) else {}
    return _build(cfg.logger, "logger", **logger_names(cfg), **resume)


def _write_genotype_outputs(
    cfg: DictConfig, space: Space[Any], genotype: Any, run_dir: Path, logger: Any, results: dict[str, Any]
) -> None:
    # The choices it was found with: `mode=train genotype=<this run dir>` takes the space and dataset from them.
    choices = {"space": results["choices"].get("space"), "dataset": results["choices"].get("dataset")}
    space.save_genotype(genotype, run_dir / "genotype.json", choices=choices, dataset=str(cfg.dataset.name))
    pictures = space.draw(genotype, run_dir)
    log_images(logger, "genotype", pictures)


def _build(node: DictConfig, key: str, **kwargs: Any) -> Any:
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
    """results.json, replaced atomically: a run killed while writing leaves the previous one intact."""
    atomic_write_text(run_dir / "results.json", json.dumps(results, indent=2) + "\n")


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
    filter_known_warnings()
    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    previous = read_json(run_dir / "results.json") if cfg.resume else None
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    results = _new_results(cfg, run_dir, previous)
    logger = None
    status = "failed"
    start = time.perf_counter()
    try:
        space: Space[Any] = _build(cfg.space, "space")
        results["space"] = space.name
        given = _load_genotype(cfg, space, results) if cfg.mode in ("train", "summary") else None
        _check_data(cfg)
        (run_dir / "archive.jsonl").touch()
        logger = _logger(cfg, (previous or {}).get("wandb_id"))
        if logger is not None:
            logger.log_hyperparams(hyperparameters(cfg))
            results["wandb_id"] = wandb_run_id(logger) or results.get("wandb_id")
        write_results(run_dir, results)
        trainer_factory = instantiate(cfg.trainer, _partial_=True)
        if searching:
            genotype = _search(cfg, space, trainer_factory, run_dir, logger, results)
        elif cfg.mode == "groundtruth":
            genotype = _ground_truth(cfg, space, trainer_factory, run_dir, logger, results)
        elif cfg.mode == "ranking":
            genotype = _ranking(cfg, space, trainer_factory, run_dir, logger, results)
        elif cfg.mode == "report":
            results["report"] = _report(cfg, run_dir, logger)
            status = "finished"
            return results
        elif cfg.mode == "export":
            results["export"] = _export(cfg)
            status = "finished"
            return results
        else:
            genotype = given
        results["genotype"] = space.describe(genotype)
        results["genotype_key"] = space.key(genotype)  # the architecture's identity, e.g. in a ground-truth table
        _write_genotype_outputs(cfg, space, genotype, run_dir, logger, results)

        if cfg.mode == "summary":
            results["final"] = _summary(cfg, space, genotype)
        elif cfg.mode in ("train", "search_train"):
            datamodule = _datamodule(cfg, "final", batch_size=cfg.train.batch_size, cutout=cfg.train.cutout)
            results["final"] = train_final(
                space,
                genotype,
                _task(cfg, datamodule),
                datamodule,
                trainer_factory,
                run_dir,
                OmegaConf.to_container(cfg.train, resolve=True),
                logger,
                int(cfg.seed if cfg.train.get("seed") is None else cfg.train.seed),
                bool(cfg.resume),
            )
            log_metrics(logger, {f"final/{k}": float(v) for k, v in results["final"].items() if v is not None})
        status = results["status"] = "finished"
        log.debug("results: %s", json.dumps(results))  # the console gets the closing summary (naslab.lifecycle)
        log_summary(logger, {"results": results})  # what a study report read from W&B needs
        return results
    except RunInterrupted:
        acknowledge()  # the stop reached the run: its cleanup below runs undisturbed
        status = "interrupted"
        raise
    except Exception as err:
        results["error"] = f"{type(err).__name__}: {err}"  # a failed run still says what it got to
        raise
    finally:
        results["status"] = status
        results["ended"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        results["wall_seconds"] = time.perf_counter() - start
        write_results(run_dir, results)
        close_logger(logger, "success" if status == "finished" else "failed")


def _check_data(cfg: DictConfig) -> None:
    """The data files are where the datamodule expects them (one MissingDataError line if not), before
    anything starts; modes that read no data (a table search, report, summary, export) skip it."""
    if cfg.mode in ("report", "summary", "export"):
        return
    if cfg.mode in ("search", "search_train", "groundtruth") and not owns_supernet(cfg):
        if not _evaluator_class(cfg).needs_data and cfg.mode != "search_train":
            return
    phase = "final" if cfg.mode == "train" else "search"
    datamodule = _datamodule(cfg, phase)
    datamodule.prepare_data()  # files put in place (a local source, dataset.download=true), then checked


def _export(cfg: DictConfig) -> dict[str, Any]:
    """mode=export: a trained run's final network as TorchScript / ONNX plus a self-contained checkpoint."""
    from naslab.export import export_run

    if not cfg.export.get("run"):
        raise ConfigError("mode=export needs export.run=<the dir of a mode=train or mode=search_train run>")
    formats = cfg.export.formats
    return export_run(Path(str(cfg.export.run)), [formats] if isinstance(formats, str) else list(formats))


def _search(
    cfg: DictConfig, space: Space[Any], trainer_factory: Any, run_dir: Path, logger: Any, results: dict[str, Any]
) -> Any:
    datamodule_factory = instantiate(cfg.dataset.datamodule, phase="search", _partial_=True)
    strategy = _build(cfg.strategy, "strategy", space=space)
    # A table or planted evaluator needs no data: such searches run where the data is not.
    needs_data = isinstance(strategy, GradientStrategy) or _evaluator_class(cfg).needs_data
    task = _task(cfg, datamodule_factory()) if needs_data else None
    results["strategy"] = strategy.name
    if isinstance(strategy, GradientStrategy):  # DARTS: its own supernet stands in for the evaluator
        log.info("strategy=%s trains its own supernet; evaluator=%s is not used", strategy.name, cfg.evaluator._target_)
        outcome = strategy.search(
            task, datamodule_factory, trainer_factory, run_dir, resume=bool(cfg.resume), logger=logger
        )
        method, xlabel = strategy.name, "search epoch (one derived genotype each)"
    else:
        outcome, results["evaluator"] = _ask_tell_search(cfg, space, strategy, task, trainer_factory, run_dir, logger)
        method, xlabel = f"{strategy.name} + {results['evaluator']}", "architectures evaluated"
    curve = plot_search_curve(
        outcome.archive.records, run_dir / "search_curve.png", f"{method} on {cfg.dataset.name}", xlabel
    )
    scatter = plot_predicted_vs_measured(outcome.archive.records, run_dir / "predicted_vs_measured.png", strategy.name)
    progression = plot_progression(
        outcome.archive.records, run_dir / "progression.png", f"{method} on {cfg.dataset.name}"
    )
    log_images(logger, "search", [curve] + [p for p in (scatter, progression) if p])
    columns = ("index", "score", "params", "wall_seconds", "error", "genotype")
    rows = [(r.index, r.score, r.params, r.wall_seconds, r.error, r.readable) for r in outcome.archive.records]
    log_table(logger, "search/archive", columns, rows)
    if progression:  # EPNAS / PNAS: the sampled set of every level, with its predictions
        log_table(logger, "search/levels", PROGRESSION_COLUMNS, progression_rows(outcome.archive.records))
    results["search"] = {
        "best_score": outcome.best_score,
        "num_evaluated": outcome.num_evaluated,
        "wall_seconds": outcome.wall_seconds,
    }
    if cfg.dataset.stem == "text":  # scores are 80 / validation perplexity (ENAS' reward); say the perplexity too
        results["search"]["best_perplexity"] = reward_perplexity(outcome.best_score)
    results["search"]["budget"] = _budget(cfg, strategy, outcome)
    provenance = _provenance(outcome.archive.records, outcome.best_score)
    if provenance:
        results["search"]["provenance"] = provenance
    if cfg.search.get("rank_all"):
        results["search"]["shared_ranking"] = _rank_all(cfg, space, outcome, run_dir)
    log.info(
        "search: best validation score %.4f over %d architectures in %.1f s",
        outcome.best_score,
        outcome.num_evaluated,
        outcome.wall_seconds,
    )
    return outcome.best_genotype


def _provenance(records: Sequence[Any], best_score: float) -> dict[str, Any] | None:
    """Where the evaluated architectures came from, for strategies that say so (NAO: the random pool,
    gradient ascent, random fill): counts per source and the best one's source and generation. None when
    no record names a source."""
    sources = [(r.extra.get("nao") or r.extra).get("source") if r.extra else None for r in records]
    if not any(sources):
        return None
    best = next(r for r in records if r.score == best_score and r.error is None)
    info = (best.extra.get("nao") or best.extra) if best.extra else {}
    return {
        "counts": dict(Counter(s or "initial random" for s in sources)),
        "best_source": info.get("source") or "initial random",
        "best_generation": info.get("generation", 0),
    }


def _budget(cfg: DictConfig, strategy: Any, outcome: Any) -> dict[str, int]:
    """What the search was allowed to spend, in its own unit: shared-weight epochs for one-shot searches
    (weight sharing, DARTS: the searches with a `shared_scorer`), architectures evaluated for stand-alone
    ones (a study states both)."""
    if isinstance(strategy, GradientStrategy):
        return {"shared_epochs": int(cfg.strategy.epochs)}
    if outcome.shared_scorer is not None:
        return {"shared_epochs": int(cfg.evaluator.epochs)}
    return {"evaluations": int(cfg.search.num_architectures)}


def _rank_all(cfg: DictConfig, space: Space[Any], outcome: Any, run_dir: Path) -> dict[str, Any] | None:
    """search.rank_all: every architecture of the space scored with the search's shared weights."""
    if outcome.shared_scorer is None:
        log.info("search.rank_all: a stand-alone search trains no shared weights; nothing to rank")
        return None
    start = time.perf_counter()
    every = distinct_architectures(space, space.enumerate())
    scores = outcome.shared_scorer(every, int(cfg.search.rank_batches))
    path = write_shared_ranking(
        run_dir / SHARED_RANKING_FILE, [space.key(g) for g in every], [space.describe(g) for g in every], scores
    )
    seconds = time.perf_counter() - start
    log.info("search.rank_all: %d architectures scored with shared weights in %.1f s: %s", len(every), seconds, path)
    return {"file": path.name, "architectures": len(every), "batches": int(cfg.search.rank_batches), "seconds": seconds}


def _evaluator_class(cfg: DictConfig) -> type[Evaluator[Any]]:
    """The class `cfg.evaluator` names: its `name` and whether it `needs_data`, without building it."""
    return get_class(str(cfg.evaluator._target_))


def _evaluator(cfg: DictConfig, space: Space[Any], task: Task | None, trainer_factory: Any, **overrides: Any) -> Any:
    """`cfg.evaluator` built for `space` (the Task dataclass stays a Task, config dicts plain dicts)."""
    datamodule_factory = instantiate(cfg.dataset.datamodule, phase="search", _partial_=True)
    return _build(
        cfg.evaluator,
        "evaluator",
        space=space,
        task=task,
        datamodule_factory=datamodule_factory,
        trainer_factory=trainer_factory,
        _convert_="object",
        **overrides,
    )


def _ground_truth(
    cfg: DictConfig, space: Space[Any], trainer_factory: Any, run_dir: Path, logger: Any, results: dict[str, Any]
) -> Any:
    """mode=groundtruth: every architecture x `groundtruth.seeds`; returns the best architecture by mean."""
    start = time.perf_counter()
    task = _task(cfg, _datamodule(cfg, "search")) if _evaluator_class(cfg).needs_data else None
    seeds = [int(s) for s in cfg.groundtruth.seeds]
    table = build_ground_truth(
        space,
        lambda seed: _evaluator(cfg, space, task, trainer_factory, seed=seed),
        seeds,
        run_dir,
        resume=bool(cfg.resume),
        levels=bool(cfg.groundtruth.get("levels", False)),
        sample=cfg.groundtruth.get("sample"),
    )
    ranked = table.ranked()
    if not ranked:
        raise RuntimeError(f"every ground-truth trial failed; see {run_dir / 'groundtruth.jsonl'}")
    results["evaluator"] = _evaluator_class(cfg).name
    results["groundtruth"] = {
        "architectures": len(table),
        "seeds": seeds,
        "trials": sum(len(e.values) + e.failed for e in table.entries.values()),
        "best_mean": ranked[0].mean,
        "best_std": ranked[0].std,
        "wall_seconds": time.perf_counter() - start,
        "table": str(run_dir / "groundtruth.jsonl"),
    }
    rows = table.rows()
    log_table(logger, "groundtruth/table", tuple(rows[0]), [tuple(r.values()) for r in rows])
    return space.genotype_from_dict(ranked[0].genotype)


def _ranking(
    cfg: DictConfig, space: Space[Any], trainer_factory: Any, run_dir: Path, logger: Any, results: dict[str, Any]
) -> Any:
    """mode=ranking: Kendall tau of weight-sharing rankings against a ground-truth table, per seed."""
    if not cfg.ranking.get("table"):
        raise ConfigError("mode=ranking needs ranking.table=<groundtruth.jsonl of a mode=groundtruth run>")
    table = ResultTable.load(str(cfg.ranking.table))
    task = _task(cfg, _datamodule(cfg, "search"))
    overrides = {"strategy_steps": 0, "derive_samples": 1, "valid_batches": int(cfg.ranking.valid_batches)}
    study = run_ranking_study(
        space,
        table,
        lambda seed: _evaluator(cfg, space, task, trainer_factory, seed=seed, **overrides),
        [int(s) for s in cfg.ranking.seeds],
        run_dir,
        resume=bool(cfg.resume),
    )
    results["evaluator"] = _evaluator_class(cfg).name
    results["ranking"] = study.summary()
    log_metrics(logger, {"ranking/kendall_tau_mean": results["ranking"]["kendall_tau_mean"]})
    log_images(logger, "ranking", [run_dir / "ranking.png"])
    log.info("weight-sharing ranking: %s", json.dumps(results["ranking"]))
    return study.shared_favourite()


def _report(cfg: DictConfig, run_dir: Path, logger: Any) -> dict[str, Any]:
    """mode=report: the study under `report.dir` (or in W&B group `report.wandb_group`) as tables and pictures."""
    runs = None
    if cfg.report.get("wandb_group"):
        runs = load_wandb_runs(str(cfg.report.wandb_group), str(cfg.report.wandb_project))
    elif not cfg.report.get("dir"):
        raise ConfigError("mode=report needs report.dir=<sweep dir of a study> or report.wandb_group=<its group>")
    # Into the study's own sweep dir (report.md, report.json and the figures next to the runs); a report
    # of a W&B group goes to this run's dir.
    out_dir = Path(str(cfg.report.dir)) if cfg.report.get("dir") else run_dir
    report, pictures = write_report(cfg.report.get("dir"), out_dir, study_table(cfg, cfg.report.get("dir")), runs=runs)
    print(report.to_markdown())
    rows = report.rows()
    columns = list(dict.fromkeys(k for row in rows for k in row))
    log_table(logger, "report/methods", columns, [[row.get(c) for c in columns] for row in rows])
    log_images(logger, "report", pictures)
    return report.summary()


def _ask_tell_search(
    cfg: DictConfig,
    space: Space[Any],
    strategy: Any,
    task: Task | None,
    trainer_factory: Any,
    run_dir: Path,
    logger: Any,
) -> tuple[Any, str]:
    """The search of an ask/tell strategy with its evaluator; returns (SearchResult, evaluator name)."""
    evaluator = _evaluator(cfg, space, task, trainer_factory)
    metrics_fn = (lambda metrics, step: log_metrics(logger, metrics, step)) if logger is not None else None
    try:
        if hasattr(evaluator, "search"):  # weight sharing: the evaluator alternates training and strategy updates
            outcome = evaluator.search(strategy, run_dir, resume=bool(cfg.resume), log_metrics=metrics_fn)
        else:
            outcome = run_search(
                space,
                strategy,
                evaluator,
                run_dir,
                num_architectures=cfg.search.num_architectures,
                batch_size=cfg.search.batch_size,
                seed=int(cfg.seed),
                resume=bool(cfg.resume),
                log_metrics=metrics_fn,
            )
    finally:
        evaluator.close()  # process pools and Ray instances end with the search
    return outcome, evaluator.name


def _summary(cfg: DictConfig, space: Space[Any], genotype: Any) -> dict[str, Any]:
    datamodule = _datamodule(cfg, "final", batch_size=cfg.train.batch_size)
    task = _task(cfg, datamodule)
    start = time.perf_counter()
    lm_sizes = OmegaConf.to_container(cfg.train.network, resolve=True) if cfg.train.get("network") else {}
    network = space.build_child(
        genotype,
        task,
        channels=cfg.train.channels,
        cells_per_stage=cfg.train.cells_per_stage,
        auxiliary=True,
        **lm_sizes,  # type: ignore[arg-type]
    )
    size = network_size(network, task.input_shape)
    if task.kind == "text":
        shape = (
            f"network    {cfg.dataset.name}: language model, vocabulary {task.num_classes:,}, "
            f"embedding {lm_sizes.get('emb_size')}, hidden {lm_sizes.get('hidden_size')}"  # type: ignore[union-attr]
        )
        per = " per token"
    else:
        shape = (
            f"network    {cfg.dataset.name}: F={cfg.train.channels}, N={cfg.train.cells_per_stage} "
            f"({3 * cfg.train.cells_per_stage + 2} cells), input {task.input_shape}, {task.num_classes} classes"
        )
        per = ""
    lines = [
        f"genotype   {space.describe(genotype)}",
        shape,
        f"params     {size['params']:,} ({size['params'] / 1e6:.2f}M, auxiliary head excluded)",
        f"mult-adds  {size['macs']:,} ({size['macs'] / 1e6:.0f}M){per}",
    ]
    print("\n".join(lines))
    return {**size, "test_accuracy": None, "test_perplexity": None, "wall_seconds": time.perf_counter() - start}
