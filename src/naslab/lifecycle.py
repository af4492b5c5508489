"""The life of one run around the pipeline: its config on resume, threads, signals, errors, the closing lines.

`run.py`'s Hydra task is `run_task(cfg)`. It

- resumes a run from the config the run saved (`.hydra/config.yaml`), with only the settings that are
  safe to change on resume (naslab.launch.RESUME_SAFE) taken from the new command;
- sets torch's threads (`threads`, one by default: a shared CPU is the common case, and seeded
  results do not depend on it);
- turns Ctrl-C / SIGTERM into a clean stop that names the exact resume command (naslab.interrupt);
- prints a user's mistake as one line (`error: ...`, exit 2) unless HYDRA_FULL_ERROR=1; a bug keeps
  its traceback;
- ends with a short summary: what was searched, the best architecture, the test metric, the time, the run dir.
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

from naslab.errors import RunInterrupted, UserError
from naslab.interrupt import acknowledge, exit_code, stop_on_signals
from naslab.launch import RESUME_SAFE, is_resume_safe
from naslab.records import describe_finished, finished, read_json
from naslab.validation import validate_config

log = logging.getLogger(__name__)


def _single_run() -> bool:
    return not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN


def resumed_config(cfg: DictConfig, run_dir: Path) -> DictConfig:
    """The config the run saved, with the resume-safe settings (logger, threads, backend, workers, ...)
    of the current command; a setting this naslab composes differently (an upgrade) is logged, and the
    saved value is used."""
    saved_path = run_dir / ".hydra" / "config.yaml"
    if not saved_path.is_file():
        return cfg
    saved = OmegaConf.load(saved_path)
    assert isinstance(saved, DictConfig)
    current = OmegaConf.to_container(cfg, resolve=False)
    before = OmegaConf.to_container(saved, resolve=False)
    changed = sorted(_differences(before, current))  # type: ignore[arg-type]
    unsafe = [key for key in changed if not is_resume_safe(key)]
    if unsafe:
        log.warning("resume: this naslab composes %s differently from the saved run; the saved values are used", unsafe)
    with open_dict(saved):
        for safe in RESUME_SAFE:  # a safe setting is replaced whole (logger=csv on a wandb run: no wandb keys left)
            if safe not in ("hydra", "resume") and any(key == safe or key.startswith(safe + ".") for key in changed):
                value = OmegaConf.select(cfg, safe, throw_on_resolution_failure=False)
                OmegaConf.update(saved, safe, value, merge=False, force_add=True)
        saved.resume = True
        if "threads" in cfg:
            saved.threads = cfg.threads
    OmegaConf.set_struct(saved, True)
    return saved


def _differences(before: Any, after: Any, prefix: str = "") -> set[str]:
    """Dotted keys whose (unresolved) values differ between two config containers."""
    if isinstance(before, dict) and isinstance(after, dict):
        keys: set[str] = set()
        for key in set(before) | set(after):
            path = f"{prefix}.{key}" if prefix else str(key)
            if key not in before or key not in after:
                keys.add(path)
            else:
                keys |= _differences(before[key], after[key], path)
        return keys
    return set() if before == after else {prefix}


def resume_hint(run_dir: Path) -> str:
    return f"python run.py hydra.run.dir={shlex.quote(str(run_dir))} resume=true"


def set_threads(cfg: DictConfig) -> int:
    """torch's intra-op threads for every training loop in this process (children, supernets, DARTS,
    final training; strategies' own small models always use one). One by default: on a shared CPU the
    default (one per core) oversubscribes and ran searches 10-26x slower under load (benchmarks/threads.py)."""
    threads = int(cfg.get("threads") or 1)
    torch.set_num_threads(threads)
    return threads


def quiet_full_log_files() -> None:
    """A log record that a file handler cannot write (run.log on a full disk) is dropped instead of printing
    a "Logging error" traceback over the run's own one-line error. Only OSError: any other logging error
    (a bad format argument) is a bug and keeps its report."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler) and not getattr(handler, "quiet_when_full", False):
            report = handler.handleError

            def handle_error(record: logging.LogRecord, report: Any = report) -> None:
                if not isinstance(sys.exc_info()[1], OSError):
                    report(record)

            handler.handleError = handle_error  # type: ignore[method-assign]
            handler.quiet_when_full = True  # type: ignore[attr-defined]


def run_task(cfg: DictConfig) -> float | None:
    """The Hydra task of run.py: the pipeline with its config, threads, signals and errors handled."""
    from naslab.pipeline import run

    run_dir = Path(cfg.paths.output_dir)
    quiet_full_log_files()
    try:
        validate_config(cfg)  # (run.py validated a single run's config already; a sweep's jobs come here)
    except UserError as err:
        _user_error(err)
    if cfg.get("resume") and _single_run():
        cfg = resumed_config(cfg, run_dir)
    elif cfg.get("resume"):  # a sweep run again with resume=true: its finished jobs are not redone
        previous = read_json(run_dir / "results.json")
        if finished(previous):
            assert previous is not None
            print(describe_finished(run_dir, previous))
            return _metric(previous)
    set_threads(cfg)
    start = time.perf_counter()
    try:
        with stop_on_signals():
            results = run(cfg)
    except UserError as err:
        _user_error(err)
    except RunInterrupted as stop:
        acknowledge()
        print(
            f"stopped by {stop.signal_name}: every finished evaluation is kept in {run_dir}; "
            f"continue with: {resume_hint(run_dir)}",
            file=sys.stderr,
        )
        raise SystemExit(exit_code(stop.signal_name)) from None
    print(closing_summary(results, run_dir, time.perf_counter() - start))
    return _metric(results)


def _metric(results: dict[str, Any]) -> float | None:
    """The run's metric, returned for Hydra sweepers that optimise it."""
    search = results.get("search") or {}
    final = results.get("final") or {}
    return final.get("test_accuracy") or search.get("best_score")


# The archive's `source` of a proposal (NAO's `extra.nao.source`), in words.
_SOURCES = {
    "initial random": "the initial random pool",
    "ascent": "gradient ascent",
    "random_fill": "random fill",
    "random": "fresh random cells",
    "mutation": "mutation of a tournament's best",
}


def _user_error(err: UserError) -> NoReturn:
    """A user's mistake: one line and exit 2 (the traceback with HYDRA_FULL_ERROR=1)."""
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        raise err
    print(f"error: {err}", file=sys.stderr)
    raise SystemExit(2) from None


def closing_summary(results: dict[str, Any], run_dir: Path, seconds: float) -> str:
    """The few lines a run ends with, whatever the logger: what ran, what it found, where it is."""
    choices = results.get("choices") or {}
    search = results.get("search") or {}
    final = results.get("final") or {}
    keys = (
        ("dataset", "space")
        if results.get("mode") in ("train", "summary")
        else ("dataset", "space", "strategy", "evaluator")
    )
    setting = ", ".join(f"{k}={choices[k]}" for k in keys if choices.get(k))
    debug = f" (debug={choices['debug']})" if choices.get("debug") else ""
    lines = [f"naslab {results.get('mode')}: {setting}{debug}"]
    if results.get("mode") in ("export", "report"):
        lines = [f"naslab {results.get('mode')}"]
    if search:
        budget = search.get("budget") or {}
        # "16 evaluations", "4 shared epochs", "1 shared epoch"
        spent = ", ".join(
            f"{v} {k.replace('_', ' ').removesuffix('s') if v == 1 else k.replace('_', ' ')}" for k, v in budget.items()
        )
        lines.append(
            f"  searched   {search.get('num_evaluated')} architectures evaluated"
            + (f" (budget: {spent})" if spent else "")
            + f", best search score {search.get('best_score'):.4f}"
        )
        provenance = search.get("provenance")
        if provenance:  # what the strategy did, e.g. NAO: how many cells gradient ascent proposed
            counts = ", ".join(f"{n} from {_SOURCES.get(src, src)}" for src, n in provenance["counts"].items())
            best = _SOURCES.get(provenance["best_source"], provenance["best_source"])
            generation = f" (generation {provenance['best_generation']})" if provenance["best_generation"] else ""
            lines.append(f"  proposed   {counts}; the best from {best}{generation}")
    if results.get("genotype"):
        lines.append(f"  genotype   {results['genotype']}")
    if results.get("transfer"):
        lines.append(f"  transfer   searched on {results['transfer']['from']}, trained on {results['transfer']['to']}")
    if final.get("test_accuracy") is not None:
        lines.append(f"  test       accuracy {final['test_accuracy']:.4f} ({final.get('params', 0):,} parameters)")
    elif final.get("test_perplexity") is not None:
        lines.append(f"  test       perplexity {final['test_perplexity']:.2f} ({final.get('params', 0):,} parameters)")
    if results.get("export"):
        files = results["export"].get("files") or {}
        lines.append("  exported   " + ", ".join(str(p) for p in files.values() if p))
    for key in ("groundtruth", "ranking", "report"):
        if results.get(key):
            lines.append(f"  {key:<10} see results.json")
    if results.get("export"):
        lines.append(
            f"  time       {seconds:.1f} s; the files are in {results['export'].get('dir')}, the record in {run_dir}"
        )
    else:
        lines.append(f"  time       {seconds:.1f} s; everything is in {run_dir}")
    return "\n".join(lines)


__all__ = ["RESUME_SAFE", "closing_summary", "resumed_config", "run_task", "set_threads"]
