"""The project's Hydra config, composed as `python run.py <overrides>` would compose it (for the benchmark scripts).

Benchmarks run as `python benchmarks/<name>.py`, so this module is importable beside them; the config
directory is the repository's `conf/`.
"""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

CONF = str(Path(__file__).resolve().parents[1] / "conf")


def compose_cfg(overrides: list[str]) -> DictConfig:
    """config.yaml with `overrides` applied (no Hydra run dir: set cfg.paths.output_dir before `run`)."""
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(config_name="config", overrides=overrides)
