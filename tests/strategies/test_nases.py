"""strategy=nases (file 001, Alg. 1): the simulator-initialised Bernoulli controller, warm-up, epsilon-greedy,
the reward pool's policy gradient, resume, and the autoencoder it is built from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import binomtest

from naslab.spaces.base import Task
from naslab.spaces.macro import MacroSpace
from naslab.spaces.nases import NASESGenotype, NASESSpace
from naslab.strategies.nases import NASESStrategy, bernoulli_entropy, bernoulli_log_prob, obtain_autoencoder
from naslab.strategies.nases_autoencoder import BatchSchedule, load_pretrained, pretrain, save_pretrained
from naslab.strategies.nases_reward import nases_reward

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
        genotypes = strategy.ask(2)
        strategy.tell(genotypes, [0.2, 0.9])
    assert strategy.updates == 6
    assert not torch.equal(next(iter(strategy.controller.parameters())), next(iter(autoencoder.simulator.parameters())))
    assert all(torch.equal(decoder_before[k], v) for k, v in strategy.decoder.state_dict().items())
    assert not any(p.requires_grad for p in strategy.decoder.parameters())


def test_proposals_are_decoded_embeddings_inside_the_box_that_build(autoencoder_file) -> None:
    strategy = make(autoencoder_file, warmup=0, epsilon=0.0)
    genotypes = strategy.ask(50)
    values = np.array([g.values for g in genotypes])
    assert values.shape == (50, 60) and values.min() >= 0.0 and values.max() <= 30.0
    assert len({SPACE.key(g) for g in genotypes}) == 50  # a stochastic policy, not a fixed point
    for genotype in genotypes:
        info = strategy.proposal_info(genotype)["nases"]
        assert len(info["embedding"]) == 20 and set(info["embedding"]) <= {0, 1} and info["random"] is False
        decoded = strategy.decoder(torch.tensor([info["embedding"]], dtype=torch.float32))[0]
        assert np.allclose(decoded.detach().numpy(), genotype.values, atol=1e-5)
    task = Task(kind="image", num_classes=10, input_shape=(1, 8, 8))
    for genotype in genotypes[:2]:
        assert SPACE.build_child(genotype, task, channels=4)(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_warm_up_is_random_and_the_controller_waits_for_it(autoencoder_file) -> None:
    strategy = make(autoencoder_file, warmup=10, epsilon=0.0, lr=1e-2)
    before = [p.detach().clone() for p in strategy.controller.parameters()]
    genotypes = strategy.ask(10)
    assert all(strategy.proposal_info(g)["nases"]["random"] for g in genotypes)
    strategy.tell(genotypes[:9], [0.1 * i for i in range(9)])
    assert strategy.updates == 0 and all(torch.equal(a, b) for a, b in zip(before, strategy.controller.parameters()))
    strategy.tell(genotypes[9:], [0.95])
    assert strategy.updates == 1 and not all(
        torch.equal(a, b) for a, b in zip(before, strategy.controller.parameters())
    )
    assert not any(strategy.proposal_info(g)["nases"]["random"] for g in strategy.ask(5))  # epsilon 0 after warm-up


def test_epsilon_greedy_proposes_random_architectures_one_time_in_ten(autoencoder_file) -> None:
    strategy = make(autoencoder_file, warmup=0, epsilon=0.1, seed=3)
    randoms = sum(strategy.proposal_info(g)["nases"]["random"] for g in strategy.ask(2000))
    assert binomtest(randoms, 2000, 0.1).pvalue > 1e-3, randoms
    assert 120 < randoms < 280


def test_the_reward_weighs_the_generalisation_gap_and_the_pool_is_renormalised(autoencoder_file) -> None:
    strategy = make(autoencoder_file, warmup=100)
    genotypes = strategy.ask(3)
    strategy.tell_with_details(genotypes, [0.8, 0.8, 0.6], [{"train_accuracy": 0.8}, {"train_accuracy": 1.0}, {}])
    rewards = [e.reward for e in strategy.pool.entries]
    assert rewards == pytest.approx([nases_reward(0.8, 0.8), nases_reward(0.8, 1.0), 0.6**3])
    assert rewards[0] > rewards[1]  # same validation accuracy, larger gap: less reward
    z = np.array([e.normalised for e in strategy.pool.entries])
    assert abs(z.mean()) < 1e-9 and z.std() == pytest.approx(1.0)
    assert all(len(e.state) == 60 and len(e.action) == 20 for e in strategy.pool.entries)


def test_one_update_raises_the_log_probability_of_the_better_action(autoencoder_file) -> None:
    strategy = make(autoencoder_file, warmup=2, samples_per_update=2, lr=1e-3)
    good, bad = strategy.ask(2)
    entries = {"good": strategy.pending[SPACE.key(good)], "bad": strategy.pending[SPACE.key(bad)]}

    def log_prob(name: str) -> float:
        state = torch.tensor([entries[name]["state"]], dtype=torch.float32)
        action = torch.tensor([entries[name]["action"]], dtype=torch.float32)
        with torch.no_grad():
            return float(bernoulli_log_prob(strategy.probabilities(state), action))

    before = {name: log_prob(name) for name in entries}
    strategy.tell([good, bad], [0.9, 0.1])  # the second tell completes the warm-up: one update on both
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
                genotypes = strategy.ask(1)
                scores += [conv_fraction(g) for g in genotypes]
                strategy.tell(genotypes, scores[-1:])
            sink.append(np.mean(scores[-40:]))
    assert np.mean(learned) > np.mean(random) + 0.08, (learned, random)
    assert min(learned) > np.mean(random), (learned, random)


def test_state_best_feeds_the_best_child_so_far(autoencoder_file) -> None:
    strategy = make(autoencoder_file, state="best", warmup=0, epsilon=0.0)
    genotypes = strategy.ask(3)
    strategy.tell(genotypes, [0.2, 0.7, 0.4])
    best = SPACE.key(genotypes[1])
    strategy.ask(1)
    state = next(iter(strategy.pending.values()))["state"]
    assert SPACE.key(NASESGenotype(tuple(state))) == best


def test_a_restored_strategy_continues_identically(autoencoder_file) -> None:
    first = make(autoencoder_file, warmup=3, lr=1e-2, seed=5)
    for step in range(4):
        genotypes = first.ask(2)
        first.tell_with_details(genotypes, [0.3 + 0.1 * step, 0.5], [{"train_accuracy": 0.6}] * 2)
    second = make(autoencoder_file, warmup=3, lr=1e-2, seed=99)
    second.load_state_dict(first.state_dict())
    for _ in range(3):
        a, b = first.ask(2), second.ask(2)
        assert a == b
        first.tell(a, [0.4, 0.8])
        second.tell(b, [0.4, 0.8])
    assert all(torch.equal(x, y) for x, y in zip(first.controller.parameters(), second.controller.parameters()))
    assert [e.reward for e in first.pool.entries] == [e.reward for e in second.pool.entries]


def test_bad_input_gets_one_line_errors(autoencoder_file, tmp_path) -> None:
    with pytest.raises(ValueError, match="searches space=nases"):
        NASESStrategy(MacroSpace(num_layers=2), pretrained=str(autoencoder_file))
    with pytest.raises(FileNotFoundError, match="nases_compression.py"):
        make(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="strategy.state"):
        make(autoencoder_file, state="previous")
    with pytest.raises(ValueError, match="maps 60 values"):
        NASESStrategy(NASESSpace(num_layers=3), pretrained=str(autoencoder_file))


def test_an_autoencoder_pretrained_on_the_fly_is_cached_and_reused(tmp_path, monkeypatch) -> None:
    space = NASESSpace(num_layers=3)
    cache = tmp_path / "ae.pt"
    options = {"embedding_size": 4, "train_size": 256, "test_size": 64, "epochs": 1, "hidden": [16]}
    first = obtain_autoencoder(space, None, cache, options, seed=0)
    assert cache.is_file() and first.hparams.origin == 12

    def no_training(*args, **kwargs):
        raise AssertionError("the cached autoencoder should have been loaded")

    monkeypatch.setattr("naslab.strategies.nases.pretrain", no_training)
    second = obtain_autoencoder(space, None, cache, options, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
    strategy = NASESStrategy(space, cache=str(cache), pretrain=options, warmup=0)
    assert all(len(g.values) == 12 for g in strategy.ask(3))
