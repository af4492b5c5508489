"""strategy=darts: the mixed-op supernet, the bilevel module, the search in the pipeline and its resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from naslab.ops.cnn import build_op
from naslab.ops.mixed import MixedOp, MixedSupernet
from naslab.pipeline import owns_supernet, run, run_group
from naslab.spaces.base import Task
from naslab.spaces.micro import MicroSpace
from naslab.spaces.micro_genotype import GenotypeError
from naslab.strategies.darts import CHECKPOINT, DartsStrategy, DerivationRecorder, alpha_entropy
from naslab.strategies.darts_module import DartsSearchModule

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


@pytest.mark.parametrize("order", [1, 2])
def test_search_runs_both_orders_and_archives_each_epochs_derivation(compose_cfg, tmp_path, order) -> None:
    cfg = compose_cfg(*FAST, f"strategy.order={order}")
    assert owns_supernet(cfg) and run_group(cfg) == "digits/MicroSpace/DartsStrategy"  # no "+<evaluator>"
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


@pytest.mark.parametrize("crash_at", ["after_checkpoint", "before_checkpoint"])
def test_a_killed_search_resumes_to_the_uninterrupted_result(compose_cfg, tmp_path, monkeypatch, crash_at) -> None:
    """Killed after epoch 0's checkpoint, or after epoch 1 was archived but before its checkpoint
    (epoch 1 is then trained again from epoch 0's checkpoint and not archived twice)."""
    overrides = [*FAST, "strategy.order=2", "strategy.epochs=3"]
    whole = run(compose_cfg(*overrides, run_dir=tmp_path / "whole"))
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
    after, reference = read_archive(tmp_path / "killed"), read_archive(tmp_path / "whole")
    assert after[: len(before)] == before  # nothing lost or rewritten
    assert [r["extra"]["darts"]["epoch"] for r in after] == [0, 1, 2]
    for got, want in zip(after, reference):
        assert got["key"] == want["key"] and got["score"] == want["score"]
        assert got["extra"]["darts"]["alphas"] == want["extra"]["darts"]["alphas"]
    assert resumed["genotype"] == whole["genotype"]
    state = torch.load(tmp_path / "killed" / CHECKPOINT, weights_only=False)["state_dict"]
    reference_state = torch.load(tmp_path / "whole" / CHECKPOINT, weights_only=False)["state_dict"]
    for name in ("alphas.normal", "alphas.reduce"):
        torch.testing.assert_close(state[name], reference_state[name], atol=0, rtol=0)


def test_a_space_without_a_mixed_supernet_is_refused_in_one_line(compose_cfg) -> None:
    cfg = compose_cfg("strategy=darts", "space=macro", "debug=fast", "mode=search")
    with pytest.raises(NotImplementedError, match="space 'macro' has no mixed-op supernet"):
        run(cfg)


def test_a_space_that_concatenates_only_unused_nodes_is_refused() -> None:
    with pytest.raises(ValueError, match="use space=micro_darts or space.concat=all"):
        MicroSpace(4, "darts", "unused").build_mixed_supernet(CIFAR)


def test_strategy_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="order must be 1 or 2"):
        DartsStrategy(DARTS_SPACE, order=0)
    with pytest.raises(ValueError, match="select must be"):
        DartsStrategy(DARTS_SPACE, select="first")


def test_presets_carry_the_paper_settings_and_debug_shrinks_them(compose_cfg) -> None:
    v1, v2 = compose_cfg("experiment=darts_v1"), compose_cfg("experiment=darts_v2")
    assert (v1.strategy.order, v2.strategy.order) == (1, 2)
    s = v2.strategy
    assert (v2.dataset.name, v2.space.num_nodes, v2.space.op_set, v2.space.concat) == ("cifar10", 4, "darts", "all")
    assert (s.epochs, s.batch_size, s.valid_fraction, s.channels, s.cells_per_stage) == (50, 64, 0.5, 16, 2)
    assert (s.w_lr, s.w_lr_min, s.momentum, s.weight_decay, s.grad_clip) == (0.025, 0.001, 0.9, 3e-4, 5.0)
    assert (s.alpha_lr, list(s.alpha_betas), s.alpha_weight_decay, s.fd_r) == (3e-4, [0.5, 0.999], 1e-3, 0.01)
    fast = compose_cfg("experiment=darts_v2", "debug=fast").strategy
    assert (fast.order, fast.epochs, fast.channels, fast.train_batches) == (2, 2, 4, 2)
