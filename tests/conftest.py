"""Shared fixtures: the real Hydra config composed with the compose API, as the entry point sees it."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")
REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def compose_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """compose_cfg(*overrides) -> the project config with its outputs in tmp_path, no logger."""

    def _compose(*overrides: str, run_dir: Path | None = None) -> DictConfig:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose(config_name="config", overrides=["logger=none", *overrides])
        with open_dict(cfg):
            cfg.paths.output_dir = str(run_dir or tmp_path / "run")
        return cfg

    return _compose
