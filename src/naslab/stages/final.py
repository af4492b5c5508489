"""Final training of the chosen genotype (mode=train / search_train), its size (mode=summary) and its
export (mode=export)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from naslab.errors import ConfigError
from naslab.loggers import log_metrics
from naslab.spaces.base import Space
from naslab.stages.build import datamodule, task_of
from naslab.summary import network_size
from naslab.train.final import train_final


def train_stage(
    cfg: DictConfig, space: Space[Any], genotype: Any, trainer_factory: Any, run_dir: Path, logger: Any
) -> dict[str, Any]:
    """The genotype trained from scratch with `cfg.train` and tested; results.json's `final` block."""
    dm = datamodule(cfg, "final", batch_size=cfg.train.batch_size, cutout=cfg.train.cutout)
    final = train_final(
        space,
        genotype,
        task_of(cfg, dm),
        dm,
        trainer_factory,
        run_dir,
        OmegaConf.to_container(cfg.train, resolve=True),
        logger,
        int(cfg.seed if cfg.train.get("seed") is None else cfg.train.seed),
        bool(cfg.resume),
    )
    log_metrics(logger, {f"final/{k}": float(v) for k, v in final.items() if v is not None})
    return final


def export_stage(cfg: DictConfig) -> dict[str, Any]:
    """mode=export: a trained run's final network as TorchScript / ONNX plus a self-contained checkpoint."""
    from naslab.export import export_run

    if not cfg.export.get("run"):
        raise ConfigError("mode=export needs export.run=<the dir of a mode=train or mode=search_train run>")
    formats = cfg.export.formats
    return export_run(Path(str(cfg.export.run)), [formats] if isinstance(formats, str) else list(formats))


def summary_stage(cfg: DictConfig, space: Space[Any], genotype: Any) -> dict[str, Any]:
    task = task_of(cfg, datamodule(cfg, "final", batch_size=cfg.train.batch_size))
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
