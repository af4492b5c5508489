"""strategy=nases (Liu's NASES paper, Alg. 1): the simulator-initialised Bernoulli controller, warm-up, epsilon-greedy,
the reward pool's policy gradient, resume, and the autoencoder it is built from."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pytest
import torch
from scipy.stats import binomtest

from naslab.evaluators.base import Evaluation, Evaluator
from naslab.search.ask_tell import run_search
from naslab.spaces.base import Task
from naslab.spaces.macro.space import MacroSpace
from naslab.spaces.nases.space import NASESGenotype, NASESSpace
from naslab.strategies.base import Proposal, Result, SharesWeights, results_of
from naslab.strategies.nases.autoencoder import BatchSchedule, load_pretrained, pretrain, save_pretrained
from naslab.strategies.nases.reward import nases_reward
from naslab.strategies.nases.strategy import (
    FAILED_REWARD,
    NASESStrategy,
    bernoulli_entropy,
    bernoulli_log_prob,
    obtain_autoencoder,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SPACE = NASESSpace()


@pytest.fixture(scope="module")
def autoencoder_file(tmp_path_factory) -> Path:
    """A small but trained 60 -> 20 autoencoder (seconds): decoded embeddings vary as uniform architectures do."""
    model, metrics = pretrain(
        20, train_size=3000, test_size=500, epochs=6, lr=1e-3, hidden=(256, 128, 64), batch_schedule=BatchSchedule(32)
    )
    return save_pretrained(model, tmp_path_factory.mktemp("ae") / "ae20.pt", metrics)


def make(autoencoder_file: Path, **options) -> NASESStrategy:
    return NASESStrategy(SPACE, pretrained=str(autoencoder_file), **options)


def genotypes_of(proposals: list[Proposal]) -> list[NASESGenotype]:
    return [p.genotype for p in proposals]


def conv_fraction(genotype: NASESGenotype) -> float:
    """A planted accuracy: the share of layers that decode to a plain convolution."""
    layers = SPACE.decode(genotype)
    return sum(layer.op.startswith("conv") for layer in layers) / len(layers)


def test_bernoulli_log_prob_and_entropy_match_torch() -> None:
    p = torch.tensor([[0.2, 0.7, 0.5], [0.9, 0.1, 0.4]])
    b = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    dist = torch.distributions.Bernoulli(probs=p)
    assert torch.allclose(bernoulli_log_prob(p, b), dist.log_prob(b).sum(1))
    assert torch.allclose(bernoulli_entropy(p), dist.entropy().sum(1))


def test_controller_starts_as_the_simulator_and_the_decoder_stays_frozen(autoencoder_file) -> None:
    autoencoder, _ = load_pretrained(autoencoder_file)
    strategy = make(autoencoder_file, warmup=0, lr=1e-2)
    for (name, theirs), mine in zip(
        autoencoder.simulator.state_dict().items(), strategy.controller.state_dict().values()
    ):
        assert torch.equal(theirs, mine), name
    states = torch.rand(4, 60) * 30
    assert torch.allclose(strategy.probabilities(states), autoencoder.encode(states))
    decoder_before = {k: v.clone() for k, v in strategy.decoder.state_dict().items()}
    for _ in range(3):
        strategy.tell(results_of(strategy.ask(2), [0.2, 0.9]))
    assert strategy.updates == 6
    assert not torch.equal(next(iter(strategy.controller.parameters())), next(iter(autoencoder.simulator.parameters())))
    assert all(torch.equal(decoder_before[k], v) for k, v in strategy.decoder.state_dict().items())
    assert not any(p.requires_grad for p in strategy.decoder.parameters())


def test_proposals_are_decoded_embeddings_inside_the_box_that_build(autoencoder_file) -> None:
    strategy = make(autoencoder_file, warmup=0, epsilon=0.0)
    proposals = strategy.ask(50)
    genotypes = genotypes_of(proposals)
    values = np.array([g.values for g in genotypes])
    assert values.shape == (50, 60) and values.min() >= 0.0 and values.max() <= 30.0
    assert len({SPACE.key(g) for g in genotypes}) == 50  # a stochastic policy, not a fixed point
    for genotype, proposal in zip(genotypes, proposals):
        info = proposal.info["nases"]
        assert len(info["embedding"]) == 20 and set(info["embedding"]) <= {0, 1} and info["random"] is False
        decoded = strategy.decoder(torch.tensor([info["embedding"]], dtype=torch.float32))[0]
        assert np.allclose(decoded.detach().numpy(), genotype.values, atol=1e-5)
    task = Task(kind="image", num_classes=10, input_shape=(1, 8, 8))
    for genotype in genotypes[:2]:
        assert SPACE.build_child(genotype, task, channels=4)(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_warm_up_is_random_and_the_controller_waits_for_it(autoencoder_file) -> None:
    strategy = make(autoencoder_file, warmup=10, epsilon=0.0, lr=1e-2)
    before = [p.detach().clone() for p in strategy.controller.parameters()]
    proposals = strategy.ask(10)
    assert all(p.info["nases"]["random"] for p in proposals)
    strategy.tell(results_of(proposals[:9], [0.1 * i for i in range(9)]))
    assert strategy.updates == 0 and all(torch.equal(a, b) for a, b in zip(before, strategy.controller.parameters()))
    strategy.tell(results_of(proposals[9:], [0.95]))
    assert strategy.updates == 1 and not all(
        torch.equal(a, b) for a, b in zip(before, strategy.controller.parameters())
    )
    assert not any(p.info["nases"]["random"] for p in strategy.ask(5))  # epsilon 0 after warm-up


def test_epsilon_greedy_proposes_random_architectures_one_time_in_ten(autoencoder_file) -> None:
    strategy = make(autoencoder_file, warmup=0, epsilon=0.1, seed=3)
    randoms = sum(p.info["nases"]["random"] for p in strategy.ask(2000))
    assert binomtest(randoms, 2000, 0.1).pvalue > 1e-3, randoms
    assert 120 < randoms < 280


def test_the_reward_weighs_the_generalisation_gap_and_the_pool_is_renormalised(autoencoder_file) -> None:
    strategy = make(autoencoder_file, warmup=100)
    genotypes = genotypes_of(strategy.ask(3))
    extras = [{"train_accuracy": 0.8}, {"train_accuracy": 1.0}, {}]
    strategy.tell([Result(g, s, extra) for g, s, extra in zip(genotypes, [0.8, 0.8, 0.6], extras)])
    rewards = [e.reward for e in strategy.pool.entries]
    assert rewards == pytest.approx([nases_reward(0.8, 0.8), nases_reward(0.8, 1.0), 0.6**3])
    assert rewards[0] > rewards[1]  # same validation accuracy, larger gap: less reward
    z = np.array([e.normalised for e in strategy.pool.entries])
    assert abs(z.mean()) < 1e-9 and z.std() == pytest.approx(1.0)
    assert all(len(e.state) == 60 and len(e.action) == 20 for e in strategy.pool.entries)


def test_one_update_raises_the_log_probability_of_the_better_action(autoencoder_file) -> None:
    strategy = make(autoencoder_file, warmup=2, samples_per_update=2, lr=1e-3)
    good, bad = genotypes_of(strategy.ask(2))
    entries = {"good": strategy.pending[SPACE.key(good)][0], "bad": strategy.pending[SPACE.key(bad)][0]}

    def log_prob(name: str) -> float:
        state = torch.tensor([entries[name]["state"]], dtype=torch.float32)
        action = torch.tensor([entries[name]["action"]], dtype=torch.float32)
        with torch.no_grad():
            return float(bernoulli_log_prob(strategy.probabilities(state), action))

    before = {name: log_prob(name) for name in entries}
    strategy.tell([Result(good, 0.9), Result(bad, 0.1)])  # the second tell completes the warm-up: one update on both
    assert strategy.updates == 1
    assert log_prob("good") > before["good"] and log_prob("bad") < before["bad"]


def test_the_controller_learns_a_planted_accuracy_where_random_embeddings_do_not(autoencoder_file) -> None:
    """150 children, 3 seeds: the conv share of the last 40 proposals rises above the warm-up's and above random."""
    learned, random = [], []
    for seed in range(3):
        for warmup, sink in ((10, learned), (10**6, random)):  # an endless warm-up is random search in the embedding
            strategy = make(autoencoder_file, seed=seed, lr=3e-3, warmup=warmup)
            scores = []
            for _ in range(150):
                proposals = strategy.ask(1)
                scores += [conv_fraction(p.genotype) for p in proposals]
                strategy.tell(results_of(proposals, scores[-1:]))
            sink.append(np.mean(scores[-40:]))
    assert np.mean(learned) > np.mean(random) + 0.08, (learned, random)
    assert min(learned) > np.mean(random), (learned, random)


class ConstantEvaluator(Evaluator[NASESGenotype]):
    """Scores every child 0.5 with training accuracy 0.75, or fails it (score 0, error) when `fail` says so."""

    name = "constant"

    def __init__(self, fail=lambda genotype: False) -> None:
        self.fail = fail

    def evaluate(self, genotypes: Sequence[NASESGenotype]) -> list[Evaluation]:
        return [
            Evaluation(0.0, error="training loss is nan")
            if self.fail(g)
            else Evaluation(0.5, extra={"train_accuracy": 0.75})
            for g in genotypes
        ]


def test_repeated_proposals_are_each_pooled_with_their_own_action(autoencoder_file, tmp_path) -> None:
    """A saturated controller decodes every sample to one architecture: the search loop re-tells the archived
    score for each repeat, and every proposal enters the pool once, with nothing left pending."""
    strategy = make(autoencoder_file, warmup=0, epsilon=0.0)
    with torch.no_grad():
        strategy.controller[-2].bias.fill_(100.0)  # the Linear before the sigmoid: p = 1, every action all ones
    result = run_search(SPACE, strategy, ConstantEvaluator(), tmp_path, num_architectures=2, batch_size=3)
    assert result.num_evaluated == 1  # one architecture, proposed until the loop gave up (10 x budget)
    assert len(strategy.pool) == strategy.proposed >= 20 and strategy.pending == {}
    assert {e.action for e in strategy.pool.entries} == {(1.0,) * 20}
    assert strategy.pool.entries[0].reward == pytest.approx(nases_reward(0.5, 0.75))


def test_a_failed_child_gets_the_worst_reward_and_bad_scores_raise(autoencoder_file, tmp_path) -> None:
    strategy = make(autoencoder_file, warmup=100)
    evaluated: list[NASESGenotype] = []
    run_search(SPACE, strategy, ConstantEvaluator(lambda g: evaluated.append(g) or len(evaluated) == 2), tmp_path, 3)
    rewards = [e.reward for e in strategy.pool.entries]
    assert FAILED_REWARD == -1.0 and min(rewards) == FAILED_REWARD and rewards.count(FAILED_REWARD) == 1
    assert min(nases_reward(v, t) for v in (0.0, 1.0) for t in (0.0, 1.0)) == FAILED_REWARD  # nothing trained is lower
    (failed,) = strategy.ask(1)  # told directly: the result's error decides, whatever its extras say
    strategy.tell([Result(failed.genotype, 0.0, {"train_accuracy": 0.9}, error="training loss is nan")])
    assert strategy.pool.entries[-1].reward == FAILED_REWARD
    with pytest.raises(ValueError, match=r"acc_val must be an accuracy in \[0, 1\]"):
        strategy.tell(results_of(strategy.ask(1), [85.0]))  # a percentage, not an accuracy: no silent clamping


def test_state_previous_chains_each_proposal_from_the_last(autoencoder_file) -> None:
    strategy = make(autoencoder_file, warmup=0, epsilon=0.0)
    assert strategy.state_kind == "previous"  # Alg. 1, lines 9-10
    first, second, third = genotypes_of(strategy.ask(3))
    states = [entries[0]["state"] for entries in strategy.pending.values()]
    assert states[1] == pytest.approx(list(first.values)) and states[2] == pytest.approx(list(second.values))


def test_state_best_feeds_the_best_child_so_far(autoencoder_file) -> None:
    strategy = make(autoencoder_file, state="best", warmup=0, epsilon=0.0)
    genotypes = genotypes_of(strategy.ask(3))
    strategy.tell([Result(g, s) for g, s in zip(genotypes, [0.2, 0.7, 0.4])])
    best = SPACE.key(genotypes[1])
    strategy.ask(1)
    state = next(iter(strategy.pending.values()))[0]["state"]
    assert SPACE.key(NASESGenotype(tuple(state))) == best


def test_a_restored_strategy_continues_identically(autoencoder_file) -> None:
    first = make(autoencoder_file, warmup=3, lr=1e-2, seed=5)
    for step in range(4):
        proposals = first.ask(2)
        first.tell([Result(p.genotype, s, {"train_accuracy": 0.6}) for p, s in zip(proposals, [0.3 + 0.1 * step, 0.5])])
    second = make(autoencoder_file, warmup=3, lr=1e-2, seed=99)
    second.load_state_dict(first.state_dict())
    for _ in range(3):
        a, b = first.ask(2), second.ask(2)
        assert a == b
        first.tell(results_of(a, [0.4, 0.8]))
        second.tell(results_of(b, [0.4, 0.8]))
    assert all(torch.equal(x, y) for x, y in zip(first.controller.parameters(), second.controller.parameters()))
    assert [e.reward for e in first.pool.entries] == [e.reward for e in second.pool.entries]


def test_bad_input_gets_one_line_errors(autoencoder_file, tmp_path) -> None:
    with pytest.raises(ValueError, match="searches space=nases"):
        NASESStrategy(MacroSpace(num_layers=2), pretrained=str(autoencoder_file))
    with pytest.raises(FileNotFoundError, match="nases_compression.py"):
        make(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="strategy.state"):
        make(autoencoder_file, state="last")
    with pytest.raises(ValueError, match="maps 60 values"):
        NASESStrategy(NASESSpace(num_layers=3), pretrained=str(autoencoder_file))
    # weight sharing: no supernet for space=nases, refused when the run is composed
    assert NASESStrategy.check_search("shared", {}) == (
        "strategy=nases trains every child stand-alone (no weight sharing): "
        "use evaluator=standalone, or evaluator=table for a measured space"
    )
    assert NASESStrategy.check_search("ask_tell", {}) is None and NASESStrategy.check_search("gradient", {})
    assert NASESStrategy.search_kinds == ("ask_tell",) and not isinstance(make(autoencoder_file), SharesWeights)


def test_an_autoencoder_pretrained_on_the_fly_is_cached_and_reused(tmp_path, monkeypatch) -> None:
    space = NASESSpace(num_layers=3)
    cache = tmp_path / "ae.pt"
    options = {"embedding_size": 4, "train_size": 256, "test_size": 64, "epochs": 1, "hidden": [16]}
    first = obtain_autoencoder(space, None, cache, options, seed=0)
    assert cache.is_file() and first.hparams.origin == 12

    def no_training(*args, **kwargs):
        raise AssertionError("the cached autoencoder should have been loaded")

    monkeypatch.setattr("naslab.strategies.nases.strategy.pretrain", no_training)
    second = obtain_autoencoder(space, None, cache, options, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
    strategy = NASESStrategy(space, cache=str(cache), pretrain=options, warmup=0)
    assert all(len(p.genotype.values) == 12 for p in strategy.ask(3))
    with pytest.raises(ValueError, match="delete it or set strategy.cache elsewhere"):
        obtain_autoencoder(space, None, cache, {**options, "embedding_size": 8}, seed=0)  # a stale cache


@pytest.mark.slow
def test_a_killed_nases_search_resumes_with_its_autoencoder_pool_and_controller(compose_cfg, tmp_path) -> None:
    """kill -9 after the warm-up (controller updates under way); resume = the search never interrupted."""
    import json

    from naslab.pipeline import run
    from tests.conftest import run_and_kill_9

    args = [
        "experiment=nases_macro",
        "dataset=digits",
        "mode=search",
        "logger=none",
        "debug=fast",
        "search.num_architectures=9",
        "strategy.warmup=3",
        "strategy.lr=1e-2",
        "evaluator.epochs=4",
        "evaluator.train_batches=4",
    ]

    def records(run_dir: Path) -> list[dict]:
        return [json.loads(line) for line in (run_dir / "archive.jsonl").read_text().splitlines() if line.strip()]

    killed = tmp_path / "killed"
    archive = killed / "archive.jsonl"
    run_and_kill_9(args, killed, lambda: archive.exists() and len(archive.read_text().splitlines()) >= 5)
    before = records(killed)
    assert 5 <= len(before) < 9 and (killed / "nases_autoencoder.pt").is_file()
    resumed = run(compose_cfg(*args, "resume=true", run_dir=killed))
    after = records(killed)
    assert after[: len(before)] == before and len(after) == 9 == resumed["search"]["num_evaluated"]
    fresh = run(compose_cfg(*args, run_dir=tmp_path / "fresh"))
    assert [(r["key"], r["score"]) for r in records(tmp_path / "fresh")] == [(r["key"], r["score"]) for r in after]
    assert fresh["genotype"] == resumed["genotype"]
    assert all(0.0 <= r["extra"]["train_accuracy"] <= 1.0 for r in after)


def test_nases_macro_children_and_final_training_follow_the_paper_recipe(compose_cfg) -> None:
    """Nesterov SGD 0.9, cosine 0.05 -> 0.001, weight decay 1e-4, no clipping, for children and the final
    network; the evaluator carrying the partials still pickles (pool / Ray workers get a copy)."""
    import pickle

    from hydra.utils import instantiate

    from naslab.train.modules import training_module

    cfg = compose_cfg("experiment=nases_macro", "dataset=digits")
    space = instantiate(cfg.space)
    task = Task(num_classes=10, input_shape=(1, 8, 8))
    evaluator = instantiate(
        cfg.evaluator,
        space=space,
        task=task,
        datamodule_factory=lambda **_: None,
        trainer_factory=None,
        _convert_="object",
    )
    evaluator = pickle.loads(pickle.dumps(evaluator))
    network = space.build_child(space.sample(np.random.default_rng(0)), task, channels=4)
    module, trainer_options = training_module(task, network, evaluator.epochs, evaluator.module_kwargs)
    configured = module.configure_optimizers()
    optimizer, scheduler = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["nesterov"] is True
    assert (optimizer.defaults["lr"], optimizer.defaults["momentum"], optimizer.defaults["weight_decay"]) == (
        0.05,
        0.9,
        1e-4,
    )
    assert isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingLR)
    assert (scheduler.T_max, scheduler.eta_min, evaluator.epochs) == (10, 0.001, 10)
    assert trainer_options["gradient_clip_val"] is None and cfg.train.grad_clip is None
    final = instantiate(cfg.train.optimizer)(network.parameters())
    assert final.defaults["nesterov"] is True and (final.defaults["lr"], final.defaults["weight_decay"]) == (0.05, 1e-4)
    assert (cfg.train.epochs, cfg.train.scheduler.T_max, cfg.train.scheduler.eta_min) == (700, 700, 0.001)
    assert (cfg.train.batch_size, cfg.evaluator.batch_size, cfg.search.batch_size) == (128, 128, 1)
