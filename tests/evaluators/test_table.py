"""The ground-truth table: aggregation by hand, lookups and their errors, the builder and its resume."""

from __future__ import annotations

import json

import numpy as np
import pytest

from naslab.archive import ArchiveRecord
from naslab.errors import CorruptStateError
from naslab.evaluators.planted import PlantedEvaluator
from naslab.evaluators.standalone import StandaloneEvaluator
from naslab.evaluators.table import ResultTable, TableEvaluator, split_trial_key, trial_key
from naslab.pipeline import run
from naslab.spaces.rnn.space import RNNSpace
from naslab.studies.groundtruth import build_ground_truth
from tests.fake_data import write_text_corpus

SPACE = RNNSpace(2, output="all")


def trial(seed: int, tokens: list[int], score: float, error: str | None = None, seconds: float = 1.0) -> ArchiveRecord:
    g = SPACE.from_tokens(tokens)
    return ArchiveRecord(
        0, trial_key(seed, SPACE.key(g)), SPACE.to_dict(g), SPACE.describe(g), score, seed, 3.0, 100, seconds, error
    )


def test_table_aggregates_seeds_and_ranks_as_computed_by_hand() -> None:
    a, b, c = [0, 0, 0, 0], [0, 1, 1, 2], [0, 3, 0, 3]
    records = [
        trial(0, a, 0.50),
        trial(1, a, 0.70),
        trial(2, a, 0.60),  # mean 0.6, sample std 0.1
        trial(0, b, 0.80),
        trial(1, b, 0.80),  # mean 0.8, std 0
        trial(0, c, 0.60),
        trial(1, c, float("nan"), error="NaN loss"),  # one failed seed
    ]
    table = ResultTable.from_records(records)
    ea, eb, ec = (table.lookup(SPACE.key(SPACE.from_tokens(t))) for t in (a, b, c))
    assert ea.mean == pytest.approx(0.6) and ea.std == pytest.approx(0.1) and ea.seeds == [0, 1, 2]
    assert eb.mean == pytest.approx(0.8) and eb.std == 0.0
    assert ec.values == [0.6] and ec.failed == 1 and ec.cost_seconds == pytest.approx(2.0)
    assert [table.rank_of(e.key) for e in (eb, ea, ec)] == [1, 2, 2]  # a and c tie at 0.6: both rank 2
    assert [e.key for e in table.ranked()][0] == eb.key
    assert ea.value_for(1) == 0.70 and ea.value_for(4) == 0.70  # seed 4 -> 4 % 3 = 1
    markdown, text = table.to_markdown(), table.to_csv()
    assert "| 1 | 0.8000 +- 0.0000 | 2 |" in markdown and "0.6000 +- 0.1000" in markdown
    assert text.splitlines()[0].startswith("rank,mean,std,seeds,failed,values")


def test_trial_keys_round_trip_and_reject_other_keys() -> None:
    assert split_trial_key(trial_key(7, '{"a": 1}')) == (7, '{"a": 1}')
    with pytest.raises(ValueError, match="not a ground-truth trial key"):
        split_trial_key('epoch3:{"a": 1}')


def test_table_evaluator_looks_up_and_names_what_is_missing(tmp_path) -> None:
    table = build_ground_truth(SPACE, lambda s: PlantedEvaluator(SPACE, seed=s, noise=0.3), [0, 1], tmp_path)
    evaluator = TableEvaluator(SPACE, str(tmp_path / "groundtruth.jsonl"))
    g = SPACE.from_tokens([0, 2, 1, 3])
    (evaluation,) = evaluator.evaluate([g])
    entry = table.lookup(SPACE.key(g))
    assert evaluation.score == pytest.approx(np.mean(entry.values)) and evaluation.extra["seeds"] == 2
    one = TableEvaluator(SPACE, str(tmp_path / "groundtruth.jsonl"), value="seed", seed=1).evaluate([g])[0]
    assert one.score == entry.value_for(1) == PlantedEvaluator(SPACE, seed=1, noise=0.3).score(g)
    bigger = RNNSpace(3, output="all")
    with pytest.raises(KeyError, match="has no architecture"):
        TableEvaluator(bigger, str(tmp_path / "groundtruth.jsonl")).evaluate([bigger.from_tokens([0, 0, 0, 0, 0, 0])])
    with pytest.raises(FileNotFoundError, match="mode=groundtruth"):
        TableEvaluator(SPACE, str(tmp_path / "missing.jsonl"))
    with pytest.raises(ValueError, match="evaluator.value"):
        TableEvaluator(SPACE, str(tmp_path / "groundtruth.jsonl"), value="median")


class Counting(PlantedEvaluator):
    calls = 0

    def evaluate(self, genotypes):
        Counting.calls += len(genotypes)
        return super().evaluate(genotypes)


def test_builder_trains_every_architecture_per_seed_and_resumes_with_only_the_missing_trials(tmp_path) -> None:
    Counting.calls = 0
    first = build_ground_truth(SPACE, lambda s: Counting(SPACE, seed=s, noise=0.2), [0], tmp_path)
    assert Counting.calls == 32 and len(first) == 32 and all(len(e.values) == 1 for e in first.entries.values())
    with pytest.raises(FileExistsError):
        build_ground_truth(SPACE, lambda s: Counting(SPACE, seed=s), [0, 1], tmp_path)  # no silent overwrite
    second = build_ground_truth(SPACE, lambda s: Counting(SPACE, seed=s, noise=0.2), [0, 1], tmp_path, resume=True)
    assert Counting.calls == 64 and all(e.seeds == [0, 1] for e in second.entries.values())
    lines = (tmp_path / "groundtruth.jsonl").read_text().splitlines()
    assert len(lines) == 64 and len({json.loads(line)["key"] for line in lines}) == 64
    assert (tmp_path / "groundtruth.md").read_text().count("\n") == 32 + 2


# A random search of the recurrent-cell space on a table: no data is read (the path does not exist).
TABLE_SEARCH = [
    "mode=search",
    "dataset=ptb",
    "paths.data_dir=/nonexistent",
    "space=rnn_small",
    "strategy=random",
    "evaluator=table",
]


def test_groundtruth_mode_then_a_table_search_without_any_data(compose_cfg, tmp_path) -> None:
    truth_dir = tmp_path / "truth"
    results = run(
        compose_cfg(
            "mode=groundtruth",
            "space=rnn_small",
            "evaluator=planted",
            "evaluator.noise=0.2",
            "groundtruth.seeds=[0,1,2]",
            run_dir=truth_dir,
        )
    )
    block = results["groundtruth"]
    assert block["architectures"] == 32 and block["trials"] == 96 and block["seeds"] == [0, 1, 2]
    assert (truth_dir / "genotype.json").exists() and (truth_dir / "groundtruth.csv").exists()
    table = ResultTable.load(truth_dir / "groundtruth.jsonl")
    assert block["best_mean"] == pytest.approx(table.ranked()[0].mean)
    search = run(
        compose_cfg(
            *TABLE_SEARCH,
            f"evaluator.path={truth_dir / 'groundtruth.jsonl'}",
            "search.num_architectures=32",
            "search.batch_size=8",
            run_dir=tmp_path / "search",
        )
    )
    assert search["search"]["num_evaluated"] == 32  # the whole space, looked up: no data was read
    assert search["search"]["best_score"] == pytest.approx(table.ranked()[0].mean)


def test_groundtruth_trains_the_32_cells_on_a_ptb_format_corpus(compose_cfg, tmp_path) -> None:
    write_text_corpus(tmp_path / "data", "ptb")
    results = run(
        compose_cfg(
            "mode=groundtruth",
            "dataset=ptb",
            "space=rnn_small",
            "evaluator=standalone",
            "debug=fast",
            "groundtruth.seeds=[0]",
            f"paths.data_dir={tmp_path / 'data'}",
        )
    )
    assert results["groundtruth"]["architectures"] == 32 and results["groundtruth"]["trials"] == 32
    table = ResultTable.load(tmp_path / "run" / "groundtruth.jsonl")
    scores = [e.mean for e in table.ranked()]
    assert len(set(np.round(scores, 9))) > 16 and all(0 < s < 80 / 1.0 for s in scores)  # 80 / perplexity


def curve_trial(seed: int, tokens: list[int], curve: list[float]) -> ArchiveRecord:
    record = trial(seed, tokens, curve[-1])
    record.extra["curve"] = [[epoch + 1, score] for epoch, score in enumerate(curve)]
    return record


def test_rank_evolution_ranks_seed_means_at_every_epoch() -> None:
    a, b, c = [0, 0, 0, 0], [0, 1, 1, 2], [0, 3, 0, 3]
    table = ResultTable.from_records(
        [
            curve_trial(0, a, [0.1, 0.5, 0.9]),
            curve_trial(1, a, [0.3, 0.5, 0.7]),  # means 0.2, 0.5, 0.8: last, then tied, then first
            curve_trial(0, b, [0.6, 0.5, 0.6]),  # leads early, ends second
            curve_trial(0, c, [0.4, 0.4, 0.1]),
        ]
    )
    epochs, entries, ranks = table.rank_evolution()
    assert epochs == [1, 2, 3]
    assert [e.readable for e in entries] == [SPACE.describe(SPACE.from_tokens(t)) for t in (a, b, c)]
    assert ranks.tolist() == [[3, 1, 1], [1, 1, 2], [2, 3, 3]]  # a and b tie at epoch 2: both rank 1
    assert ResultTable.from_records([trial(0, a, 0.5)]).rank_evolution()[0] == []  # no curves, no epochs


def test_packaged_table_loads_by_name_and_reading_never_cuts_a_live_file(tmp_path) -> None:
    table = ResultTable.load("ptb_rnn_small_e1")  # measured on real PTB, shipped with naslab
    assert len(table) == 32 and all(len(e.values) == 4 for e in table.ranked())
    assert all(0 < e.mean < 0.2 for e in table.ranked())  # 80 / perplexity of barely trained models
    epochs, entries, ranks = ResultTable.load("ptb_rnn_small_e3").rank_evolution()  # with learning curves
    assert epochs == [1, 2, 3] and len(entries) == 32 and sorted(ranks[:, -1]) == list(range(1, 33))
    with pytest.raises(FileNotFoundError, match="ptb_rnn_small_e1"):  # the error names what exists
        ResultTable.load("no_such_table")
    path = tmp_path / "groundtruth.jsonl"
    line = json.dumps(trial(0, [0, 0, 0, 0], 0.5).__dict__)
    path.write_text(line + "\n" + line[:20])  # a writer is half-way through its next record
    assert len(ResultTable.load(path)) == 1
    assert path.read_text().endswith(line[:20])  # read-only: the half line is still there for the writer


def test_standalone_evaluator_records_the_learning_curve_when_asked(compose_cfg, tmp_path) -> None:
    results = run(
        compose_cfg(
            "mode=groundtruth",
            "space=macro",
            "space.num_layers=1",
            "space.op_set=[conv_3x3,max_pool_3x3]",
            "debug=fast",
            "evaluator.epochs=2",
            "evaluator.validate_every=1",
            "groundtruth.seeds=[0]",
        )
    )
    table = ResultTable.load(results["groundtruth"]["table"])
    for entry in table.ranked():
        (curve,) = entry.curves.values()
        assert sorted(curve) == [1, 2] and curve[2] == pytest.approx(entry.mean)  # the last point is the score
    with pytest.raises(ValueError, match="must divide"):  # the last epoch would not be validated
        StandaloneEvaluator(SPACE, None, lambda **_: None, None, epochs=3, validate_every=2)


def test_seed_taus_by_hand() -> None:
    """Seeds 0 and 1 order a, b, c identically (tau 1); seed 2 reverses b and c against both (tau 1/3)."""
    a, b, c = [0, 0, 0, 0], [0, 1, 1, 2], [0, 3, 0, 3]
    values = {0: (0.9, 0.8, 0.7), 1: (0.6, 0.5, 0.4), 2: (0.9, 0.7, 0.8)}
    records = [trial(seed, t, v) for seed, vs in values.items() for t, v in zip((a, b, c), vs)]
    taus = ResultTable.from_records(records).seed_taus()
    # seed 2 vs 0: pairs (a,b) +, (a,c) +, (b,c) - -> (2 - 1) / 3
    assert taus == pytest.approx({(0, 1): 1.0, (0, 2): 1 / 3, (1, 2): 1 / 3})


def test_ground_truth_of_a_progressive_space_holds_its_lower_levels_unranked(tmp_path) -> None:
    from naslab.spaces.micro.space import MicroSpace

    space = MicroSpace(2, ["max_pool_3x3", "identity"], concat="all", tied=True, distinct_inputs=True)
    complete = {space.key(g) for g in space.enumerate()}  # (1 * 4) * (3 * 4) = 48
    level1 = {space.key(g) for g in space.expand(None)}  # 4 one-block cells
    table = build_ground_truth(space, lambda s: PlantedEvaluator(space, seed=s), [0], tmp_path, levels=True)
    assert len(complete) == 48 and len(level1) == 4
    assert set(table.entries) == complete | level1 and len(table) == 48
    assert {e.key for e in table.ranked()} == complete  # partial cells are looked up, never ranked
    assert all(table.entries[k].partial for k in level1)
    one_block = space.expand(None)[0]
    looked_up = TableEvaluator(space, str(tmp_path / "groundtruth.jsonl")).evaluate([one_block])[0]
    assert looked_up.score == table.entries[space.key(one_block)].mean
    assert max(table.rank_of(k) for k in complete) <= 48


def test_ground_truth_of_a_sample_trains_that_many_architectures(tmp_path) -> None:
    table = build_ground_truth(SPACE, lambda s: PlantedEvaluator(SPACE, seed=s), [0, 1], tmp_path / "a", sample=5)
    again = build_ground_truth(SPACE, lambda s: PlantedEvaluator(SPACE, seed=s), [0], tmp_path / "b", sample=5)
    assert len(table) == 5 and all(len(e.values) == 2 for e in table.entries.values())
    assert set(again.entries) == set(table.entries)  # the sample is fixed: a second build measures the same
    with pytest.raises(ValueError, match="groundtruth.sample must be in 1..32"):
        build_ground_truth(SPACE, lambda s: PlantedEvaluator(SPACE, seed=s), [0], tmp_path / "c", sample=33)


# --- a damaged table (issue 24): one line naming the file and the line, or a warning for a cut last line ----------


def damage_line(path, n: int, change) -> bytes:
    """Applies `change` to line n (1-based) of a table: a dict -> dict edit, or a string that replaces the line."""
    lines = path.read_text().splitlines(keepends=True)
    lines[n - 1] = change if isinstance(change, str) else json.dumps(change(json.loads(lines[n - 1]))) + "\n"
    path.write_text("".join(lines))
    return path.read_bytes()


DAMAGE = {
    "garbage": (3, "#garbage#\n", "JSONDecodeError"),
    "a record missing its score": (3, lambda r: {k: v for k, v in r.items() if k != "score"}, "field score is missing"),
    "a score that is not a number": (3, lambda r: {**r, "score": "0.61"}, 'field score is "0.61", not int/float'),
    "a non-numeric last line": (32, lambda r: {**r, "score": None}, "field score is null"),
    "a search archive's key": (3, lambda r: {**r, "key": "k3"}, "not a ground-truth trial key"),
    "a curve of words": (3, lambda r: {**r, "extra": {"curve": [["one", 0.5]]}}, "invalid literal for int()"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_table_with_a_bad_row_is_refused_in_one_line_naming_the_file_and_the_line(tmp_path, damage) -> None:
    build_ground_truth(SPACE, lambda s: PlantedEvaluator(SPACE, seed=s), [0], tmp_path)
    path = tmp_path / "groundtruth.jsonl"
    line, change, reason = DAMAGE[damage]
    damaged = damage_line(path, line, change)
    with pytest.raises(CorruptStateError) as err:
        ResultTable.load(path)
    message = str(err.value)
    assert message.startswith(f"{path} line {line} ") and "is not a ground-truth trial record" in message
    assert reason in message and "mode=groundtruth" in message and "\n" not in message
    assert path.read_bytes() == damaged  # nothing cut or rewritten: the user decides


def test_a_table_whose_last_line_was_cut_loads_the_rest_with_a_warning(tmp_path, caplog) -> None:
    build_ground_truth(SPACE, lambda s: PlantedEvaluator(SPACE, seed=s), [0], tmp_path)
    path = tmp_path / "groundtruth.jsonl"
    whole = path.read_text().splitlines(keepends=True)
    path.write_text("".join(whole[:-1]) + whole[-1][:40])  # the builder was killed writing its last trial
    table = ResultTable.load(path)
    assert len(table) == 31 and f"dropping a truncated last line of {path}" in caplog.text


def test_a_table_search_with_a_damaged_table_fails_in_one_line_before_any_lookup(compose_cfg, tmp_path) -> None:
    build_ground_truth(SPACE, lambda s: PlantedEvaluator(SPACE, seed=s), [0, 1], tmp_path)
    path = tmp_path / "groundtruth.jsonl"
    damage_line(path, 40, lambda r: {**r, "score": "n/a"})
    run_dir = tmp_path / "search"
    with pytest.raises(CorruptStateError) as err:
        run(
            compose_cfg(
                *TABLE_SEARCH,
                f"evaluator.path={path}",
                "search.num_architectures=8",
                run_dir=run_dir,
            )
        )
    assert str(err.value).startswith(f"{path} line 40 of 64 is not a ground-truth trial record (field score is")
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "failed" and results["error"] == f"CorruptStateError: {err.value}"
    assert (run_dir / "archive.jsonl").read_text() == ""  # nothing was looked up, nothing archived
