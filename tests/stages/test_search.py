"""The search stage: which search a config selects, which strategy / search pairs are refused before
anything starts, and where the proposals of a search came from (results.json's provenance)."""

from __future__ import annotations

import pytest

from naslab.archive import ArchiveRecord
from naslab.errors import ConfigError
from naslab.search import SEARCHES, search_class
from naslab.stages.build import check_strategy_fits_search, run_search_kind
from naslab.stages.search import proposal_provenance


@pytest.mark.parametrize(
    ("overrides", "kind"),
    [
        ((), "ask_tell"),
        (("evaluator=table",), "ask_tell"),
        (("evaluator=shared", "strategy=reinforce"), "shared"),
        (("strategy=darts",), "gradient"),
        (("strategy=darts", "evaluator=shared"), "gradient"),  # DARTS takes no evaluator
        (("experiment=nao_ws",), "shared"),
    ],
)
def test_the_search_is_read_from_the_configured_classes(compose_cfg, overrides, kind) -> None:
    cfg = compose_cfg(*overrides)
    assert run_search_kind(cfg) == kind
    assert search_class(kind).kind == kind and set(SEARCHES) == {"ask_tell", "shared", "gradient"}
    check_strategy_fits_search(cfg)  # every preset fits its search


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (("strategy=nases", "evaluator=shared"), "strategy=nases trains every child stand-alone"),
        (("strategy=nao", "evaluator=shared"), "add strategy.rescore_pool=true"),
    ],
)
def test_a_strategy_that_cannot_run_in_its_search_is_one_line(compose_cfg, overrides, message) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        check_strategy_fits_search(compose_cfg(*overrides))
    assert "\n" not in str(err.value)


def record(index: int, score: float, extra: dict) -> ArchiveRecord:
    return ArchiveRecord(index=index, key=str(index), genotype={}, readable="", score=score, seed=0, extra=extra)


def test_provenance_counts_each_source_and_names_the_best_ones() -> None:
    nao = [
        record(0, 0.5, {"train_accuracy": 0.6}),  # NAO's initial pool names no source
        record(1, 0.9, {"nao": {"generation": 2, "source": "ascent"}}),
        record(2, 0.7, {"nao": {"generation": 1, "source": "random_fill"}}),
    ]
    assert proposal_provenance(nao, 0.9) == {
        "counts": {"initial random": 1, "ascent": 1, "random_fill": 1},
        "best_source": "ascent",
        "best_generation": 2,
    }
    evolution = [
        record(0, 0.8, {"evolution": {"source": "random", "generation": 0}}),
        record(1, 0.6, {"evolution": {"source": "mutation", "generation": 1, "parent": 0}}),
    ]
    assert proposal_provenance(evolution, 0.8)["counts"] == {"random": 1, "mutation": 1}
    assert proposal_provenance([record(0, 0.5, {"epoch": 0})], 0.5) is None  # a strategy that names no source
