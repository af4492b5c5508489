"""strategy=darts: the mixed-op supernet, the bilevel module, the search in the pipeline and its resume."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

import naslab.strategies.darts.module as darts_module
from naslab.errors import ConfigError, CorruptStateError, TrainingDivergedError, UserError
from naslab.loggers import run_group
from naslab.ops.cnn import build_op
from naslab.ops.mixed import MixedOp, MixedSupernet
from naslab.pipeline import run
from naslab.search.gradient import CHECKPOINT, DerivationRecorder, alpha_entropy
from naslab.spaces.base import GenotypeError, Task
from naslab.spaces.micro.space import MicroSpace
from naslab.spaces.rnn.space import RNNSpace
from naslab.stages.build import run_search_kind
from naslab.strategies.darts.module import DartsSearchModule
from naslab.strategies.darts.strategy import DartsStrategy
from naslab.train.objectives import TextObjective
from tests.conftest import compose_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")
DARTS_SPACE = MicroSpace(4, "darts", "all")
CIFAR = Task(10, (3, 32, 32))
FAST = ["strategy=darts", "space=micro_darts", "debug=fast", "mode=search"]


def read_archive(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "archive.jsonl").read_text().splitlines()]


def test_search_network_has_the_papers_size() -> None:
    """DARTS' CIFAR-10 search model (C=16, 8 cells, 4 nodes, 8 ops) logs 'param size = 1.930618MB'."""
    net = DARTS_SPACE.build_mixed_supernet(CIFAR)
    assert isinstance(net, MixedSupernet)
    assert net.alpha_shapes == {"normal": (14, 8), "reduce": (14, 8)}
    assert sum(p.numel() for p in net.parameters()) == 1_930_618
    assert len(net.cells) == 8 and [i for i, c in enumerate(net.cells) if c.reduction] == [2, 5]
    assert net.edge_labels["normal"][0] == "c_{k-2} -> node 0" and net.edge_labels["normal"][-1] == "node 2 -> node 3"


def test_mixed_op_is_the_weighted_sum_and_one_hot_selects_an_op() -> None:
    torch.manual_seed(0)
    ops = [build_op(name, 4, 1, affine=False) for name in ("identity", "max_pool_3x3", "sep_conv_3x3")]
    mixed = MixedOp(ops).eval()
    x = torch.randn(2, 4, 6, 6)
    for k, op in enumerate(ops):
        torch.testing.assert_close(mixed(x, torch.eye(3)[k]), op.eval()(x))
    w = torch.tensor([0.2, 0.3, 0.5])
    torch.testing.assert_close(mixed(x, w), sum(wi * op(x) for wi, op in zip(w, ops)))
    with pytest.raises(ValueError, match="3 ops got weights of shape"):
        mixed(x, torch.ones(4))


def test_gradients_reach_every_alpha_and_the_output_has_the_task_shape() -> None:
    torch.manual_seed(0)
    space = MicroSpace(2, ["none", "identity", "avg_pool_3x3", "sep_conv_3x3"], "all")
    net = space.build_mixed_supernet(Task(5, (1, 8, 8)), channels=4, cells_per_stage=1)
    alphas = {k: torch.zeros(s, requires_grad=True) for k, s in net.alpha_shapes.items()}
    out = net(torch.randn(4, 1, 8, 8), {k: torch.softmax(a, -1) for k, a in alphas.items()})
    assert out.shape == (4, 5)
    torch.nn.functional.cross_entropy(out, torch.tensor([0, 1, 2, 3])).backward()
    for a in alphas.values():
        assert a.grad is not None and torch.isfinite(a.grad).all() and (a.grad != 0).all()
    with pytest.raises(ValueError, match="expected \\(5, 4\\)"):
        net(torch.randn(1, 1, 8, 8), {"normal": torch.ones(4, 4), "reduce": torch.ones(5, 4)})


def test_space_derive_uses_named_alpha_matrices() -> None:
    normal = torch.full((14, 8), -5.0)
    reduce = torch.full((14, 8), -5.0)
    normal[:, 0] = 10.0  # `none` strongest everywhere: never chosen
    normal[0, 4] = normal[1, 5] = 3.0  # node 0: sep_conv_3x3(0) + sep_conv_5x5(1)
    genotype = DARTS_SPACE.derive({"normal": normal, "reduce": reduce})
    assert [(b.input, b.op) for b in genotype.normal.nodes[0].branches] == [(0, "sep_conv_3x3"), (1, "sep_conv_5x5")]
    assert all(b.op != "none" for cell in (genotype.normal, genotype.reduce) for n in cell.nodes for b in n.branches)
    with pytest.raises(GenotypeError, match="missing \\['reduce'\\]"):
        DARTS_SPACE.derive({"normal": normal})


def test_alpha_entropy_is_log_ops_when_uniform_and_zero_when_decided() -> None:
    assert alpha_entropy(torch.zeros(3, 8)) == pytest.approx(torch.log(torch.tensor(8.0)).item())
    assert alpha_entropy(torch.tensor([[100.0, 0.0, 0.0]])) == pytest.approx(0.0, abs=1e-6)


def tiny_module(order: int) -> DartsSearchModule:
    torch.manual_seed(0)
    net = MicroSpace(2, "darts", "all").build_mixed_supernet(Task(3, (1, 8, 8)), channels=4, cells_per_stage=1)
    return DartsSearchModule(net, order=order, epochs=1)


def test_module_rejects_an_unknown_order_and_registers_alphas_as_parameters() -> None:
    with pytest.raises(ValueError, match="order must be 1"):
        DartsSearchModule(tiny_module(1).supernet, order=3)
    module = tiny_module(1)
    names = {name for name, _ in module.named_parameters()}
    assert {"alphas.normal", "alphas.reduce"} <= names
    assert set(module.state_dict()) >= {"alphas.normal", "alphas.reduce"}  # hence checkpointed and resumed
    assert float(module.alphas["normal"].detach().abs().max()) < 0.01  # 1e-3 * N(0, 1)


@pytest.mark.slow
@pytest.mark.parametrize("order", [1, 2])
def test_search_runs_both_orders_and_archives_each_epochs_derivation(compose_cfg, tmp_path, order) -> None:
    cfg = compose_cfg(*FAST, f"strategy.order={order}")
    assert (
        run_search_kind(cfg) == "gradient" and run_group(cfg, with_evaluator=False) == "digits/MicroSpace/DartsStrategy"
    )  # no "+<evaluator>"
    results = run(cfg)
    run_dir = tmp_path / "run"
    assert results["strategy"] == "darts" and results["evaluator"] is None
    records = read_archive(run_dir)
    assert [r["extra"]["darts"]["epoch"] for r in records] == [0, 1]
    assert results["search"]["num_evaluated"] == 2
    assert results["search"]["best_score"] == max(r["score"] for r in records)
    genotype = json.loads((run_dir / "genotype.json").read_text())
    assert genotype["genotype"] == records[-1]["genotype"]  # select=last: the final epoch's derivation
    assert "none" not in results["genotype"]
    same = records[0]["key"].split(":", 1)[1] == records[1]["key"].split(":", 1)[1]
    assert records[1]["extra"]["darts"]["genotype_changed"] == float(not same)
    last = records[-1]["extra"]["darts"]
    alphas = {k: torch.tensor(v) for k, v in last["alphas"].items()}
    assert DARTS_SPACE.key(DARTS_SPACE.derive(alphas)) == records[-1]["key"].split(":", 1)[1]
    # cosine from 0.025 to 0.001 over 2 epochs, stepped once before epoch 2: 0.001 + 0.024 * (1 + cos(pi / 2)) / 2
    assert records[0]["extra"]["darts"]["lr"] == pytest.approx(0.025)
    assert last["lr"] == pytest.approx(0.013) and last["train_loss"] > 0
    for epoch in (0, 1):
        assert (run_dir / "darts" / f"alphas_epoch{epoch:03d}.png").read_bytes()[:4] == b"\x89PNG"
    checkpoint = torch.load(run_dir / CHECKPOINT, weights_only=False)
    torch.testing.assert_close(checkpoint["state_dict"]["alphas.normal"], alphas["normal"], atol=1e-6, rtol=0)


class Crash(RuntimeError):
    pass


KILLED_SEARCH = [*FAST, "strategy.order=2", "strategy.epochs=3"]


@pytest.fixture(scope="module")
def uninterrupted_search(tmp_path_factory) -> tuple[dict, Path]:
    """(results, run dir) of the search the killed ones are compared with: run once for both kill points."""
    run_dir = tmp_path_factory.mktemp("darts") / "whole"
    return run(compose_config(*KILLED_SEARCH, run_dir=run_dir)), run_dir


@pytest.mark.slow
@pytest.mark.parametrize("crash_at", ["after_checkpoint", "before_checkpoint"])
def test_a_killed_search_resumes_to_the_uninterrupted_result(
    compose_cfg, tmp_path, monkeypatch, crash_at, uninterrupted_search
) -> None:
    """Killed after epoch 0's checkpoint, or after epoch 1 was archived but before its checkpoint
    (epoch 1 is then trained again from epoch 0's checkpoint and not archived twice)."""
    overrides = KILLED_SEARCH
    whole, whole_dir = uninterrupted_search
    if crash_at == "after_checkpoint":
        original, name, crash_epoch = DerivationRecorder.on_train_epoch_end, "on_train_epoch_end", 0
    else:
        original, name, crash_epoch = DerivationRecorder._record, "_record", 1

    def crash(self, *args) -> None:
        original(self, *args)
        if len(self.archive) == crash_epoch + 1:
            raise Crash("killed")

    monkeypatch.setattr(DerivationRecorder, name, crash)
    with pytest.raises(Crash):
        run(compose_cfg(*overrides, run_dir=tmp_path / "killed"))
    before = read_archive(tmp_path / "killed")
    assert [r["extra"]["darts"]["epoch"] for r in before] == list(range(crash_epoch + 1))
    monkeypatch.setattr(DerivationRecorder, name, original)
    resumed = run(compose_cfg(*overrides, "resume=true", run_dir=tmp_path / "killed"))
    after, reference = read_archive(tmp_path / "killed"), read_archive(whole_dir)
    assert after[: len(before)] == before  # nothing lost or rewritten
    assert [r["extra"]["darts"]["epoch"] for r in after] == [0, 1, 2]
    for got, want in zip(after, reference):
        assert got["key"] == want["key"] and got["score"] == want["score"]
        assert got["extra"]["darts"]["alphas"] == want["extra"]["darts"]["alphas"]
    assert resumed["genotype"] == whole["genotype"]
    state = torch.load(tmp_path / "killed" / CHECKPOINT, weights_only=False)["state_dict"]
    reference_state = torch.load(whole_dir / CHECKPOINT, weights_only=False)["state_dict"]
    for name in ("alphas.normal", "alphas.reduce"):
        torch.testing.assert_close(state[name], reference_state[name], atol=0, rtol=0)


def test_a_space_without_a_mixed_supernet_is_refused_in_one_line(compose_cfg) -> None:
    cfg = compose_cfg("strategy=darts", "space=macro", "debug=fast", "mode=search")
    with pytest.raises(ConfigError, match="strategy: space 'macro' has no mixed-op supernet"):
        run(cfg)  # the strategy checks the space's Relaxable capability when it is built


def test_a_space_that_concatenates_only_unused_nodes_is_refused() -> None:
    with pytest.raises(ValueError, match="use space=micro_darts or space.concat=all"):
        MicroSpace(4, "darts", "unused").build_mixed_supernet(CIFAR)


def test_strategy_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="order must be 1 or 2"):
        DartsStrategy(DARTS_SPACE, order=0)
    with pytest.raises(ValueError, match="select must be"):
        DartsStrategy(DARTS_SPACE, select="first")
    with pytest.raises(ValueError, match="virtual_step must be 'code'"):
        DartsStrategy(DARTS_SPACE, virtual_step="unrolled")


def test_presets_carry_the_authors_settings_and_debug_shrinks_them(compose_cfg) -> None:
    v1, v2 = compose_cfg("experiment=darts_v1"), compose_cfg("experiment=darts_v2")
    assert (v1.strategy.order, v2.strategy.order) == (1, 2)
    assert (v2.dataset.name, v2.space.num_nodes, v2.space.op_set, v2.space.concat) == ("cifar10", 4, "darts", "all")
    ptb = compose_cfg("experiment=darts_ptb")
    assert (ptb.dataset.name, ptb.space.num_nodes, ptb.space.output) == ("ptb", 8, "all")
    fast = compose_cfg("experiment=darts_v2", "debug=fast").strategy
    assert (fast.order, fast.epochs, fast.channels, fast.train_batches) == (2, 2, 4, 2)


# -- the second-order step through the module, against autograd through the virtual step ----------
# The references below differentiate L_val(w'(alpha), alpha) with autograd through the authors'
# virtual step (quark0/darts cnn/architect.py, rnn/architect.py) on a float64 copy of the supernet:
# they never call the module's or the architect's formula. fd_r=1e-6: on a 4-channel supernet a
# finite-difference step of norm 0.01 is far from linear (test_darts_architect.py checks r=0.01 on a
# smooth model); float64 keeps the smaller step exact to ~1e-8.
FD_R = 1e-6


def without_trainer(module: DartsSearchModule) -> DartsSearchModule:
    """The module's own optimizers reached without a Trainer (what `training_step` sees inside one)."""
    (w_optimizer, alpha_optimizer), (scheduler,) = module.configure_optimizers()
    module.optimizers = lambda: [w_optimizer, alpha_optimizer]  # type: ignore[method-assign]
    module.lr_schedulers = lambda: scheduler  # type: ignore[method-assign]
    module.manual_backward = lambda loss: loss.backward()  # type: ignore[method-assign]
    module.log = lambda *args, **kwargs: None  # type: ignore[method-assign]
    return module.double().train()


def image_module(order: int = 2, **options) -> DartsSearchModule:
    torch.manual_seed(0)
    net = MicroSpace(2, "darts", "all").build_mixed_supernet(Task(3, (1, 8, 8)), channels=4, cells_per_stage=1)
    return without_trainer(DartsSearchModule(net, order=order, epochs=1, fd_r=FD_R, **options))


def image_batches(seed: int = 1) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return {
        s: (torch.randn(6, 1, 8, 8, generator=g, dtype=torch.float64), torch.randint(0, 3, (6,), generator=g))
        for s in ("train", "valid")
    }


VOCAB = 11


def text_module(order: int = 2, **options) -> DartsSearchModule:
    """A 2-node DARTS recurrent cell, emb = hidden = 6, no dropout; rnn/train_search.py's optimisers."""
    torch.manual_seed(0)
    net = RNNSpace(2, output="all").build_mixed_supernet(Task(VOCAB, (), stem="text", kind="text"), emb_size=6)
    settings = {"w_lr": 20.0, "w_lr_min": 20.0, "momentum": 0.0, "weight_decay": 0.0, "grad_clip": 0.25, "fd_r": FD_R}
    settings.update(alpha_lr=3e-3, alpha_betas=(0.9, 0.999), objective=TextObjective(), **options)
    return without_trainer(DartsSearchModule(net, order=order, epochs=1, **settings))


def text_batches(length: int, seed: int = 1) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return {
        "train": (torch.randint(0, VOCAB, (length, 4), generator=g), torch.randint(0, VOCAB, (length, 4), generator=g)),
        "valid": (torch.randint(0, VOCAB, (7, 4), generator=g), torch.randint(0, VOCAB, (7, 4), generator=g)),
    }


def reference_alpha_gradient(module, batches, xi, clip=None, weight_decay=0.0, momentum_term=None):
    """(grad_alpha L_val(w'(alpha), alpha) per alpha name, clip factor) by autograd through
    w'(alpha) = w - xi * (c * g + weight_decay * w + momentum_term); c and the clipped vector as in
    rnn/architect.py. Language models start from a zero hidden state (a fresh objective)."""
    net = module.supernet
    w0 = {n: p.detach().clone().requires_grad_(True) for n, p in net.named_parameters()}
    alphas = {k: a.detach().clone().requires_grad_(True) for k, a in module.alphas.items()}

    def loss(params, batch):
        x, y = batch
        arch = {k: torch.softmax(a, -1) for k, a in alphas.items()}
        if module.objective.kind == "text":
            logits = functional_call(net, params, (x, arch), {"hidden": None}).logits
            return F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
        return F.cross_entropy(functional_call(net, params, (x, arch)), y)

    grads = torch.autograd.grad(loss(w0, batches["train"]), list(w0.values()), create_graph=True, allow_unused=True)
    g = {n: torch.zeros_like(w) if d is None else d for (n, w), d in zip(w0.items(), grads)}
    norm = float(torch.sqrt(sum((d.detach() ** 2).sum() for d in g.values())))
    c = 1.0 if clip is None else min(1.0, clip / (norm + 1e-6))
    unrolled = {}
    for n, w in w0.items():
        step = c * g[n] + weight_decay * w.detach()
        if momentum_term is not None and momentum_term.get(n) is not None:
            step = step + momentum_term[n]
        unrolled[n] = w.detach() - xi * step  # depends on alpha through g
    leaves = {n: u.detach().requires_grad_(True) for n, u in unrolled.items()}
    valid = torch.autograd.grad(loss(leaves, batches["valid"]), [*alphas.values(), *leaves.values()], allow_unused=True)
    direct = dict(zip(alphas, valid[: len(alphas)]))
    vector = [torch.zeros_like(w) if v is None else v for w, v in zip(leaves.values(), valid[len(alphas) :])]
    if clip is not None:
        scale = min(1.0, clip / (float(torch.sqrt(sum((v**2).sum() for v in vector))) + 1e-6))
        vector = [v * scale for v in vector]
    implicit = torch.autograd.grad(list(unrolled.values()), list(alphas.values()), grad_outputs=vector)
    return {k: direct[k] + i for k, i in zip(alphas, implicit)}, c


def alpha_grads(module: DartsSearchModule) -> dict[str, torch.Tensor]:
    """What the last alpha step handed to Adam (`training_step` sets alpha.grad, the weight step leaves it)."""
    return {k: a.grad.detach().clone() for k, a in module.alphas.items()}


def assert_close_dicts(got, expected, rtol=1e-5, atol=1e-9) -> None:
    for k in expected:
        torch.testing.assert_close(got[k], expected[k], rtol=rtol, atol=atol)


def sgd_momentum_terms(module: DartsSearchModule) -> dict[str, torch.Tensor]:
    """momentum * the SGD momentum buffer per weight name, read straight from the optimizer state."""
    sgd = module.optimizers()[0]
    momentum = sgd.param_groups[0]["momentum"]
    return {
        n: momentum * sgd.state[p]["momentum_buffer"].detach().clone()
        for n, p in module.supernet.named_parameters()
        if "momentum_buffer" in sgd.state.get(p, {})
    }


def test_order_two_differentiates_through_the_virtual_step_at_the_weights_learning_rate(monkeypatch) -> None:
    """xi=None is the weights' current learning rate (cnn/train_search.py passes `lr` as eta), and the
    order-2 alpha gradient is the unrolled one, not order 1's."""
    seen: list[float] = []
    real = darts_module.second_order_alpha_gradients

    def spy(*args, **kwargs):
        seen.append(kwargs["xi"])
        return real(*args, **kwargs)

    monkeypatch.setattr(darts_module, "second_order_alpha_gradients", spy)
    batches = image_batches()
    first = image_module(1, w_lr=0.4)
    first.training_step(batches, 0)
    second = image_module(2, w_lr=0.4)
    expected, _ = reference_alpha_gradient(second, batches, xi=0.4, weight_decay=3e-4)  # no momentum yet
    second.training_step(batches, 0)
    assert seen == [pytest.approx(0.4, rel=1e-12)]
    assert_close_dicts(alpha_grads(second), expected)
    for k in expected:
        assert not torch.allclose(alpha_grads(first)[k], alpha_grads(second)[k], rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("virtual_step", ["code", "paper"])
def test_convolutional_virtual_step_code_folds_momentum_and_weight_decay_paper_does_not(virtual_step) -> None:
    """code: w' = w - lr * (momentum * buf + g + weight_decay * w) (quark0/darts cnn/architect.py);
    paper: w' = w - lr * g (Eqns. 6-7). A first step fills the SGD momentum buffer."""
    batches = image_batches()
    module = image_module(2, w_lr=0.3, weight_decay=0.05, virtual_step=virtual_step)
    module.training_step(image_batches(7), 0)
    momentum_terms = sgd_momentum_terms(module)
    assert momentum_terms and all(float(m.abs().max()) > 0 for m in momentum_terms.values())
    lr = module.current_lr()
    code, _ = reference_alpha_gradient(module, batches, xi=lr, weight_decay=0.05, momentum_term=momentum_terms)
    paper, _ = reference_alpha_gradient(module, batches, xi=lr)
    for k in code:
        assert not torch.allclose(code[k], paper[k], rtol=1e-3, atol=1e-6)  # the two steps really differ
    module.training_step(batches, 1)
    assert_close_dicts(alpha_grads(module), code if virtual_step == "code" else paper)


@pytest.mark.parametrize("weight_decay, window", [(0.0, 9), (0.01, 17)])
def test_recurrent_virtual_step_carries_the_clip_factor_and_the_window_scaled_lr(weight_decay, window) -> None:
    """rnn/architect.py through the module's text branch: w' = w - eta * (c * g + wdecay * w), the
    implicit term scaled by eta * c and grad_w' L_val clipped; eta = lr * seq_len / bptt
    (rnn/train_search.py). The first case isolates the clip factor (no decay, seq_len = bptt)."""
    bptt = 9
    module = text_module(weight_decay=weight_decay, bptt=bptt)
    batches = text_batches(window)
    eta = 20.0 * window / bptt
    expected, c = reference_alpha_gradient(module, batches, xi=eta, clip=0.25, weight_decay=weight_decay)
    assert c < 0.9  # PTB's clip is active, as it nearly always is there
    module.training_step(batches, 0)
    assert_close_dicts(alpha_grads(module), expected, rtol=1e-4, atol=1e-8)
    assert module.current_lr() == 20.0  # restored after the step


def test_language_model_steps_scale_the_learning_rate_by_window_length(monkeypatch) -> None:
    """rnn/train_search.py: lr2 * seq_len / bptt for architect.step and the weight step, restored after.
    `paper` keeps the scaled weight step but takes xi = the scheduled lr (Eqns. 6-7 know no windows)."""
    real = darts_module.second_order_alpha_gradients
    for virtual_step, expected_xi in (("code", 20.0 * 17 / 35), ("paper", 20.0)):
        module = text_module(bptt=35, virtual_step=virtual_step)
        xis: list[float] = []
        monkeypatch.setattr(
            darts_module, "second_order_alpha_gradients", lambda *a, **k: xis.append(k["xi"]) or real(*a, **k)
        )
        sgd = module.optimizers()[0]
        step_lrs: list[float] = []
        real_step = sgd.step
        monkeypatch.setattr(
            sgd, "step", lambda *a, **k: step_lrs.append(sgd.param_groups[0]["lr"]) or real_step(*a, **k)
        )
        before = [p.detach().clone() for p in module.supernet.parameters()]
        module.training_step(text_batches(17), 0)
        assert xis == [pytest.approx(expected_xi, rel=1e-12)]
        assert step_lrs == [pytest.approx(20.0 * 17 / 35, rel=1e-12)]
        assert module.current_lr() == 20.0
        assert any(not torch.equal(b, p) for b, p in zip(before, module.supernet.parameters()))
    unscaled = text_module()  # no bptt given: no scaling
    assert unscaled.window_scale(text_batches(17)["train"]) == 1.0
    assert image_module(bptt=35).window_scale(image_batches()["train"]) == 1.0  # images never scale


def test_module_rejects_an_unknown_virtual_step() -> None:
    with pytest.raises(ValueError, match="virtual_step must be 'code' or 'paper'"):
        DartsSearchModule(tiny_module(1).supernet, virtual_step="exact")


def test_ptb_search_scales_each_steps_learning_rate_by_the_datamodules_bptt(compose_cfg, tmp_path, monkeypatch) -> None:
    """experiment=darts_ptb end to end: the weight step of every window runs at 20 * len / bptt, with
    bptt taken from the datamodule (35), windows are 35 or 17 long as in rnn/train_search.py, and the
    scheduled 20 is back after each step."""
    from tests.fake_data import write_text_corpus

    write_text_corpus(tmp_path / "data", "ptb")
    seen: list[tuple[int, float, int | None]] = []
    real = DartsSearchModule._weight_step

    def spy(self, train):
        seen.append((train[0].size(0), self.current_lr(), self.bptt))
        return real(self, train)

    monkeypatch.setattr(DartsSearchModule, "_weight_step", spy)
    cfg = compose_cfg("experiment=darts_ptb", "debug=fast", "mode=search", f"paths.data_dir={tmp_path / 'data'}")
    results = run(cfg)
    assert results["strategy"] == "darts" and len(seen) == 4  # debug=fast: 2 epochs of 2 steps
    for length, lr, bptt in seen:
        assert bptt == 35 and lr == pytest.approx(20.0 * length / 35, rel=1e-12)
        assert length in (35, 17)  # strategy.window_std=0: the search's windows, no N(35, 5) draw
    assert read_archive(tmp_path / "run")[-1]["extra"]["darts"]["lr"] == 20.0


# -- faults: a non-finite step is skipped and counted; too many in a row stop the search in one line ---------
def poisoned(batches: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The batches with every image NaN: each forward pass of the step gives a NaN loss."""
    return {s: (torch.full_like(x, float("nan")), y) for s, (x, y) in batches.items()}


def snapshot(module: DartsSearchModule) -> dict[str, torch.Tensor]:
    """Every weight, alpha and buffer (BatchNorm running statistics), and the SGD momentum buffers."""
    state = {k: v.detach().clone() for k, v in module.state_dict().items()}
    state.update({f"momentum.{k}": v for k, v in sgd_momentum_terms(module).items()})
    return state


@pytest.mark.parametrize("order", [1, 2])
def test_a_non_finite_step_is_skipped_counted_and_leaves_the_module_as_it_was(order, caplog) -> None:
    module = image_module(order)
    module.training_step(image_batches(1), 0)  # a clean step first: momentum buffers and moved statistics
    before = snapshot(module)
    with caplog.at_level("WARNING", logger="naslab.strategies.darts.module"):
        module.training_step(poisoned(image_batches(2)), 1)
    after = snapshot(module)
    assert after.keys() == before.keys()
    for name in before:  # no optimizer step, and the running statistics the NaN passes moved are put back
        torch.testing.assert_close(after[name], before[name], rtol=0, atol=0, equal_nan=False, msg=name)
    assert module.epoch_stats["skipped_steps"] == 2 and module.nonfinite_in_a_row == 2  # the alpha and the weight step
    assert "DARTS architecture step skipped at epoch 0 (1 in a row of at most 10)" in caplog.text
    assert "DARTS weight step skipped at epoch 0 (2 in a row of at most 10)" in caplog.text
    module.training_step(image_batches(3), 2)  # a finite step ends the run of skipped ones and trains again
    assert module.nonfinite_in_a_row == 0 and module.epoch_stats["skipped_steps"] == 2
    assert not torch.equal(module.alphas["normal"], before["alphas.normal"])
    assert math.isfinite(module.epoch_metrics()["train_loss"]) and module.epoch_metrics()["skipped_steps"] == 2


def test_a_skipped_language_model_step_starts_its_hidden_state_again_from_zero() -> None:
    """The NaN pass wrote the stream's hidden state; carried on, it would make every later step NaN too."""
    module = text_module(order=1)
    module.training_step(text_batches(5, seed=1), 0)
    assert set(module.objective.hidden) == {"train", "valid"}

    def nan_cell(cell, inputs, output):
        raw, hidden = output
        return raw * float("nan"), hidden * float("nan")

    hook = module.supernet.cell.register_forward_hook(nan_cell)
    module.training_step(text_batches(5, seed=2), 1)
    hook.remove()
    assert module.epoch_stats["skipped_steps"] == 2 and module.objective.hidden == {}
    module.training_step(text_batches(5, seed=3), 2)
    assert module.nonfinite_in_a_row == 0
    assert all(bool(torch.isfinite(h).all()) for h in module.objective.hidden.values())


def test_max_nonfinite_steps_in_a_row_stop_the_search_in_one_line_naming_the_epoch() -> None:
    module = image_module(1, max_nonfinite_steps=3)
    module.training_step(poisoned(image_batches(1)), 0)  # alpha and weight step: 2 in a row
    with pytest.raises(TrainingDivergedError) as err:
        module.training_step(poisoned(image_batches(2)), 1)  # the alpha step: 3
    assert isinstance(err.value, UserError) and isinstance(err.value, FloatingPointError)
    assert str(err.value) == (
        "DARTS search diverged: 3 non-finite steps in a row at epoch 0, each skipped; "
        "lower strategy.w_lr or strategy.alpha_lr and start a new run"
    )


@pytest.mark.slow
def test_a_diverged_search_names_the_last_good_checkpoint_which_a_resume_continues_from(
    compose_cfg, tmp_path, monkeypatch, caplog
) -> None:
    """Epoch 0 has one poisoned step (skipped, counted in its record); every step of epoch 1 is poisoned, so
    10 updates in a row are skipped at its 5th step and the search stops. Epoch 0's derivation and checkpoint
    survive; resumed with clean data, the search continues from that checkpoint and finishes."""
    overrides = [*FAST, "strategy.epochs=3", "strategy.train_batches=5"]
    run_dir = tmp_path / "run"
    original = DartsSearchModule.training_step

    def poison(self, batch, batch_idx):
        if self.current_epoch == 1 or (self.current_epoch == 0 and batch_idx == 1):
            batch = poisoned(batch)
        return original(self, batch, batch_idx)

    monkeypatch.setattr(DartsSearchModule, "training_step", poison)
    with caplog.at_level("WARNING"), pytest.raises(TrainingDivergedError) as err:
        run(compose_cfg(*overrides, run_dir=run_dir))
    message = str(err.value)
    assert "\n" not in message
    assert message == (
        "DARTS search diverged: 10 non-finite steps in a row at epoch 1, each skipped; lower strategy.w_lr or "
        f"strategy.alpha_lr and start a new run; the last good checkpoint is {run_dir / CHECKPOINT} and "
        f"{run_dir / 'archive.jsonl'} keeps the derivations of epochs 0-0"
    )
    assert "DARTS weight step skipped at epoch 0 (2 in a row of at most 10)" in caplog.text
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "failed" and results["error"] == f"TrainingDivergedError: {message}"
    before = read_archive(run_dir)
    assert [r["extra"]["darts"]["epoch"] for r in before] == [0]
    assert before[0]["extra"]["darts"]["skipped_steps"] == 2 and math.isfinite(before[0]["score"])
    checkpoint = torch.load(run_dir / CHECKPOINT, weights_only=False)
    assert checkpoint["epoch"] == 0
    assert all(bool(torch.isfinite(v).all()) for v in checkpoint["state_dict"].values() if v.is_floating_point())
    archived = torch.tensor(before[0]["extra"]["darts"]["alphas"]["normal"])
    torch.testing.assert_close(checkpoint["state_dict"]["alphas.normal"], archived, atol=1e-6, rtol=0)

    monkeypatch.setattr(DartsSearchModule, "training_step", original)
    resumed = run(compose_cfg(*overrides, "resume=true", run_dir=run_dir))
    after = read_archive(run_dir)
    assert after[:1] == before and [r["extra"]["darts"]["epoch"] for r in after] == [0, 1, 2]
    assert all(r["extra"]["darts"]["skipped_steps"] == 0 for r in after[1:])
    assert resumed["status"] == "finished"


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncated", "non-finite"])  # garbage, empty: tests/train/test_nonfinite.py
def test_a_damaged_checkpoint_is_refused_in_one_line_and_moved_away_the_search_trains_again(
    compose_cfg, tmp_path, damage
) -> None:
    """Nothing is reset silently: the refusal leaves the checkpoint and the archive as they were; moved away,
    the search trains again from epoch 0 and keeps the archived derivations (not recorded twice)."""
    overrides = [*FAST, "strategy.epochs=2"]
    run_dir = tmp_path / "run"
    run(compose_cfg(*overrides, "strategy.epochs=1", run_dir=run_dir))  # epoch 0 archived and checkpointed
    path = run_dir / CHECKPOINT
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        checkpoint = torch.load(path, weights_only=False)
        checkpoint["state_dict"]["alphas.normal"][0, 0] = float("nan")
        torch.save(checkpoint, path)
    damaged, archive = path.read_bytes(), (run_dir / "archive.jsonl").read_bytes()
    with pytest.raises(CorruptStateError) as err:
        run(compose_cfg(*overrides, "resume=true", run_dir=run_dir))
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{path} ")
    assert ("is unreadable (" if damage == "truncated" else "holds non-finite weights (alphas.normal)") in message
    assert message.endswith(
        "; move it away and run resume=true again: the DARTS search then trains again from epoch 0 and keeps "
        "archive.jsonl (an epoch already archived is not recorded twice)"
    )
    assert path.read_bytes() == damaged and (run_dir / "archive.jsonl").read_bytes() == archive
    assert json.loads((run_dir / "results.json").read_text())["status"] == "failed"

    path.rename(run_dir / "damaged.ckpt")
    run(compose_cfg(*overrides, "resume=true", run_dir=run_dir))
    records = read_archive(run_dir)
    assert (run_dir / "archive.jsonl").read_bytes().startswith(archive)
    assert [r["extra"]["darts"]["epoch"] for r in records] == [0, 1]
    assert torch.load(path, weights_only=False)["epoch"] == 1
