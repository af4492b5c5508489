"""NAOStrategy: Alg. 1 generations, provenance and diagnostics, resume, the NAO-WS population."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from naslab.evaluators.planted import PlantedEvaluator
from naslab.search.ask_tell import run_search
from naslab.spaces import MicroSpace
from naslab.strategies.base import Proposal, SharesWeights, results_of
from naslab.strategies.nao.strategy import NAOStrategy

SPACE = MicroSpace(2, "enas")
SMALL = {"epochs": 30, "batch_size": 32, "model": {"embedding": 8, "hidden": 24}}  # a NAO model that trains in seconds


def nao(**overrides) -> NAOStrategy:
    return NAOStrategy(SPACE, **{"seed": 0, **SMALL, **overrides})


def genotypes(proposals: list[Proposal]) -> list:
    return [p.genotype for p in proposals]


def tell_scores(strategy: NAOStrategy, proposals: list[Proposal], evaluator: PlantedEvaluator) -> None:
    strategy.tell(results_of(proposals, [evaluator.score(p.genotype) for p in proposals]))


def play(strategy: NAOStrategy, evaluator: PlantedEvaluator, batch: int = 4, limit: int = 200) -> list[Proposal]:
    """Drives ask/tell the way the search loop does; returns what was proposed."""
    proposed: list[Proposal] = []
    while len(proposed) < limit:
        asked = strategy.ask(batch)
        if not asked:
            break
        proposed += asked
        tell_scores(strategy, asked, evaluator)
    return proposed


def test_sizes_follow_the_paper_fractions_of_the_budget() -> None:
    strategy = NAOStrategy(SPACE, budget=1000, iterations=3)
    assert (strategy.num_initial, strategy.top_k) == (
        600,
        200,
    )  # 600 + 200 + 200 = 1000 (NAO arXiv:1808.07233, Sec. 4.1)
    default = NAOStrategy(SPACE, budget=12)  # the default run: 8 + 2 + 2, never more than the budget
    assert (default.num_initial, default.top_k) == (8, 2)
    assert NAOStrategy(SPACE, initial_pool=5, top_k=2).num_initial == 5
    with pytest.raises(ValueError, match="budget"):
        NAOStrategy(SPACE)
    with pytest.raises(ValueError, match="iterations"):
        NAOStrategy(SPACE, budget=10, iterations=0)


def test_generations_are_random_pool_then_new_architectures_from_ascent() -> None:
    strategy = nao(initial_pool=20, top_k=5, iterations=3, fill_with_random=False)
    proposed = play(strategy, PlantedEvaluator(SPACE, seed=0))
    keys = [SPACE.key(p.genotype) for p in proposed]
    assert len(keys) == len(set(keys))  # ascent only proposes architectures never seen
    assert 20 < len(proposed) <= 30 and strategy.finished and strategy.ask(4) == []
    generated = [p.info["nao"] for p in proposed[20:]]
    assert {info["generation"] for info in generated} <= {1, 2}
    assert all(info["source"] == "ascent" and info["eta"] in strategy.etas for info in generated)
    assert all(0 < info["predicted"] < 1 for info in generated)
    assert proposed[0].info == {}  # the random pool has no provenance
    for p in proposed:
        SPACE.validate(p.genotype)


def test_eta_schedule_and_random_fill_when_ascent_finds_too_few() -> None:
    assert nao(budget=10, eta=10, eta_growth=2, eta_step=0, max_ascent_tries=4).etas == [10, 20, 40, 80]
    assert nao(budget=10, eta=1, eta_growth=1, eta_step=1, max_ascent_tries=3).etas == [1, 2, 3]
    # A decoder that always gives the seeds back finds nothing new: the generation is random fill.
    from naslab.strategies.nao.model import Ascent

    strategy = nao(initial_pool=10, top_k=4, iterations=2)
    strategy.model.ascend = lambda tokens, eta: Ascent(tokens, torch.zeros(len(tokens)), torch.zeros(len(tokens)))
    proposed = play(strategy, PlantedEvaluator(SPACE, seed=0))
    assert strategy.pop_metrics()["nao/num_random_fill"] == 4
    fill = [p.info["nao"] for p in proposed[10:]]
    assert len(fill) == 4 and {info["source"] for info in fill} == {"random_fill"}
    assert len({SPACE.key(p.genotype) for p in proposed}) == 14


def test_diagnostics_of_each_generation() -> None:
    strategy = nao(initial_pool=30, top_k=4, iterations=2, holdout_fraction=0.2)
    evaluator = PlantedEvaluator(SPACE, seed=0)
    play(strategy, evaluator, batch=30, limit=30)
    metrics = strategy.pop_metrics()
    for key in ("nao/pairwise_accuracy", "nao/hamming_distance", "nao/new_fraction", "nao/num_new", "nao/mse"):
        assert key in metrics, key
    assert 0 <= metrics["nao/pairwise_accuracy"] <= 1 and metrics["nao/hamming_distance"] >= 0
    assert metrics["nao/new_fraction"] == metrics["nao/num_new"] / 4
    assert strategy.pop_metrics() == {}  # popped
    tell_scores(strategy, strategy.ask(10), evaluator)
    measured = strategy.pop_metrics()
    assert "nao/new_measured" in measured and "nao/new_predicted_mean" in measured


def test_the_model_trains_on_every_scored_architecture_by_default(monkeypatch) -> None:
    """Alg. 1 trains on everything evaluated; the held-out split is an opt-in diagnostic."""
    import naslab.strategies.nao.strategy as nao_module

    fitted: list[int] = []
    real_fit = nao_module.fit
    monkeypatch.setattr(
        nao_module, "fit", lambda model, tokens, *a, **k: fitted.append(len(tokens)) or real_fit(model, tokens, *a, **k)
    )
    strategy = nao(initial_pool=30, top_k=4, iterations=2, symmetric_twins=0)
    play(strategy, PlantedEvaluator(SPACE, seed=0), batch=30, limit=30)
    assert fitted == [30]  # all 30 scored cells, no twins
    assert "nao/pairwise_accuracy" not in strategy.pop_metrics()  # nothing held out, nothing to report
    with pytest.raises(ValueError, match="holdout_fraction"):
        nao(budget=10, holdout_fraction=1.0)


def test_state_dict_resumes_mid_generation_identically() -> None:
    evaluator = PlantedEvaluator(SPACE, seed=1)
    a = nao(
        initial_pool=12,
        top_k=4,
        iterations=3,
        batch_size=4,
        model={"embedding": 8, "hidden": 24, "dropout": 0.5, "predictor_layers": 2},
    )  # several shuffled batches and dropout: both must be reproduced
    tell_scores(a, a.ask(8), evaluator)
    state = a.state_dict()
    torch.manual_seed(123)  # the global RNG differs after a resume
    b = nao(
        initial_pool=12,
        top_k=4,
        iterations=3,
        batch_size=4,
        seed=5,
        model={"embedding": 8, "hidden": 24, "dropout": 0.5, "predictor_layers": 2},
    )  # another seed: everything comes from the state
    b.load_state_dict(state)
    assert play(a, evaluator) == play(b, evaluator)
    with pytest.raises(ValueError, match="resume it with the same search.num_architectures"):
        nao(initial_pool=12, top_k=5, iterations=3).load_state_dict(state)


def test_search_loop_records_provenance_and_stops_when_nao_finishes(tmp_path: Path) -> None:
    logged: list[dict[str, float]] = []
    strategy = nao(budget=40, initial_pool=10, top_k=3, iterations=3, holdout_fraction=0.3)
    result = run_search(
        SPACE,
        strategy,
        PlantedEvaluator(SPACE, seed=0),
        tmp_path,
        num_architectures=40,
        batch_size=5,
        log_metrics=lambda metrics, step: logged.append(metrics),
    )
    assert 10 < result.num_evaluated <= 16  # 10 + up to 3 + 3: NAO finished before the budget
    records = [json.loads(line) for line in (tmp_path / "archive.jsonl").read_text().splitlines()]
    assert [r["extra"].get("nao", {}).get("generation", 0) for r in records][:10] == [0] * 10
    assert all("pairwise_accuracy" in r["extra"]["nao"] for r in records[10:])
    ascended = [r["extra"]["nao"] for r in records[10:] if r["extra"]["nao"]["source"] == "ascent"]
    assert ascended and all("predicted" in info and "seed_score" in info for info in ascended)
    assert any("strategy/nao/hamming_distance" in m for m in logged)


def test_population_mode_rescores_the_pool_and_keeps_its_size() -> None:
    """NAO-WS: every generation scores the whole pool; new architectures replace the worst."""
    strategy = nao(initial_pool=12, top_k=4, new_per_generation=6, rescore_pool=True, iterations=None)
    evaluator = PlantedEvaluator(SPACE, seed=0)
    asked = strategy.ask(12)
    first = genotypes(asked)
    assert strategy.ask(1) == []  # the generation is out: waiting for its scores
    assert {SPACE.key(strategy.train_on()) for _ in range(50)} <= {SPACE.key(g) for g in first}
    tell_scores(strategy, asked, evaluator)
    second = genotypes(strategy.ask(100))
    assert len(second) == 12 and not strategy.finished
    survivors = {SPACE.key(g) for g in second} & {SPACE.key(g) for g in first}
    best = sorted(first, key=evaluator.score, reverse=True)
    assert {SPACE.key(g) for g in best[: len(survivors)]} == survivors  # the best survive
    assert 0 < 12 - len(survivors) <= 6


def test_population_adds_random_cells_each_generation_and_keeps_its_size() -> None:
    """renqianluo/NAO NAO-WS: the best of the pool + the new cells from ascent + 50 random ones."""
    strategy = nao(
        initial_pool=12, top_k=4, new_per_generation=4, random_per_generation=3, rescore_pool=True, iterations=None
    )
    evaluator = PlantedEvaluator(SPACE, seed=0)
    asked = strategy.ask(12)
    first = genotypes(asked)
    tell_scores(strategy, asked, evaluator)
    proposals = strategy.ask(100)
    second = genotypes(proposals)
    sources = [p.info.get("nao", {}).get("source") for p in proposals]
    assert len(second) == 12 and sources.count("random") == 3
    old = {SPACE.key(g) for g in first}
    assert all(SPACE.key(g) not in old for g, src in zip(second, sources) if src == "random")
    kept = [g for g, src in zip(second, sources) if src is None]
    best = sorted(first, key=evaluator.score, reverse=True)
    assert {SPACE.key(g) for g in kept} == {SPACE.key(g) for g in best[: len(kept)]}


def test_population_ends_on_scored_cells_and_trains_no_model_after_its_last_phase(monkeypatch) -> None:
    """Bug: after the last strategy phase NAO-WS trained its model and offered a new, never-scored
    generation as final candidates. The next generation is made only when the search asks again."""
    import naslab.strategies.nao.strategy as nao_module

    fits: list[int] = []
    real_fit = nao_module.fit
    monkeypatch.setattr(nao_module, "fit", lambda *a, **k: fits.append(1) or real_fit(*a, **k))
    strategy = nao(initial_pool=12, top_k=4, new_per_generation=6, rescore_pool=True, iterations=None)
    evaluator = PlantedEvaluator(SPACE, seed=0)
    population = strategy.ask(12)
    scores = {SPACE.key(p.genotype): evaluator.score(p.genotype) for p in population}
    strategy.tell(results_of(population, [scores[SPACE.key(p.genotype)] for p in population]))  # the last phase
    assert fits == []  # nothing is trained until more architectures are asked for
    final = strategy.derive_from(5)
    assert [SPACE.key(p.genotype) for p in final] == sorted(scores, key=scores.get, reverse=True)[:5]
    assert len(strategy.ask(100)) == 12 and fits == [1]  # a further phase: now the model trains


def test_default_run_searches_with_nao_through_the_pipeline(compose_cfg, tmp_path: Path) -> None:
    from naslab.pipeline import run

    cfg = compose_cfg("mode=search", "debug=fast", "search.num_architectures=6", "search.batch_size=3")
    assert cfg.strategy._target_.endswith("NAOStrategy") and cfg.strategy.epochs == 20  # debug/strategy/fast_nao
    results = run(cfg)
    assert results["strategy"] == "nao" and results["search"]["num_evaluated"] == 6
    records = [json.loads(line) for line in (tmp_path / "run" / "archive.jsonl").read_text().splitlines()]
    assert [("nao" in r["extra"]) for r in records] == [False] * 4 + [True] * 2  # N = 4 random, then ascent
    assert (tmp_path / "run" / "search_state.pt").exists()


@pytest.mark.slow
def test_two_seed_multirun_writes_one_results_each_and_one_wandb_group(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    sweep = tmp_path / "sweep"
    env = {**os.environ, "HOME": str(tmp_path), "WANDB_MODE": "offline"}
    env.pop("WANDB_API_KEY", None)
    cmd = [sys.executable, "run.py", "-m", "strategy=nao", "seed=0,1", "mode=search", "debug=fast"]
    done = subprocess.run(
        [*cmd, f"hydra.sweep.dir={sweep}"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results = [json.loads((sweep / str(i) / "results.json").read_text()) for i in range(2)]
    assert [r["seed"] for r in results] == [0, 1] and {r["strategy"] for r in results} == {"nao"}
    group = b"digits/micro_small/nao+standalone"
    for i in range(2):
        (run_file,) = (sweep / str(i) / "wandb").glob("offline-run-*/*.wandb")
        assert group in run_file.read_bytes()


def test_nao_with_the_shared_evaluator_needs_rescore_pool() -> None:
    """NAO-WS is opted into (strategy.rescore_pool=true): with shared weights a stand-alone NAO would trust
    scores measured on weights that have trained on since, so the combination is refused when composed."""
    reason = NAOStrategy.check_search("shared", {"rescore_pool": False})
    assert reason == (
        "strategy=nao with evaluator=shared is NAO-WS: its population must be re-scored as the shared weights "
        "train; add strategy.rescore_pool=true (experiment=nao_ws sets it)"
    )
    assert NAOStrategy.check_search("shared", {}) == reason
    assert NAOStrategy.check_search("shared", {"rescore_pool": True}) is None
    assert NAOStrategy.check_search("ask_tell", {"rescore_pool": False}) is None
    assert NAOStrategy.check_search("gradient", {"rescore_pool": True}) is not None
    assert nao(budget=10).rescore_pool is False  # a plain bool, whatever the evaluator
    assert isinstance(nao(budget=10), SharesWeights)  # it trains on its pool and derives from its population


# NAO-WS through the pipeline: NAO with shared weights re-scores its pool (strategy.rescore_pool=true)
NAO_WS_3_EPOCHS = (
    "strategy=nao",
    "evaluator=shared",
    "strategy.rescore_pool=true",
    "debug=fast",
    "mode=search",
    "evaluator.epochs=3",
)


def test_nao_with_the_shared_evaluator_is_nao_ws_and_rescores_its_pool(compose_cfg, tmp_path: Path) -> None:
    from naslab.pipeline import run

    # 3 epochs of 3 steps of 2 cells: past the 3 generations of `strategy.iterations`, after which
    # the final population keeps being re-scored (and the derivation scores all of it)
    overrides = NAO_WS_3_EPOCHS
    results = run(compose_cfg(*overrides, "search.num_architectures=6", "evaluator.strategy_steps=3"))
    assert results["strategy"] == "nao" and results["evaluator"] == "shared"
    records = [json.loads(line) for line in (tmp_path / "run" / "archive.jsonl").read_text().splitlines()]
    by_epoch = {e: {r["key"].split(":", 1)[1] for r in records if r["key"].startswith(f"epoch{e}:")} for e in range(3)}
    assert by_epoch[0] and by_epoch[1] and by_epoch[2]
    assert by_epoch[0] & by_epoch[1]  # pool members are scored again with the newer shared weights
    derived = [r for r in records if r["key"].startswith("derive:")]
    assert len(derived) == 4  # the whole population of N = 4 cells (budget 6: 4 + 1 + 1)


def test_nao_ws_derives_from_its_last_scored_population_and_trains_nothing_after(
    compose_cfg, tmp_path: Path, monkeypatch
) -> None:
    """Through the pipeline: 3 shared-weight epochs, a strategy phase after each; the model trains between
    phases (2 fits), never after the last, and the derivation only ranks cells scored in the last phase."""
    import naslab.strategies.nao.strategy as nao_module
    from naslab.pipeline import run

    fits: list[int] = []
    real_fit = nao_module.fit
    monkeypatch.setattr(nao_module, "fit", lambda *a, **k: fits.append(1) or real_fit(*a, **k))
    overrides = NAO_WS_3_EPOCHS
    sizes = ("search.num_architectures=6", "strategy.iterations=null", "evaluator.strategy_steps=1")
    run(compose_cfg(*overrides, *sizes, "evaluator.strategy_batch=4", "evaluator.derive_samples=4"))
    records = [json.loads(line) for line in (tmp_path / "run" / "archive.jsonl").read_text().splitlines()]
    last_phase = {r["key"].split(":", 1)[1] for r in records if r["key"].startswith("epoch2:")}
    derived = {r["key"].split(":", 1)[1] for r in records if r["key"].startswith("derive:")}
    assert len(fits) == 2 and len(last_phase) == 4
    assert derived and derived <= last_phase


def test_presets_carry_the_paper_settings(compose_cfg) -> None:
    from hydra.utils import instantiate

    micro = compose_cfg("experiment=nao_micro")
    space = instantiate(micro.space)
    strategy = instantiate(micro.strategy, space=space)
    assert (strategy.num_initial, strategy.top_k, strategy.iterations) == (600, 200, 3)  # 1000 evaluated
    assert len(space.ops) == 11 and space.num_nodes == 5 and micro.dataset.name == "cifar10"
    assert (micro.evaluator.epochs, micro.evaluator.channels, micro.evaluator.cells_per_stage) == (25, 32, 3)
    # renqianluo/NAO NAO/cnn/epd/train.sh --trade_off=0.8 (the paper says 0.9)
    assert strategy.etas[0] == 10 and strategy.model.hparams.trade_off == 0.8 and strategy.model.hparams.hidden == 96

    # NAO-WS as renqianluo/NAO NAO-WS/cnn/train_search.sh + train_search.py ran it (the paper's NAO-WS numbers)
    ws = compose_cfg("experiment=nao_ws")
    population = instantiate(ws.strategy, space=instantiate(ws.space))
    assert (population.num_initial, population.top_k, population.num_new, population.random_per_generation) == (
        1000,
        100,
        500,
        50,
    )
    assert population.rescore_pool and population.iterations is None and population.etas == list(range(1, 102))
    hp = population.model.hparams
    assert (hp.embedding, hp.hidden, hp.predictor_layers, hp.predictor_hidden) == (48, 96, 4, 100)
    assert (hp.trade_off, hp.weight_decay, hp.lr, population.holdout_fraction) == (0.8, 1e-4, 0.001, 0.0)
    assert (ws.evaluator.epochs, ws.evaluator.strategy_every, ws.evaluator.strategy_batch) == (150, 30, 1000)
    assert (ws.evaluator.valid_batch_size, ws.evaluator.batch_size, ws.evaluator.channels) == (500, 160, 20)


def test_failed_trials_stay_out_of_training_and_held_out_cells_are_never_trained_on(monkeypatch) -> None:
    import naslab.strategies.nao.strategy as nao_module

    fits: list[set[str]] = []
    real_fit = nao_module.fit

    def recording_fit(model, tokens, targets, **kwargs):
        fits.append({SPACE.key(SPACE.from_tokens(t)) for t in tokens.tolist()})
        assert targets.min() >= 0 and targets.max() <= 1
        return real_fit(model, tokens, targets, **kwargs)

    monkeypatch.setattr(nao_module, "fit", recording_fit)
    strategy = nao(initial_pool=40, top_k=10, iterations=3, holdout_fraction=0.2, fill_with_random=False)
    evaluator = PlantedEvaluator(SPACE, seed=0)
    failed: set[str] = set()
    proposed: list = []
    while asked := strategy.ask(10):
        scores = [evaluator.score(p.genotype) for p in asked]
        scores[0] = 0.0  # a NaN-loss child, scored 0 by the evaluator
        failed.add(SPACE.key(asked[0].genotype))
        proposed += genotypes(asked)
        strategy.tell(results_of(asked, scores))
    assert len(fits) == 2
    heldout = {SPACE.key(g) for g in proposed if strategy._held_out(SPACE.key(g))}
    assert heldout and all(not (trained & heldout) and not (trained & failed) for trained in fits)


def _sources(proposed: list[Proposal]) -> list:
    return [p.info.get("nao", {}).get("source", "initial") for p in proposed]


def test_unlabelled_cells_let_ascent_propose_new_cells_at_the_quick_start_budget() -> None:
    """Bug (the quick start: 12-16 architectures): a model fitted to 8 scored cells decodes every embedding
    to one of them, so ascent gave known cells back and the generation was random fill. Random cells in
    the reconstruction loss (nao_quick's `unlabelled`) teach the decoder the space: every cell after the
    random pool comes from ascent."""
    sizes = {"budget": 16, "initial_fraction": 0.5, "epochs": 50, "batch_size": 50, "seed": 1}
    counts = {}
    for unlabelled in (0, 100):
        strategy = nao(**sizes, unlabelled=unlabelled)
        proposed = play(strategy, PlantedEvaluator(SPACE, seed=1))
        assert len(proposed) == 16 and strategy.num_initial == 8 and strategy.top_k == 4
        counts[unlabelled] = _sources(proposed).count("ascent")
    assert counts[100] == 8 and counts[0] < 8


def test_unlabelled_cells_enter_training_without_a_score_and_come_from_the_seed_alone(monkeypatch) -> None:
    import naslab.strategies.nao.strategy as nao_module

    fits: list[tuple[torch.Tensor, torch.Tensor]] = []
    real_fit = nao_module.fit
    monkeypatch.setattr(nao_module, "fit", lambda model, t, s, **k: fits.append((t, s)) or real_fit(model, t, s, **k))
    sizes = {"initial_pool": 10, "top_k": 3, "iterations": 3, "holdout_fraction": 0.3}
    with_unlabelled = nao(**sizes, unlabelled=40)
    evaluator = PlantedEvaluator(SPACE, seed=0)
    first = with_unlabelled.ask(10)
    assert first == nao(**sizes).ask(10)  # the strategy's random stream is untouched
    tell_scores(with_unlabelled, first, evaluator)
    play(with_unlabelled, evaluator)
    assert len(fits) == 2
    unlabelled = [t[s.isnan()] for t, s in fits]
    assert all(len(u) == 40 for u in unlabelled) and torch.equal(unlabelled[0], unlabelled[1])  # drawn once
    assert all(not s[: len(s) - 40].isnan().any() and s[-40:].isnan().all() for _, s in fits)
    keys = {SPACE.key(SPACE.from_tokens(t)) for t in unlabelled[0].tolist()}
    assert len(keys) == 40 and not any(with_unlabelled._held_out(k) for k in keys)  # held-out cells stay unseen
    resumed = nao(**{**sizes, "seed": 3}, unlabelled=40)
    resumed.load_state_dict(with_unlabelled.state_dict())
    assert torch.equal(resumed._unlabelled_tokens(), unlabelled[0])  # the restored seed's cells
    with pytest.raises(ValueError, match="unlabelled"):
        nao(budget=10, unlabelled=-1)


def test_quick_preset_keeps_the_paper_model_and_sizes_the_quick_start(compose_cfg) -> None:
    from hydra.utils import instantiate

    cfg = compose_cfg("strategy=nao_quick", "search.num_architectures=16")
    strategy = instantiate(cfg.strategy, space=instantiate(cfg.space))
    assert (strategy.num_initial, strategy.top_k, strategy.iterations) == (8, 4, 3)  # 8 + 4 + 4
    assert strategy.num_unlabelled == 200 and strategy.train_settings["epochs"] == 50
    paper = compose_cfg("strategy=nao")
    assert cfg.strategy.model == paper.strategy.model and cfg.strategy.eta == paper.strategy.eta == 10
    assert paper.strategy.unlabelled == 0 and paper.strategy.epochs == 1000  # nao.yaml stays the paper's
    assert paper.strategy.rescore_pool is False and cfg.strategy.rescore_pool is False  # NAO-WS is opted into


def test_seeded_search_is_bit_identical_whatever_the_torch_thread_count() -> None:
    """Bug: the model's training and ascent summed in a thread-dependent order, so threads=1 and threads=2
    runs proposed different cells. The model now runs on one thread whatever the caller's setting."""
    space = MicroSpace(3, "enas")
    runs = []
    threads = torch.get_num_threads()
    try:
        for count in (1, 2):
            torch.set_num_threads(count)
            strategy = NAOStrategy(space, seed=0, initial_pool=16, top_k=4, iterations=2, epochs=20, batch_size=50)
            proposed = play(strategy, PlantedEvaluator(space, seed=0))
            assert torch.get_num_threads() == count  # restored after the model's work
            runs.append(([space.key(p.genotype) for p in proposed], [p.info for p in proposed]))
    finally:
        torch.set_num_threads(threads)
    assert runs[0] == runs[1]  # the same cells, etas and predicted scores, bit for bit
