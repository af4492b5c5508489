"""Language modelling end to end: every strategy searches the rnn space on a small PTB-format corpus."""

from __future__ import annotations

import json

import pytest

from naslab.pipeline import run
from naslab.train.objectives import REWARD_C
from tests.fake_data import write_text_corpus


@pytest.fixture
def ptb_dir(tmp_path):
    write_text_corpus(tmp_path / "data", "ptb")
    return tmp_path / "data"


@pytest.mark.parametrize(
    "choice",
    [
        ("strategy=random", "evaluator=standalone", "space=rnn_small"),
        ("strategy=random", "evaluator=shared", "space=rnn_small"),
        ("strategy=reinforce", "evaluator=shared", "space=rnn"),
        ("strategy=nao", "evaluator=standalone", "space=rnn_darts"),
        ("strategy=nao", "evaluator=shared", "space=rnn_small", "strategy.rescore_pool=true"),
        ("strategy=darts", "strategy.order=1", "space=rnn_darts"),
        ("strategy=darts", "strategy.order=2", "space=rnn_small"),
    ],
    ids=lambda c: "+".join(x.split("=")[1] for x in c[:3]),
)
def test_every_strategy_searches_the_rnn_space_and_reports_perplexities(compose_cfg, tmp_path, ptb_dir, choice):
    results = run(compose_cfg("dataset=ptb", "debug=fast", f"paths.data_dir={ptb_dir}", *choice))
    search, final = results["search"], results["final"]
    assert results["space"] == "rnn" and results["genotype"].endswith("]")
    assert 0 < search["best_score"] and search["best_perplexity"] == pytest.approx(REWARD_C / search["best_score"])
    assert final["test_accuracy"] is None and 1 < final["test_perplexity"] < 1000
    assert 1 < final["valid_perplexity"] < 1000  # the best validation epoch, whose weights were tested
    saved = json.loads((tmp_path / "run" / "genotype.json").read_text())
    assert saved["space"] == "rnn" and len(saved["genotype"]["nodes"]) >= 2
    records = [json.loads(line) for line in (tmp_path / "run" / "archive.jsonl").read_text().splitlines()]
    assert records and all(r["score"] > 0 for r in records)
    with_ppl = [r for r in records if "perplexity" in r["extra"] or "valid_perplexity" in r["extra"].get("darts", {})]
    assert with_ppl, "every archived score says its perplexity"
    assert (tmp_path / "run" / "rnn_cell.png").exists()


def test_summary_counts_the_language_model_parameters(compose_cfg, ptb_dir) -> None:
    results = run(
        compose_cfg("mode=summary", "dataset=ptb", "space=rnn", "genotype=darts_ptb", f"paths.data_dir={ptb_dir}")
    )
    vocab, n = 41, 850  # the fake corpus has 40 words + <eos>; darts_ptb has 8 node matrices
    assert results["final"]["params"] == vocab * n + 2 * n * 2 * n + 8 * n * 2 * n + vocab


@pytest.mark.parametrize(
    "overrides, message",
    [
        (("dataset=ptb", "space=micro_small"), "space=micro builds image networks"),
        (("dataset=digits", "space=rnn_small"), "space=rnn builds text networks"),
        (("dataset=wikitext2", "space=rnn_small"), "wikitext2: no train file"),
    ],
)
def test_wrong_data_for_a_space_is_one_clear_error(compose_cfg, ptb_dir, overrides, message) -> None:
    with pytest.raises(Exception, match=message):
        run(compose_cfg(*overrides, "debug=fast", f"paths.data_dir={ptb_dir}"))
