"""Entry point: `python run.py [overrides]`. All the work is in naslab.pipeline.run."""

import hydra
from omegaconf import DictConfig

from naslab.pipeline import run


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    results = run(cfg)
    search = results.get("search") or {}
    final = results.get("final") or {}
    # Returned for Hydra sweepers that optimise the run's metric.
    return final.get("test_accuracy") or search.get("best_score")


if __name__ == "__main__":
    main()
