"""The weight-sharing ranking study: Kendall tau by hand, the SubSpace of the sharing experiment, end to end."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from naslab.evaluators.table import ResultTable
from naslab.pipeline import run
from naslab.spaces.base import GenotypeError
from naslab.spaces.rnn.space import RNNSpace
from naslab.spaces.subspace import SubSpace
from naslab.studies.ranking import RankingStudy
from tests.fake_data import write_text_corpus


def test_kendall_tau_of_known_permutations() -> None:
    study = RankingStudy(list("abcd"), ["a", "b", "c", "d"], [4.0, 3.0, 2.0, 1.0])
    study.shared = {0: [0.4, 0.3, 0.2, 0.1], 1: [0.1, 0.2, 0.3, 0.4], 2: [0.4, 0.3, 0.1, 0.2]}
    assert study.tau(0) == pytest.approx(1.0) and study.tau(1) == pytest.approx(-1.0)
    assert study.tau(2) == pytest.approx((5 - 1) / 6)  # one discordant pair (c, d) of six
    summary = study.summary()
    assert summary["kendall_tau_mean"] == pytest.approx((1 - 1 + 4 / 6) / 3)
    assert summary["kendall_tau_std"] == pytest.approx(np.std([1, -1, 4 / 6], ddof=1))
    rows = list(csv.DictReader(io.StringIO(study.to_csv())))
    assert [r["shared_rank_seed2"] for r in rows] == ["1", "2", "4", "3"] and rows[0]["truth_rank"] == "1"
    assert "| 2 | 0.667 |" in study.to_markdown()
    assert study.shared_favourite() == "a"  # mean shared scores 0.3, 0.267, 0.2, 0.233


def test_subspace_fixes_decisions_and_keeps_the_base_genotypes() -> None:
    base = RNNSpace(2, output="all")
    sub = SubSpace(base, {0: 0, 1: 2})  # node 1 fixed to identity(0): only node 2 is searched
    assert sub.token_choices() == [1, 1, 2, 4] and sub.size() == 8
    every = list(sub.enumerate())
    assert len({sub.key(g) for g in every}) == 8 and all(g.nodes[0].activation == "identity" for g in every)
    assert {base.key(g) for g in every} <= {base.key(g) for g in base.enumerate()}
    rng = np.random.default_rng(0)
    assert all(sub.from_tokens(sub.to_tokens(g)) == g for g in (sub.sample(rng) for _ in range(20)))
    with pytest.raises(GenotypeError, match="fixes it to 2"):
        sub.validate(base.from_tokens([0, 0, 0, 0]))
    with pytest.raises(ValueError, match="outside"):
        SubSpace(base, {9: 0})


def test_ranking_mode_reports_kendall_tau_per_seed_on_the_32_cell_space(compose_cfg, tmp_path) -> None:
    truth = run(
        compose_cfg(
            "mode=groundtruth",
            "space=rnn_small",
            "evaluator=planted",
            "groundtruth.seeds=[0]",
            run_dir=tmp_path / "truth",
        )
    )
    assert truth["groundtruth"]["architectures"] == 32
    write_text_corpus(tmp_path / "data", "ptb")
    table = tmp_path / "truth" / "groundtruth.jsonl"
    results = run(
        compose_cfg(
            "mode=ranking",
            "dataset=ptb",
            "space=rnn_small",
            "evaluator=shared",
            "debug=fast",
            f"ranking.table={table}",
            "ranking.seeds=[0,1]",
            "ranking.valid_batches=2",
            f"paths.data_dir={tmp_path / 'data'}",
            run_dir=tmp_path / "ranking",
        )
    )
    ranking = results["ranking"]
    assert ranking["architectures"] == 32 and set(ranking["kendall_tau"]) == {"0", "1"}
    assert all(-1 <= t <= 1 for t in ranking["kendall_tau"].values())
    assert ranking["kendall_tau_mean"] == pytest.approx(np.mean(list(ranking["kendall_tau"].values())))
    rows = list(csv.DictReader(io.StringIO((tmp_path / "ranking" / "ranking.csv").read_text())))
    assert len(rows) == 32 and {"shared_rank_seed0", "shared_rank_seed1"} <= set(rows[0])
    assert (tmp_path / "ranking" / "ranking.png").stat().st_size > 0
    assert ResultTable.load(table).lookup  # the table the study read is intact


def test_ranking_mode_needs_a_table(compose_cfg) -> None:
    with pytest.raises(ValueError, match="ranking.table="):
        run(compose_cfg("mode=ranking", "space=rnn_small", "evaluator=shared"))
