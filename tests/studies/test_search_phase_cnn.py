"""experiment=search_phase_cnn: every method preset runs on space=micro_tiny, the weight-sharing ones rank all
243 cells with their supernet, and the table-only study writes its report end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from naslab.evaluators.table import ResultTable
from naslab.pipeline import run
from naslab.rank_agreement import read_shared_ranking
from tests.conftest import CONF_DIR, run_py
from tests.fake_data import write_fashion_mnist_raw

METHODS = sorted(p.stem for p in (Path(CONF_DIR) / "method").glob("*.yaml"))
WEIGHT_SHARING = {"random_ws", "enas", "nao_ws", "epnas", "darts_1", "darts_2"}
RANKED = {"enas", "darts_1"}  # search.rank_all through both kinds of supernet; the others skip it (suite time)
TABLE = "fmnist_micro_tiny"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_the_study_has_every_method_of_the_issue() -> None:
    table_only = {"random", "mlpnas", "nao", "pnas", "nases"}
    # the study sweeps the 11 methods; regularized evolution, a baseline added later, is a method preset too
    assert set(METHODS) == WEIGHT_SHARING | table_only | {"evolution"}
    sweep = yaml.safe_load((Path(CONF_DIR) / "experiment" / "search_phase_cnn.yaml").read_text())
    assert set(sweep["hydra"]["sweeper"]["params"]["method"].split(",")) == WEIGHT_SHARING | table_only
    for name in METHODS:
        text = (Path(CONF_DIR) / "method" / f"{name}.yaml").read_text()
        assert text.startswith("# @package _global_") and ("evaluator: shared" in text) == (
            name in WEIGHT_SHARING - {"darts_1", "darts_2"}
        )


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_every_method_runs_on_the_study_space(compose_cfg, tmp_path: Path, method: str) -> None:
    """debug=fast on a tiny real-format Fashion-MNIST: each method searches micro_tiny; the one-shot ones
    score every cell with their supernet (search.rank_all), the stand-alone ones read the packaged table."""
    data = tmp_path / "data"
    write_fashion_mnist_raw(data, train=96, test=32)
    overrides = [f"paths.data_dir={data}", "dataset.datamodule.source_dir=null"]
    if method == "nases":  # a seconds-long autoencoder stage
        overrides += ["strategy.pretrain.train_size=500", "strategy.pretrain.test_size=100"]
    if method not in RANKED:
        overrides.append("search.rank_all=false")
    cfg = compose_cfg("experiment=search_phase_cnn", f"method={method}", "debug=fast", *overrides)
    results = run(cfg)
    search = results["search"]
    table = ResultTable.load(TABLE)
    assert table.lookup(results["genotype_key"]).values  # whatever it found is one of the 243 measured cells
    if method in WEIGHT_SHARING:
        assert set(search["budget"]) == {"shared_epochs"}
    if method in RANKED:
        ranking = read_shared_ranking(tmp_path / "run" / search["shared_ranking"]["file"])
        assert len(ranking) == 243 and set(ranking) == {e.key for e in table.ranked()}
        assert all(0.0 <= score <= 1.0 for score in ranking.values())
    elif method not in WEIGHT_SHARING:
        expected = {"evaluations": int(cfg.search.num_architectures)}  # debug=fast: 2 (PNAS: its debug progression)
        assert search["budget"] == expected and search.get("shared_ranking") is None


@pytest.mark.slow
def test_table_study_writes_its_report_in_one_command(tmp_path: Path) -> None:
    sweep = tmp_path / "study"
    args = ["-m", "experiment=search_phase_cnn_table", "method=random,pnas,mlpnas", "seed=0,1"]
    done = run_py([*args, f"hydra.sweep.dir={sweep}"])
    assert done.returncode == 0, done.stderr[-2000:]
    runs = sorted(p.parent.relative_to(sweep).as_posix() for p in sweep.rglob("results.json"))
    assert runs == [f"{m}/seed{s}" for m in ("mlpnas", "pnas", "random") for s in (0, 1)]
    table = ResultTable.load(TABLE)
    truths = []
    for seed in (0, 1):
        results = json.loads((sweep / "pnas" / f"seed{seed}" / "results.json").read_text())
        assert results["search"]["num_evaluated"] == 24 and results["search"]["budget"] == {"evaluations": 24}
        truths.append(table.lookup(results["genotype_key"]).mean)
    lines = (sweep / "report.md").read_text().splitlines()
    pnas = [line for line in lines if line.startswith("| pnas | 2 |")]
    assert len(pnas) == 1 and f"{sum(truths) / 2:.4f} +- " in pnas[0] and "evaluations 24" in pnas[0]
    assert " * |" in pnas[0]  # its cost is the training time the table measured
    assert any(line.startswith("| random | 2 |") for line in lines)
    assert (sweep / "found_ranks.png").exists() and (sweep / "rank_vs_cost.png").exists()
