"""Long end-to-end runs on real data: the default digits run and Debian's Fashion-MNIST files."""

from __future__ import annotations

import pytest

from naslab.pipeline import run
from tests.real_data import needs_real_data, real_source


@pytest.mark.slow
@needs_real_data("fashion-mnist")
def test_random_search_on_real_fashion_mnist(compose_cfg, tmp_path) -> None:
    cfg = compose_cfg(
        "dataset=fashion_mnist",
        f"dataset.datamodule.source_dir={real_source('fashion-mnist')}",
        "strategy=random",
        f"paths.data_dir={tmp_path / 'data'}",
        "search.num_architectures=2",
        "evaluator.train_batches=20",
        "evaluator.channels=4",
        "train.epochs=1",
        "train.channels=4",
        "trainer.limit_train_batches=60",
        "trainer.limit_test_batches=20",
    )
    results = run(cfg)
    assert (tmp_path / "data" / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").stat().st_size == 47_040_016
    # 20-60 steps of a 4-channel cell network already learn far above chance (0.1) on real data
    assert results["search"]["best_score"] > 0.25
    assert results["final"]["test_accuracy"] > 0.3


@pytest.mark.slow
def test_default_run_is_quick_and_accurate(compose_cfg) -> None:
    """`python run.py` (offline digits default): test accuracy >= 0.85 (its time: benchmarks/preset_times.py)."""
    results = run(compose_cfg())
    assert results["search"]["num_evaluated"] == 16
    # the quick start shows NAO working: every cell after the random pool comes from gradient ascent
    assert results["search"]["provenance"]["counts"] == {"initial random": 8, "ascent": 8}
    assert results["final"]["test_accuracy"] >= 0.85
