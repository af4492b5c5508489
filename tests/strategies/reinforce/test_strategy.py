"""The REINFORCE controller: token table, sampling, scoring, learning, checkpoint round trip."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from naslab.pipeline import run
from naslab.spaces import MicroSpace
from naslab.strategies import RandomStrategy, ReinforceStrategy
from naslab.strategies.base import AskedRole, Proposal, Result, SharesWeights, results_of, weight_sharing_role
from naslab.strategies.reinforce.strategy import Controller

SPACE = MicroSpace(2, "enas")


def planted_score(space: MicroSpace, target: tuple[int, ...]):
    """Fraction of decisions equal to a planted optimum: 1.0 only at `target`."""
    return lambda g: float(np.mean(np.array(space.to_tokens(g)) == np.array(target)))


def genotypes_of(proposals: list[Proposal]) -> list:
    return [p.genotype for p in proposals]


def told(genotypes: list, scores: list[float]) -> list[Result]:
    """Results of `genotypes` (architectures the strategy may not have proposed) with only a score."""
    return [Result(g, float(s)) for g, s in zip(genotypes, scores, strict=True)]


def mean_reward(strategy, score, budget: int = 200, batch: int = 10) -> float:
    rewards: list[float] = []
    for _ in range(budget // batch):
        proposals = strategy.ask(batch)
        scores = [score(p.genotype) for p in proposals]
        strategy.tell(results_of(proposals, scores))
        rewards += scores
    return float(np.mean(rewards))


def test_controller_heads_follow_the_token_table() -> None:
    controller = Controller(SPACE.token_choices(), hidden=100)
    assert [head.out_features for head in controller.heads] == SPACE.token_choices()
    assert controller.lstm.hidden_size == 100
    with pytest.raises(ValueError, match="token table"):
        Controller([])


def test_samples_are_valid_and_seeded() -> None:
    a, b = ReinforceStrategy(SPACE, seed=3), ReinforceStrategy(SPACE, seed=3)
    proposals = a.ask(16)
    assert proposals == b.ask(16)
    for p in proposals:
        SPACE.validate(p.genotype)
        assert p.info == {}  # no predictor: nothing to archive
    assert ReinforceStrategy(SPACE, seed=4).ask(16) != proposals


def test_reinforce_trains_shared_weights_on_and_derives_from_its_samples() -> None:
    """ENAS: the controller's samples are both the shared weights' next architecture and the derivation's."""
    strategy, same = ReinforceStrategy(SPACE, seed=3), ReinforceStrategy(SPACE, seed=3)
    assert not isinstance(strategy, SharesWeights)
    role = weight_sharing_role(strategy)
    assert isinstance(role, AskedRole) and not role.finished
    assert role.train_on() == same.ask(1)[0].genotype
    assert role.derive_from(4) == same.ask(4)


def test_scoring_given_tokens_reproduces_the_sampled_log_prob() -> None:
    controller = Controller(SPACE.token_choices())
    sampled = controller(8, generator=torch.Generator().manual_seed(0))
    rescored = controller(8, tokens=sampled.tokens)
    assert torch.allclose(sampled.log_prob, rescored.log_prob) and torch.allclose(sampled.entropy, rescored.entropy)
    assert (sampled.log_prob < 0).all() and (sampled.entropy > 0).all()


def test_tell_moves_probability_towards_rewarded_architectures() -> None:
    strategy = ReinforceStrategy(SPACE, seed=0, lr=0.05)
    good, bad = genotypes_of(strategy.ask(2))
    tokens = torch.tensor([SPACE.to_tokens(good), SPACE.to_tokens(bad)])
    before = strategy.controller(2, tokens=tokens).log_prob.detach()
    for _ in range(5):
        strategy.tell(told([good, bad], [1.0, 0.0]))
    after = strategy.controller(2, tokens=tokens).log_prob.detach()
    assert after[0] > before[0] and after[1] < before[1]


def test_planted_reward_reinforce_beats_random_over_5_seeds() -> None:
    """The generic controller with its former settings (temperature 5, tanh constant 1.1, lr 0.0035, the
    constructor's defaults), 400 evaluations each: REINFORCE finds better cells.

    Measured: reward gaps 0.11, 0.09, 0.12, 0.11, 0.10 (random's mean reward is about 0.30).
    """
    gaps = []
    for seed in range(5):
        target = SPACE.to_tokens(SPACE.sample(np.random.default_rng(100 + seed)))
        score = planted_score(SPACE, target)
        reinforce = mean_reward(ReinforceStrategy(SPACE, seed), score, budget=400)
        gaps.append(reinforce - mean_reward(RandomStrategy(SPACE, seed), score, budget=400))
    assert np.mean(gaps) > 0.05 and all(g > 0 for g in gaps), gaps


def test_state_dict_round_trip_continues_identically() -> None:
    score = planted_score(SPACE, SPACE.to_tokens(SPACE.sample(np.random.default_rng(0))))
    first = ReinforceStrategy(SPACE, seed=1)
    mean_reward(first, score, budget=30)
    state = first.state_dict()
    second = ReinforceStrategy(SPACE, seed=99)
    second.load_state_dict(state)
    for _ in range(3):
        a, b = first.ask(5), second.ask(5)
        assert a == b
        first.tell(results_of(a, [score(p.genotype) for p in a]))
        second.tell(results_of(b, [score(p.genotype) for p in b]))
    assert all(torch.equal(x, y) for x, y in zip(first.controller.parameters(), second.controller.parameters()))


def test_reinforce_runs_with_the_standalone_evaluator(compose_cfg) -> None:
    results = run(compose_cfg("strategy=reinforce", "debug=fast", "mode=search", "search.num_architectures=4"))
    assert results["strategy"] == "reinforce" and results["search"]["num_evaluated"] == 4


# --- MLPNAS's accuracy predictor and lr decay (the NAS overview, Sec. 4.2 and 5.1) -----------------------


def all_zeros_score(g) -> float:
    """The planted score over the token sequence: the fraction of positions holding token 0."""
    return planted_score(SPACE, (0,) * len(SPACE.token_choices()))(g)


def old_format(state: dict) -> dict:
    """A state dict as written before the predictor and lr decay: no scheduler, no "initial_lr"."""
    optimizer = {**state["optimizer"], "param_groups": [dict(g) for g in state["optimizer"]["param_groups"]]}
    for group in optimizer["param_groups"]:
        group.pop("initial_lr", None)
    return {
        "controller": state["controller"],
        "optimizer": optimizer,
        "generator": state["generator"],
        "baseline": state["baseline"],
    }


def assert_uniform(values: torch.Tensor, bound: float) -> None:
    """`values` look like independent draws of U(-bound, bound): inside the bounds, reaching both ends, mean 0 and
    variance bound^2 / 3 within 6 standard errors (a true uniform sample misses these with p < 1e-8).

    The standard errors for n draws: of the mean sqrt(bound^2 / 3 / n); of the sample variance
    sqrt((E[w^4] - E[w^2]^2) / n) = sqrt((bound^4 / 5 - bound^4 / 9) / n). Reaching within 1 % of each end:
    P(all n miss it) = 0.995^n, below 1e-10 from n = 5,000 on."""
    w, n = values.detach().double().flatten(), values.numel()
    assert n >= 5000, "too few draws for these tolerances"
    assert -bound <= w.min() < -0.99 * bound and 0.99 * bound < w.max() <= bound
    assert abs(w.mean()) < 6 * math.sqrt(bound**2 / 3 / n)
    assert abs(w.var() - bound**2 / 3) < 6 * math.sqrt((bound**4 / 5 - bound**4 / 9) / n)


def assert_standard_normal(values: torch.Tensor) -> None:
    """`values` look like independent N(0, 1) draws: mean 0 within 6 / sqrt(n), variance 1 within 6 sqrt(2 / n)
    (the sample variance's standard error), and tails a uniform never has: P(|w| > 2.5) = 1.24 % for N(0, 1)
    (half to twice that is over 4 standard errors wide for n = 6,000), 0 for U(-0.1, 0.1)."""
    w, n = values.detach().double().flatten(), values.numel()
    assert abs(w.mean()) < 6 / math.sqrt(n)
    assert abs(w.var() - 1.0) < 6 * math.sqrt(2 / n)
    assert 0.5 * 0.0124 < float((w.abs() > 2.5).double().mean()) < 2 * 0.0124


def test_the_generic_controller_starts_from_the_documented_initialisers() -> None:
    """The generic controller's initial weights, against the distributions they are documented to come from
    (independent of the code: torch's documentation for its layers, the module for `start`): at hidden = 100
    every weight and bias of nn.LSTMCell is U(-1/sqrt(hidden), 1/sqrt(hidden)) and of nn.Linear (the token
    heads, the predictor) U(-1/sqrt(in_features), 1/sqrt(in_features)), i.e. all U(-0.1, 0.1), the interval
    ENAS (Pham et al.; melodyguan/enas `tf.random_uniform_initializer(-0.1, 0.1)`) initialises every controller
    variable from; `start` is drawn from U(-0.1, 0.1) explicitly; nn.Embedding rows are N(0, 1), not ENAS's
    uniform. A controller that re-initialised, skipped or rescaled a group would fail here."""
    controller = ReinforceStrategy(SPACE, seed=3, predictor=True).controller
    assert controller.lstm.hidden_size == 100 and all(head.in_features == 100 for head in controller.heads)
    uniform = [p for name, p in controller.named_parameters() if not name.startswith("embeddings.")]
    embeddings = [p for name, p in controller.named_parameters() if name.startswith("embeddings.")]
    # start, the LSTM's 2 weights and 2 biases, a weight and a bias per head, the predictor's weight and bias
    assert len(uniform) == 1 + 4 + 2 * len(SPACE.token_choices()) + 2
    assert_uniform(torch.cat([p.flatten() for p in uniform]), 0.1)
    for group in (controller.lstm.parameters(), controller.heads.parameters()):
        assert_uniform(torch.cat([p.flatten() for p in group]), 0.1)  # each group on its own, not only pooled
    # 100 draws each: their spread (sd 0.0577 +- 9 % for n = 100), not the pooled moments' tight tolerances
    for p in (controller.start, controller.predictor.weight):
        assert p.abs().max() <= 0.1 and 0.5 < float(p.detach().std()) / (0.1 / math.sqrt(3)) < 1.5
    assert controller.predictor.bias.abs().max() <= 0.1
    assert_standard_normal(torch.cat([p.flatten() for p in embeddings]))


@pytest.mark.usefixtures("one_torch_thread")
def test_predictor_off_is_the_old_controller_and_on_samples_the_same_first_proposals() -> None:
    """The MLPNAS predictor and lr decay are additions: with them off (the defaults) the controller is the plain
    one, weight for weight and draw for draw; with the predictor on, its head is created after every other
    module and reads no random numbers, so the seeded weights and proposals stay those of the plain controller.
    Which distributions those weights come from: test_the_generic_controller_starts_from_the_documented_initialisers."""
    plain, off = ReinforceStrategy(SPACE, seed=3), ReinforceStrategy(SPACE, seed=3, predictor=False, lr_decay=0.0)
    on = ReinforceStrategy(SPACE, seed=3, predictor=True)
    assert off.controller.predictor is None and "predictor.weight" not in off.state_dict()["controller"]
    shared = list(plain.controller.parameters())
    assert all(torch.equal(a, b) for a, b in zip(shared, off.controller.parameters(), strict=True))
    # the head is created last: every other weight is the one a controller without it starts from
    assert len(list(on.controller.parameters())) == len(shared) + 2
    assert all(torch.equal(a, b) for a, b in zip(shared, on.controller.parameters()))
    first = plain.ask(8)
    assert genotypes_of(first) == genotypes_of(off.ask(8)) == genotypes_of(on.ask(8))
    assert genotypes_of(plain.ask(8)) == genotypes_of(off.ask(8)) == genotypes_of(on.ask(8))  # no draws for the head
    assert first[0].info == {} and plain.pop_metrics() == {}
    with pytest.raises(RuntimeError, match="predictor=True"):
        plain.predict(genotypes_of(first))


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("seed", [0, 1])
def test_predictor_learns_a_planted_score(seed) -> None:
    """200 tells of 8 on the all-zeros planted score, then Kendall tau on 64 fresh uniform genotypes.

    Measured (predictor_weight 10): tau 0.45 (seed 0), 0.56 (seed 1); 0.45..0.80 over seeds 0-7,
    against -0.19..0.10 untrained. With the MLPNAS weight of 1 the same run gives 0.22..0.49 (REINFORCE
    then dominates the shared LSTM's Adam steps), too close to chance for a test.
    """
    kendalltau = pytest.importorskip("scipy.stats").kendalltau
    strategy = ReinforceStrategy(SPACE, seed=seed, predictor=True, predictor_weight=10.0)
    rng = np.random.default_rng(1000 + seed)
    fresh = [SPACE.sample(rng) for _ in range(64)]
    assert len({SPACE.key(g) for g in fresh}) > 60
    truth = [all_zeros_score(g) for g in fresh]
    untrained = kendalltau(strategy.predict(fresh), truth).statistic
    mse = []
    for _ in range(200):
        proposals = strategy.ask(8)
        strategy.tell(results_of(proposals, [all_zeros_score(p.genotype) for p in proposals]))
        mse.append(strategy.pop_metrics()["predictor_mse"])
    predicted = strategy.predict(fresh)
    assert all(0 < p < 1 for p in predicted)
    tau = kendalltau(predicted, truth).statistic
    assert tau > 0.3 and tau > untrained + 0.2, (tau, untrained)
    assert np.mean(mse[-20:]) < np.mean(mse[:20]) / 2, (mse[:20], mse[-20:])


@pytest.mark.usefixtures("one_torch_thread")
def test_predictor_gradient_reaches_the_shared_lstm() -> None:
    strategy = ReinforceStrategy(SPACE, seed=0, predictor=True)
    genotypes = genotypes_of(strategy.ask(8))
    controller = strategy.controller
    predicted = controller(8, tokens=torch.tensor([SPACE.to_tokens(g) for g in genotypes])).predicted
    assert predicted is not None and predicted.shape == (8,)
    torch.nn.functional.mse_loss(predicted, torch.full((8,), 0.9)).backward()
    for name in ("lstm.weight_hh", "lstm.weight_ih", "start", "predictor.weight", "embeddings.15.weight"):
        grad = controller.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name
    assert all(head.weight.grad is None for head in controller.heads)  # the token heads are not in its path
    # through tell: only the predictor term differs, and it moves the LSTM
    a = ReinforceStrategy(SPACE, seed=0, predictor=True, predictor_weight=0.0)
    b = ReinforceStrategy(SPACE, seed=0, predictor=True, predictor_weight=1.0)
    scores = [0.1 * i for i in range(8)]
    a.tell(told(genotypes, scores))
    b.tell(told(genotypes, scores))
    assert not torch.equal(a.controller.lstm.weight_hh, b.controller.lstm.weight_hh)
    assert torch.equal(a.controller.heads[0].weight, b.controller.heads[0].weight)


@pytest.mark.usefixtures("one_torch_thread")
def test_proposal_predictions_and_pop_metrics_with_the_predictor() -> None:
    strategy = ReinforceStrategy(SPACE, seed=0, predictor=True, lr_decay=0.1)
    assert strategy.pop_metrics() == {}  # nothing told yet
    proposals = strategy.ask(6)
    genotypes = genotypes_of(proposals)
    predicted = strategy.predict(genotypes)
    assert [p.info["reinforce"]["predicted"] for p in proposals] == pytest.approx(predicted, abs=1e-6)
    scores = [all_zeros_score(g) for g in genotypes]
    mse = float(np.mean((np.array(predicted) - np.array(scores)) ** 2))
    strategy.tell(results_of(proposals, scores))
    metrics = strategy.pop_metrics()
    assert metrics["predictor_mse"] == pytest.approx(mse, rel=1e-5)  # before the tell's update
    assert metrics["lr"] == pytest.approx(0.0035 / 1.1, abs=1e-12)
    assert strategy.pop_metrics() == {}  # popped
    later = strategy.ask(3)  # predicted by the controller as the tell left it
    assert [p.info["reinforce"]["predicted"] for p in later] == pytest.approx(
        strategy.predict(genotypes_of(later)), abs=1e-6
    )
    constant = ReinforceStrategy(SPACE, seed=0)
    constant.tell(told(genotypes, scores))
    assert constant.pop_metrics() == {}


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("updates_per_tell", [1, 3])
def test_lr_decays_per_optimizer_step_as_keras_does(updates_per_tell) -> None:
    lr, decay = 0.01, 0.1
    strategy = ReinforceStrategy(SPACE, seed=0, lr=lr, lr_decay=decay, updates_per_tell=updates_per_tell)
    constant = ReinforceStrategy(SPACE, seed=0, lr=lr, updates_per_tell=updates_per_tell)
    for k in range(1, 6):
        genotypes = genotypes_of(strategy.ask(4))  # both are told the same architectures
        scores = [all_zeros_score(g) for g in genotypes]
        strategy.tell(told(genotypes, scores))
        constant.tell(told(genotypes, scores))
        assert abs(strategy.optimizer.param_groups[0]["lr"] - lr / (1 + decay * k * updates_per_tell)) < 1e-9
        assert constant.optimizer.param_groups[0]["lr"] == lr  # lr_decay=0: exactly constant
        if k == 1 and updates_per_tell == 1:  # the first step runs at the undecayed lr
            assert all(
                torch.equal(a, b)
                for a, b in zip(strategy.controller.parameters(), constant.controller.parameters(), strict=True)
            )
    assert not all(
        torch.equal(a, b) for a, b in zip(strategy.controller.parameters(), constant.controller.parameters())
    )
    with pytest.raises(ValueError, match="lr_decay"):
        ReinforceStrategy(SPACE, lr_decay=-0.1)


@pytest.mark.usefixtures("one_torch_thread")
def test_state_dict_round_trip_with_predictor_and_lr_decay(tmp_path) -> None:
    settings = dict(predictor=True, lr_decay=0.1, lr=0.01)
    first = ReinforceStrategy(SPACE, seed=1, **settings)
    mean_reward(first, all_zeros_score, budget=30)
    torch.save(first.state_dict(), tmp_path / "state.pt")  # as the search loop checkpoints it
    second = ReinforceStrategy(SPACE, seed=99, **settings)
    second.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    assert second.optimizer.param_groups[0]["lr"] == first.optimizer.param_groups[0]["lr"] < 0.01
    assert first.pop_metrics()["predictor_mse"] > 0  # what was gathered before the checkpoint
    rng = np.random.default_rng(5)
    probe = [SPACE.sample(rng) for _ in range(16)]
    assert first.predict(probe) == second.predict(probe)
    for _ in range(3):
        a, b = first.ask(5), second.ask(5)
        assert genotypes_of(a) == genotypes_of(b)
        assert [p.info for p in a] == [p.info for p in b]
        first.tell(results_of(a, [all_zeros_score(p.genotype) for p in a]))
        second.tell(results_of(b, [all_zeros_score(p.genotype) for p in b]))
        assert first.predict(probe) == second.predict(probe)
        assert first.optimizer.param_groups[0]["lr"] == second.optimizer.param_groups[0]["lr"]
    assert first.pop_metrics() == second.pop_metrics()
    assert all(torch.equal(x, y) for x, y in zip(first.controller.parameters(), second.controller.parameters()))


@pytest.mark.usefixtures("one_torch_thread")
def test_an_old_format_state_dict_still_loads() -> None:
    first = ReinforceStrategy(SPACE, seed=1)
    mean_reward(first, all_zeros_score, budget=30)
    old = old_format(first.state_dict())
    assert set(old) == {"controller", "optimizer", "generator", "baseline"}
    same = ReinforceStrategy(SPACE, seed=5)  # the settings it was written with
    same.load_state_dict(copy.deepcopy(old))
    # the old settings with the new options on: the head starts fresh, the rest continues
    upgraded = ReinforceStrategy(SPACE, seed=5, predictor=True, lr_decay=0.1)
    upgraded.load_state_dict(copy.deepcopy(old))
    shared = list(first.controller.parameters())
    assert all(torch.equal(a, b) for a, b in zip(shared, upgraded.controller.parameters()))
    for _ in range(2):
        a = genotypes_of(first.ask(5))
        assert genotypes_of(same.ask(5)) == a and genotypes_of(upgraded.ask(5)) == a
        scores = [all_zeros_score(g) for g in a]
        for strategy in (first, same, upgraded):
            strategy.tell(told(a, scores))
    assert all(torch.equal(x, y) for x, y in zip(first.controller.parameters(), same.controller.parameters()))
    assert same.optimizer.param_groups[0]["lr"] == first.optimizer.param_groups[0]["lr"] == 0.0035
    assert upgraded.optimizer.param_groups[0]["lr"] == pytest.approx(0.0035 / 1.2, abs=1e-12)  # decay from the load
    assert all(0 < p < 1 for p in upgraded.predict(a))
    assert "predictor_mse" in upgraded.pop_metrics()
    assert "predictor.weight" in upgraded.state_dict()["controller"] and "scheduler" in upgraded.state_dict()


# --- the ENAS controllers' settings next to the generic controller (test_controller.py has the rest) ---------


def test_constructor_defaults_are_the_former_generic_controller() -> None:
    strategy = ReinforceStrategy(SPACE)
    assert isinstance(strategy.controller, Controller) and strategy.controller_kind == "generic"
    assert type(strategy.optimizer) is torch.optim.Adam
    assert strategy.optimizer.defaults["betas"] == (0.9, 0.999) and strategy.optimizer.defaults["eps"] == 1e-8
    assert strategy.baseline is None and strategy.num_aggregate is None


def test_strategy_reinforce_config_picks_the_controller_by_space(compose_cfg) -> None:
    from hydra.utils import instantiate

    for space, kind in (("micro_small", "micro"), ("macro", "macro"), ("rnn_small", "rnn"), ("mlp", "generic")):
        cfg = compose_cfg("strategy=reinforce", f"space={space}")
        strategy = instantiate(cfg.strategy, space=instantiate(cfg.space))
        assert strategy.controller_kind == kind, space
        # the ENAS code's optimizer and baseline on every space (src/utils.py get_train_ops, build_trainer)
        assert strategy.optimizer.defaults["betas"] == (0.0, 0.999) and strategy.optimizer.defaults["eps"] == 1e-3
        assert strategy.baseline == 0.0 and strategy.num_aggregate == 1
    generic = compose_cfg("strategy=reinforce", "space=micro_small", "strategy.controller=generic")
    assert isinstance(instantiate(generic.strategy, space=instantiate(generic.space)).controller, Controller)


@pytest.mark.usefixtures("one_torch_thread")
def test_mlpnas_preset_is_the_controller_it_was(compose_cfg) -> None:
    """experiment=mlpnas pins what strategy=reinforce's defaults no longer give it: the same strategy as the
    one built with MLPNAS's explicit settings before the ENAS controllers, step for step."""
    from hydra.utils import instantiate

    cfg = compose_cfg("experiment=mlpnas")
    space = instantiate(cfg.space)
    preset = instantiate(cfg.strategy, space=space)
    before = ReinforceStrategy(space, seed=0, hidden=128, lr=0.01, lr_decay=0.1, predictor=True)
    assert preset.controller_kind == "generic" and type(preset.optimizer) is torch.optim.Adam
    assert preset.optimizer.defaults == before.optimizer.defaults and preset.baseline is None
    for k in range(3):
        proposals = preset.ask(10)
        assert proposals == before.ask(10)
        scores = [0.05 * i + 0.1 * k for i in range(10)]
        preset.tell(results_of(proposals, scores))
        before.tell(results_of(proposals, scores))
        assert preset.pop_metrics() == before.pop_metrics()
    assert all(torch.equal(a, b) for a, b in zip(preset.controller.parameters(), before.controller.parameters()))


@pytest.mark.usefixtures("one_torch_thread")
def test_generic_controller_with_aggregation_baseline_from_zero_and_predictor() -> None:
    """num_aggregate=4 on the generic controller: no step for 3 samples, one on the 4th; the predictor's
    MSE is reported per tell; the baseline starts at 0 and moves per sample."""
    strategy = ReinforceStrategy(SPACE, seed=0, predictor=True, baseline_init=0.0, num_aggregate=4, entropy_weight=0)
    initial = [p.detach().clone() for p in strategy.controller.parameters()]
    proposals = strategy.ask(3)
    scores = [0.2, 0.4, 0.6]
    predicted = strategy.predict(genotypes_of(proposals))
    strategy.tell(results_of(proposals, scores))
    assert all(torch.equal(a, b) for a, b in zip(initial, strategy.controller.parameters()))
    assert strategy.pop_metrics()["predictor_mse"] == pytest.approx(
        float(np.mean((np.array(predicted) - np.array(scores)) ** 2)), rel=1e-5
    )
    baseline = 0.0
    for score in scores:
        baseline += 0.01 * (score - baseline)
    assert strategy.baseline == pytest.approx(baseline, abs=1e-7)
    strategy.tell(results_of(strategy.ask(1), [1.0]))
    assert not any(torch.equal(a, b) for a, b in zip(initial, strategy.controller.parameters()))


def test_optimizer_state_follows_its_parameters_device() -> None:
    """A resumed weight-sharing search loads the controller's optimizer state on the CPU before Lightning
    moves the controller to the accelerator: the state must follow (checked with the meta device, no GPU)."""
    from naslab.strategies.reinforce.strategy import state_to_parameter_devices

    p = torch.nn.Parameter(torch.empty(3, device="meta"))
    optimizer = torch.optim.Adam([p], lr=0.1)
    optimizer.state[p] = {"step": torch.tensor(1.0), "exp_avg": torch.zeros(3), "exp_avg_sq": torch.zeros(3)}
    state_to_parameter_devices(optimizer)
    assert optimizer.state[p]["exp_avg"].device.type == "meta" and optimizer.state[p]["exp_avg_sq"].is_meta
    assert optimizer.state[p]["step"].device.type == "cpu"  # torch keeps Adam's step count on the CPU
