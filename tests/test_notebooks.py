"""The analysis notebooks run headless (papermill, as the README says) on a tiny synthetic study, with figures."""

from __future__ import annotations

from pathlib import Path

import nbformat
import papermill
import pytest

from naslab.studies.ranking import RankingStudy
from tests.conftest import REPO_ROOT
from tests.studies.test_study import write_run, write_table

NOTEBOOK = Path(REPO_ROOT) / "notebooks" / "search_phase.ipynb"


def execute(notebook: Path, parameters: dict[str, object], cwd: Path) -> nbformat.NotebookNode:
    """Runs the notebook as the docs say, with papermill: its `parameters` cell overridden by `parameters`."""
    return papermill.execute_notebook(
        str(notebook),
        str(cwd / f"executed_{notebook.name}"),
        parameters=parameters,
        cwd=str(cwd),
        kernel_name="python3",
        progress_bar=False,
        execution_timeout=180,
    )


def outputs(nb: nbformat.NotebookNode) -> tuple[str, int]:
    """(all text and markdown the cells showed, number of pictures shown)."""
    texts, pictures = [], 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            texts.append(out.get("text", ""))
            data = out.get("data", {})
            texts.append(data.get("text/markdown", ""))
            pictures += "image/png" in data
    return "\n".join(texts), pictures


@pytest.mark.slow
def test_search_phase_notebook_rebuilds_the_report_headless(tmp_path: Path) -> None:
    write_table(tmp_path / "groundtruth.jsonl")
    sweep = tmp_path / "multirun" / "2026-01-01_00-00-00"
    write_run(sweep, "random", 0, "b", [("d", 0.1), ("b", 0.6)], test=0.70)
    write_run(sweep, "random", 1, "a", [("a", 0.8)], test=0.90)
    write_run(sweep, "nao", 0, "a", [("c", 0.4), ("a", 0.9)], test=0.85)
    write_run(sweep, "nao", 1, "c", [("c", 0.65)], test=0.60)
    (sweep / "multirun.yaml").write_text("{}\n")
    ranking = tmp_path / "ranking"
    ranking.mkdir()
    study = RankingStudy(list("abc"), list("abc"), [3.0, 2.0, 1.0], {0: [0.3, 0.1, 0.2]})
    (ranking / "ranking.md").write_text(study.to_markdown())
    study.plot(ranking / "ranking.png")

    nb = execute(
        NOTEBOOK,
        {
            "study_dir": str(tmp_path / "multirun"),  # a folder of sweeps: the notebook takes the newest
            "table": str(tmp_path / "groundtruth.jsonl"),
            "wandb_group": None,
            "wandb_project": "naslab",
            "ranking_dir": str(ranking),
            "out_dir": str(tmp_path / "out"),
        },
        tmp_path,
    )
    text, pictures = outputs(nb)
    assert "4 runs of 2 methods" in text
    # random found b (rank 2) and a (rank 1); nao a and c (1 and 3): 1.5 +- 0.7 and 2.0 +- 1.4
    assert "| random + table | 2 |" in text and "1.5 +- 0.7" in text and "2.0 +- 1.4" in text
    assert "REAL-BEST" in text and "0.333" in text  # Kendall tau of the ranking dir: (2 - 1) / 3
    assert pictures == 4  # found ranks, rank trajectories, rank vs cost, and the ranking study's picture
    assert {p.name for p in (tmp_path / "out").iterdir()} >= {"report.md", "report.csv", "found_ranks.png"}


@pytest.mark.parametrize("notebook", sorted((Path(REPO_ROOT) / "notebooks").glob("*.ipynb")))
def test_notebooks_are_valid_and_start_from_a_clean_slate(notebook: Path) -> None:
    nb = nbformat.read(notebook, as_version=4)
    nbformat.validate(nb)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")  # committed without outputs
