"""The closing summary a run ends with (naslab.lifecycle.closing_summary), from a results.json alone."""

from __future__ import annotations

from pathlib import Path

from naslab.lifecycle import closing_summary


def test_the_summary_says_the_budget_and_where_the_proposals_came_from(tmp_path: Path) -> None:
    results = {
        "mode": "search",
        "choices": {"dataset": "digits", "space": "micro_small", "strategy": "evolution", "evaluator": "planted"},
        "search": {
            "num_evaluated": 16,
            "best_score": 0.9458,
            "budget": {"shared_epochs": 1},
            "provenance": {"counts": {"random": 8, "mutation": 8}, "best_source": "mutation", "best_generation": 1},
        },
        "genotype": "cell",
    }
    text = closing_summary(results, tmp_path, 0.5)
    first = "naslab search: dataset=digits, space=micro_small, strategy=evolution, evaluator=planted"
    assert text.splitlines()[0] == first
    assert "(budget: 1 shared epoch)" in text  # one epoch, not "1 shared epochs"
    assert "8 from fresh random cells, 8 from mutation of a tournament's best" in text
    results["search"]["budget"] = {"evaluations": 16}
    assert "(budget: 16 evaluations)" in closing_summary(results, tmp_path, 0.5)
