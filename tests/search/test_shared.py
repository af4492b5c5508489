"""evaluator=shared: random validation batches per scored architecture, ENAS's shared-weight recipe
(SGDR, Nesterov, l2, auxiliary head, dropout), the PTB recipe, checkpoint contents, kill -9 and resume."""

from __future__ import annotations

import json
import math

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch import nn

from naslab.archive import Archive
from naslab.data import DigitsDataModule
from naslab.errors import CorruptStateError, TrainingDivergedError, UserError
from naslab.evaluators.shared import CHECKPOINT, SharedEvaluator, valid_batch_seed
from naslab.pipeline import run
from naslab.search.shared import SharedWeightSearch, SharedWeightsModule
from naslab.spaces import MicroSpace, Task
from naslab.stages.build import build_evaluator as _evaluator
from naslab.stages.build import datamodule as _datamodule
from naslab.stages.build import task_of as _task
from naslab.strategies import Proposal, RandomStrategy, ReinforceStrategy
from naslab.train.objectives import batch_statistics
from tests.conftest import run_and_kill_9
from tests.fake_data import write_text_corpus

SPACE = MicroSpace(2, "enas")
TASK = Task(10, (1, 8, 8))


def evaluator(space: MicroSpace = SPACE, channels: int = 4, **kw) -> SharedEvaluator:
    return SharedEvaluator(
        space,
        TASK,
        lambda **k: DigitsDataModule(phase="search", **k),
        lambda **k: L.Trainer(accelerator="cpu", enable_progress_bar=False, **k),
        channels=channels,
        batch_size=32,
        **kw,
    )


def shared_search(ev: SharedEvaluator, strategy, run_dir, resume: bool = False):
    """The weight-sharing search of `strategy` with `ev`'s supernet, run in `run_dir`."""
    return SharedWeightSearch(ev.space, strategy, ev).run(run_dir, resume=resume)


def module(supernet: nn.Module, tmp_path, **kw) -> SharedWeightsModule:
    """A SharedWeightsModule around `supernet` with ENAS's image recipe unless `kw` says otherwise."""
    options = {
        "seed": 0,
        "epochs": 150,
        "lr": 0.05,
        "momentum": 0.9,
        "weight_decay": 2e-4,
        "grad_clip": None,
        "strategy_steps": 1,
        "strategy_batch": 1,
        "nesterov": True,
        "scheduler": "sgdr",
        "lr_min": 5e-4,
        "lr_T_0": 10,
        "lr_T_mul": 2,
        "auxiliary_weight": 0.4,
        "step_every_weight": True,
    }
    options.update(kw)
    strategy = RandomStrategy(SPACE, 0)
    archive = Archive(tmp_path / "a.jsonl")
    return SharedWeightsModule(supernet, SPACE, strategy, archive, [], lambda i: [], run_dir=tmp_path, **options)


def spy_on_scores(ev: SharedEvaluator) -> list[list[torch.Tensor]]:
    """The images of every batch each score reads, in the order the scores are made."""
    seen: list[list[torch.Tensor]] = []
    score = ev.objective.score

    def spy(net, arch, batches, eval_mode=False):
        seen.append([x.clone() for x, _ in batches])
        return score(net, arch, batches, eval_mode)

    ev.objective.score = spy
    return seen


# ------------------------------------------------------------------------- random validation batches
def test_every_scored_architecture_reads_its_own_seeded_random_valid_batches(tmp_path) -> None:
    """The bug: every architecture of a strategy step, and every derived candidate, read the same batch.

    Now each scored record reads `valid_batches` batches of `valid_batch_size` random search-valid images
    of its own, seeded by (run seed, archive index): a resumed run, which re-scores only the records
    missing from the archive, scores each of them on the images the uninterrupted run used.
    """
    kw = {"epochs": 2, "train_batches": 2, "strategy_steps": 2, "strategy_batch": 3, "derive_samples": 4}
    ev = evaluator(valid_batches=2, valid_batch_size=8, **kw)
    seen = spy_on_scores(ev)
    result = shared_search(ev, RandomStrategy(SPACE, 0), tmp_path)
    records = result.archive.records
    assert len(records) == len(seen) == 2 * 2 * 3 + 4
    images = [torch.cat(batches) for batches in seen]
    phase = [i for i, r in enumerate(records) if r.extra.get("epoch") == 0][:3]  # one strategy step's three
    assert not any(torch.equal(images[a], images[b]) for a in phase for b in phase if a < b)
    derived = [i for i, r in enumerate(records) if r.extra.get("derive")]
    assert len(derived) == 4 and not any(torch.equal(images[a], images[b]) for a in derived for b in derived if a < b)
    assert all(len(batches) == 2 and all(len(x) == 8 for x in batches) for batches in seen)  # valid_batches honoured
    # the batches are a function of (seed, index): the datamodule's draw from that seed
    generator = torch.Generator().manual_seed(valid_batch_seed(0, derived[0]))
    again = ev.datamodule.random_valid_batches(2, 8, generator)
    assert torch.equal(torch.cat([x for x, _ in again]), images[derived[0]])

    # a resume that lost the derivation re-scores it on the same images, with the same scores
    lines = (tmp_path / "archive.jsonl").read_text().splitlines()
    (tmp_path / "archive.jsonl").write_text("\n".join(lines[: derived[0]]) + "\n")
    ev2 = evaluator(valid_batches=2, valid_batch_size=8, **kw)
    seen2 = spy_on_scores(ev2)
    resumed = shared_search(ev2, RandomStrategy(SPACE, 0), tmp_path, resume=True)
    assert len(seen2) == 4  # only the lost records were scored
    assert all(torch.equal(torch.cat(b), images[i]) for b, i in zip(seen2, derived))
    assert [(r.key, r.score) for r in resumed.archive.records] == [(r.key, r.score) for r in records]


class SameArchitecture(RandomStrategy):
    """Proposes one architecture over and over (a controller that has converged)."""

    def ask(self, n: int) -> list:
        return [Proposal(SPACE.sample(np.random.default_rng(7)))] * n


def test_an_architecture_proposed_again_in_a_phase_is_scored_again_on_new_images(tmp_path) -> None:
    """ENAS scores every sample on a fresh batch; a repeat must not reuse the first score of its phase."""
    kw = {"epochs": 1, "train_batches": 1, "strategy_steps": 3, "strategy_batch": 1, "derive_samples": 2}
    ev = evaluator(valid_batch_size=8, **kw)
    seen = spy_on_scores(ev)
    records = shared_search(ev, SameArchitecture(SPACE, 0), tmp_path).archive.records
    stages = [r.key.split(":", 1)[0] for r in records]
    assert stages == ["epoch0", "epoch0/2", "epoch0/3", "derive", "derive/2"]  # the derivation's repeats too
    assert len({r.key.split(":", 1)[1] for r in records}) == 1
    assert len(seen) == 5 and all(not torch.equal(seen[i][0], seen[i + 1][0]) for i in range(4))


def test_scores_use_batch_statistics_and_leave_running_stats_alone() -> None:
    ev = evaluator()
    buffers = {n: b.clone() for n, b in ev.supernet.named_buffers()}
    genotypes = [SPACE.sample(np.random.default_rng(s)) for s in range(3)]
    scores = [e.score for e in ev.evaluate(genotypes)]
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert all(torch.equal(buffers[n], b) for n, b in ev.supernet.named_buffers() if "num_batches" not in n)
    with batch_statistics(ev.supernet):
        assert ev.supernet.training
    frozen = {n for n, p in ev.supernet.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith("auxiliary_head.") for n in frozen)  # ENAS leaves its aux head untrained


def test_evaluate_scores_every_architecture_on_the_same_fixed_batches() -> None:
    """The ranking study's scores: one set of images for all, so the comparison is fair."""
    ev = evaluator(valid_batches=2)
    seen = spy_on_scores(ev)
    ev.evaluate([SPACE.sample(np.random.default_rng(s)) for s in range(3)])
    first = torch.cat([x for x, _ in list(ev.datamodule.val_dataloader())[:2]])
    assert all(torch.equal(torch.cat(b), first) for b in seen)


# ------------------------------------------------------------------------------ the shared-weight step
def test_sgdr_rates_per_epoch_are_those_of_enas_get_train_ops(tmp_path) -> None:
    """--child_lr_cosine --child_lr_max=0.05 --child_lr_min=0.0005 --child_lr_T_0=10 --child_lr_T_mul=2.

    get_train_ops: curr_epoch = step // num_train_batches; T_curr = curr_epoch - last_reset; when T_curr
    reaches T_i, last_reset = curr_epoch and T_i *= T_mul; lr = lr_min + 0.5 (lr_max - lr_min)
    (1 + cos(pi T_curr / T_i)), constant within an epoch (its first step at a restart aside: see the docs).
    """
    optimizer, scheduler = (x[0] for x in module(nn.Linear(2, 1), tmp_path).configure_optimizers())
    assert isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingWarmRestarts)
    rates = []
    for _ in range(150):
        rates.append(optimizer.param_groups[0]["lr"])
        scheduler.step()  # once per epoch, as on_train_epoch_end does
    last_reset, t_i, expected = 0, 10, []
    for epoch in range(150):  # the authors' state machine, transcribed
        if epoch - last_reset >= t_i:
            last_reset, t_i = epoch, t_i * 2
        expected.append(0.0005 + 0.5 * (0.05 - 0.0005) * (1.0 + math.cos((epoch - last_reset) / t_i * 3.1415926)))
    assert rates == pytest.approx(expected, rel=1e-6)
    by_hand = {0: 0.05, 5: 0.02525, 10: 0.05, 20: 0.02525, 30: 0.05, 50: 0.02525, 70: 0.05, 110: 0.02525}
    by_hand[9] = 0.0005 + 0.02475 * (1 + math.cos(0.9 * math.pi))  # 0.0017113
    by_hand[149] = 0.0005 + 0.02475 * (1 + math.cos(79 / 80 * math.pi))  # 0.0005191
    assert {e: rates[e] for e in by_hand} == pytest.approx(by_hand, rel=1e-6)
    # the plain cosine stays available (today's behaviour before the ENAS recipe): 0.05 -> lr_min over the epochs
    optimizer, scheduler = (x[0] for x in module(nn.Linear(2, 1), tmp_path, scheduler="cosine").configure_optimizers())
    assert isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingLR) and scheduler.T_max == 150


def test_nesterov_step_is_tensorflows_momentum_optimizer_with_use_nesterov(tmp_path) -> None:
    """accum = 0.9 accum + g; w -= lr (g + 0.9 accum) (tf.train.MomentumOptimizer, use_nesterov=True)."""
    net = nn.Linear(2, 1, bias=False)
    w0 = torch.tensor([[1.0, -2.0]])
    net.weight.data.copy_(w0)
    optimizer = module(net, tmp_path, weight_decay=0.0).configure_optimizers()[0][0]
    g1, g2 = torch.tensor([[0.5, 1.0]]), torch.tensor([[-1.0, 0.25]])
    for g in (g1, g2):
        net.weight.grad = g.clone()
        optimizer.step()
    accum1 = g1
    w1 = w0 - 0.05 * (g1 + 0.9 * accum1)
    accum2 = 0.9 * accum1 + g2
    w2 = w1 - 0.05 * (g2 + 0.9 * accum2)
    assert torch.allclose(net.weight.data, w2, atol=1e-7)


def test_weight_decay_is_enas_l2_in_the_loss_for_every_shared_weight(tmp_path) -> None:
    """weight_decay 2e-4 in torch's SGD == ENAS's `loss += 1e-4 * sum(w^2)` over every variable.

    Three real shared-weight steps (Lightning, three different sampled cells) against a hand loop with
    the l2 term in the loss: every weight, on the sampled path or not, ends the same (the l2 gradient
    reaches every variable in TensorFlow, so weights off the path decay and keep their momentum too).
    """
    kw = {"epochs": 1, "train_batches": 3, "strategy_steps": 0, "derive_samples": 1}
    kw.update(classifier_dropout=0.0, auxiliary_weight=0.0)  # nothing random in the forward pass
    ev = evaluator(**kw)
    shared_search(ev, RandomStrategy(SPACE, 0), tmp_path)

    hand = evaluator(**kw)  # the same initial weights (seeded) and data
    net = hand.supernet.train()
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.05, momentum=0.9, nesterov=True)
    strategy = RandomStrategy(SPACE, 0)
    loader = hand.datamodule.train_dataloader()
    loader.sampler.set_epoch(0)
    used = set()
    for _, (x, y) in zip(range(3), loader):
        genotype = strategy.ask(1)[0].genotype  # Random-WS trains on what the strategy proposes
        loss = F.cross_entropy(net(x, genotype), y) + 1e-4 * sum(p.pow(2).sum() for p in params)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        used |= {
            n for n, p in net.named_parameters() if p.grad is not None and p.grad.abs().sum() > 2e-4 * p.abs().sum()
        }
    trained = dict(ev.supernet.named_parameters())
    for name, p in net.named_parameters():
        assert torch.allclose(trained[name], p, rtol=1e-5, atol=1e-7), name
    off_path = [n for n, p in net.named_parameters() if n not in used and ".nodes." in n]
    assert off_path  # some edges were never sampled: they moved by the l2 term alone, as in ENAS


def test_step_loss_is_the_cross_entropy_plus_0_4_auxiliary_and_the_aux_gradient_reaches_the_cells(tmp_path) -> None:
    ev = evaluator(channels=4, cells_per_stage=2)  # ENAS's numbering: reductions 2 and 5, aux head after cell 6
    net = ev.supernet.train()
    assert net.reduction_layers == (2, 5) and net.aux_position == 6 and net.dropout == pytest.approx(0.1)
    step_module = module(net, tmp_path)
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    g = SPACE.sample(np.random.default_rng(3))
    torch.manual_seed(7)
    step = step_module.weight_step_loss((x, y), g)
    torch.manual_seed(7)  # the same dropout mask
    logits, aux = net.forward_with_aux(x, g)
    assert aux is not None and aux.shape == (16, 10)
    by_hand = F.cross_entropy(logits, y) + 0.4 * F.cross_entropy(aux, y)
    assert step.loss.item() == pytest.approx(by_hand.item(), rel=1e-6)
    assert step.nll.item() == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-6)
    net.zero_grad(set_to_none=True)
    F.cross_entropy(aux, y).backward()  # the auxiliary loss alone
    reached = {n.split(".")[1] for n, p in net.named_parameters() if n.startswith("cells.") and p.grad is not None}
    assert reached == {str(i) for i in range(7)}  # every cell up to the head's, none after
    assert net.classifier_weight.grad is None
    assert all(p.grad is None for p in net.auxiliary_head.parameters())  # frozen: ENAS never trains it


def test_auxiliary_head_trained_on_request_and_absent_in_other_supernets() -> None:
    ev = evaluator(auxiliary_trained=True)  # NAO-WS trains its head
    assert all(p.requires_grad for p in ev.supernet.parameters())
    from naslab.spaces.macro.space import MacroSpace

    macro = SharedEvaluator(
        MacroSpace(3),
        TASK,
        lambda **k: DigitsDataModule(phase="search", **k),
        lambda **k: L.Trainer(accelerator="cpu", **k),
        channels=4,
    )
    assert macro.hparams["auxiliary_weight"] == 0.0 and macro.supernet.dropout == pytest.approx(0.1)
    assert not any("aux" in n for n, _ in macro.supernet.named_parameters())  # general_child.py has none
    # the macro supernet drops before its classifier in the weight step only (general_child.py `_model`)
    net = macro.supernet.train()
    g = MacroSpace(3).sample(np.random.default_rng(0))
    x = torch.randn(8, 1, 8, 8)
    plain = net(x, g)
    assert torch.equal(net(x, g), plain)
    torch.manual_seed(0)
    dropped, aux = net.forward_with_aux(x, g)
    torch.manual_seed(0)
    assert aux is None and torch.allclose(dropped, net.classifier(F.dropout(net.features(x, g), 0.1, True)))
    assert not torch.allclose(dropped, plain) and torch.equal(net.eval().forward_with_aux(x, g)[0], net(x, g))


def test_enas_recipe_is_the_default_for_image_tasks(compose_cfg) -> None:
    cfg = compose_cfg("evaluator=shared", "space=micro", "space.num_nodes=2")  # no preset: the defaults
    e = cfg.evaluator
    assert (e.lr, e.momentum, e.nesterov, e.grad_clip) == (0.05, 0.9, True, None)
    assert (e.scheduler, e.lr_min, e.lr_T_0, e.lr_T_mul) == (None, None, 10, 2)
    assert (e.auxiliary_weight, e.auxiliary_trained, e.classifier_dropout, e.valid_batch_size) == (
        0.4,
        False,
        0.1,
        None,
    )
    ev = evaluator()
    assert ev.hparams["scheduler"] == "sgdr" and ev.hparams["lr_min"] == 0.0005 and ev.hparams["step_every_weight"]


def test_ptb_keeps_its_own_shared_weight_recipe(compose_cfg, tmp_path) -> None:
    """dataset=ptb: SGD lr 20 without momentum, weight decay 5e-7, clip 0.25, cosine to 0 over the epochs,
    only the sampled path stepped, no auxiliary head or classifier dropout: what it ran before ENAS's image
    recipe became the default, step for step."""
    write_text_corpus(tmp_path / "data", "ptb")
    cfg = compose_cfg("experiment=enas_ptb", "debug=fast", f"paths.data_dir={tmp_path / 'data'}", "space.num_nodes=3")
    space = instantiate(cfg.space)
    task = _task(cfg, _datamodule(cfg, "search"))
    ev = _evaluator(cfg, space, task, None)
    h = ev.hparams
    assert (h["lr"], h["momentum"], h["weight_decay"], h["grad_clip"]) == (20.0, 0.0, 5e-7, 0.25)
    assert (h["scheduler"], h["lr_min"], h["auxiliary_weight"], h["step_every_weight"]) == ("cosine", 0.0, 0.0, False)
    search = SharedWeightsModule(
        ev.supernet,
        space,
        RandomStrategy(space, 0),
        Archive(tmp_path / "a.jsonl"),
        [],
        ev.score_batches,
        tmp_path,
        0,
        cfg.evaluator.epochs,
        objective=ev.objective,
        **h,
    )
    (optimizer,), (scheduler,) = search.configure_optimizers()
    group = optimizer.param_groups[0]
    assert (group["lr"], group["momentum"], group["nesterov"], group["weight_decay"]) == (20.0, 0.0, False, 5e-7)
    assert len(group["params"]) == len(list(ev.supernet.parameters()))
    assert isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingLR)
    assert (scheduler.T_max, scheduler.eta_min) == (cfg.evaluator.epochs, 0.0)
    assert all(p.grad is None for p in ev.supernet.parameters())  # torch's sparse steps: no zero gradients
    # the weight step's loss is the language-model objective's (hidden state carried, TAR)
    x = torch.randint(0, task.num_classes, (5, 3))
    genotype = space.sample(np.random.default_rng(0))
    ev.supernet.eval()
    expected = ev.objective.loss(ev.supernet, (x, x), genotype, advance=False).loss.item()
    assert search.weight_step_loss((x, x), genotype).loss.item() == pytest.approx(expected, rel=1e-6)


# --------------------------------------------------------------------- training, checkpoints, resume
def test_controller_is_checkpointed_with_the_shared_weights(tmp_path) -> None:
    ev = evaluator()
    strategy = ReinforceStrategy(SPACE, 0)
    module = SharedWeightsModule(
        ev.supernet,
        SPACE,
        strategy,
        Archive(tmp_path / "a.jsonl"),
        [],
        ev.score_batches,
        tmp_path,
        0,
        1,
        0.05,
        0.9,
        1e-4,
        5.0,
        1,
        1,
    )
    keys = module.state_dict().keys()
    assert any(k.startswith("controller.lstm.") for k in keys) and any(k.startswith("supernet.cells.") for k in keys)


def test_shared_training_lifts_every_path(tmp_path) -> None:
    """5 shared-weight epochs on digits: 10 fixed architectures score clearly better with the trained weights.

    Weight sharing learns slowly here because each path gets a fraction of ~180 steps; ENAS trains ~45k steps.
    """
    space = MicroSpace(2, ["sep_conv_3x3", "identity"])
    ev = evaluator(space, channels=8, epochs=5, strategy_steps=1, derive_samples=2, valid_batches=4)
    genotypes = [space.sample(np.random.default_rng(s)) for s in range(10)]
    before = np.mean([e.score for e in ev.evaluate(genotypes)])
    result = shared_search(ev, RandomStrategy(space, 0), tmp_path)
    after = np.mean([e.score for e in ev.evaluate(genotypes)])
    assert after > before + 0.08, (before, after)
    assert result.num_evaluated == 5 * 1 + 2 and (tmp_path / CHECKPOINT).exists()


ARGS = [
    "experiment=random_ws",
    "space=micro_small",
    "mode=search",
    "logger=none",
    "evaluator.epochs=5",
    "evaluator.channels=8",
    "evaluator.cells_per_stage=1",
    "evaluator.batch_size=32",
    "evaluator.strategy_steps=3",
    "search.num_architectures=4",
    "search.batch_size=1",
]


@pytest.mark.slow
def test_kill_9_then_resume_loses_no_completed_epoch_and_scores_what_the_uninterrupted_run_scored(
    compose_cfg, tmp_path
) -> None:
    run_dir = tmp_path / "killed"
    checkpoint = run_dir / CHECKPOINT

    def one_epoch_done() -> bool:
        try:
            return checkpoint.exists() and torch.load(checkpoint, weights_only=False)["epoch"] >= 1
        except Exception:  # noqa: BLE001 - being replaced at this instant; look again
            return False

    run_and_kill_9(ARGS, run_dir, one_epoch_done)
    completed = torch.load(checkpoint, weights_only=False)["epoch"]  # last epoch whose checkpoint is complete
    before = [json.loads(line) for line in (run_dir / "archive.jsonl").read_text().splitlines() if line.strip()]
    assert before

    run(compose_cfg(*ARGS, "resume=true", run_dir=run_dir))
    after = [json.loads(line) for line in (run_dir / "archive.jsonl").read_text().splitlines()]
    assert after[: len(before)] == before  # nothing archived before the kill was lost or rewritten
    assert len({r["key"] for r in after}) == len(after)  # nothing archived twice
    new = after[len(before) :]
    assert all(r["extra"].get("derive") or r["extra"]["epoch"] > completed for r in new)  # no completed epoch redone
    epochs = {r["extra"]["epoch"] for r in after if "epoch" in r["extra"]}
    assert epochs == set(range(5))  # every epoch's strategy phase is in the archive exactly as a set
    strategy_records = [r for r in after if "epoch" in r["extra"]]
    assert len(strategy_records) == 5 * 3

    # the resumed search is the search that was never interrupted: same records, same scores
    run(compose_cfg(*ARGS, run_dir=tmp_path / "fresh"))
    fresh = [json.loads(line) for line in (tmp_path / "fresh" / "archive.jsonl").read_text().splitlines()]
    assert [(r["key"], r["score"]) for r in fresh] == [(r["key"], r["score"]) for r in after]


def test_shared_training_stops_when_the_strategy_has_run_its_course(tmp_path) -> None:
    """EPNAS has a natural end (its last progression): the supernet does not train on without it."""
    from naslab.strategies.epnas.strategy import EPNASStrategy

    space = MicroSpace(2, ["identity", "sep_conv_3x3"], tied=True)
    # strategy_batch beyond any level: one level per strategy phase (ask hands out what the level has)
    ev = evaluator(space, epochs=50, train_batches=2, strategy_steps=1, strategy_batch=10_000, derive_samples=2)
    strategy = EPNASStrategy(space, seed=0, k=2, iterations=1, surrogate={"epochs": 2})
    result = shared_search(ev, strategy, tmp_path)
    assert strategy.finished
    epochs = [r.extra["epoch"] for r in result.archive.records if "epoch" in r.extra]
    assert sorted(set(epochs)) == [0, 1] and epochs == sorted(epochs)  # level 1 after epoch 0, level 2 after epoch 1
    assert epochs.count(1) == 2  # level 2: K = 2; then no more training
    assert torch.load(tmp_path / CHECKPOINT, weights_only=False)["epoch"] == 1
    assert space.is_complete(result.best_genotype)


def test_a_resume_after_the_progression_ended_trains_no_more_and_derives_the_same(tmp_path) -> None:
    """Killed after the last progression (e.g. while deriving): the resumed run neither trains nor crashes."""
    from naslab.strategies.epnas.strategy import EPNASStrategy

    space = MicroSpace(2, ["identity", "sep_conv_3x3"], tied=True)

    def search(resume: bool):
        ev = evaluator(space, epochs=50, train_batches=2, strategy_steps=1, strategy_batch=10_000, derive_samples=2)
        strategy = EPNASStrategy(space, seed=0, k=2, iterations=1, surrogate={"epochs": 2})
        return shared_search(ev, strategy, tmp_path, resume=resume), ev

    first, _ = search(resume=False)
    archived = len(first.archive.records)
    resumed, ev = search(resume=True)
    assert torch.load(tmp_path / CHECKPOINT, weights_only=False)["epoch"] == 1  # no epoch was added
    assert len(resumed.archive.records) == archived  # the derivation records were found, not re-made
    assert resumed.best_genotype == first.best_genotype


# ------------------------------------------------------------------ faults: divergence, damaged checkpoints
FAULT_KW = {"epochs": 3, "train_batches": 3, "strategy_steps": 1, "strategy_batch": 2, "derive_samples": 2}


def finite(checkpoint: dict) -> bool:
    return all(bool(torch.isfinite(v).all()) for v in checkpoint["state_dict"].values() if v.is_floating_point())


def test_a_non_finite_loss_stops_the_search_naming_the_step_and_the_last_good_checkpoint(tmp_path, monkeypatch) -> None:
    """A NaN batch at epoch 1, step 1: one line with the epoch, the step, the checkpoint of epoch 0 (loadable,
    finite) and the archive, which keeps epoch 0's phase; a resume with clean data continues from there."""
    original = SharedWeightsModule.training_step

    def poison(self, batch, batch_idx):
        x, y = batch
        if self.current_epoch == 1 and batch_idx == 1:
            x = torch.full_like(x, float("nan"))
        return original(self, (x, y), batch_idx)

    monkeypatch.setattr(SharedWeightsModule, "training_step", poison)
    with pytest.raises(TrainingDivergedError) as err:
        shared_search(evaluator(**FAULT_KW), RandomStrategy(SPACE, 0), tmp_path)
    before = (tmp_path / "archive.jsonl").read_text().splitlines()
    assert len(before) == 2  # epoch 0's phase: one strategy step of two architectures
    assert str(err.value) == (
        "shared-weight training diverged: the loss is not finite at epoch 1, step 1; lower evaluator.lr "
        f"(or set evaluator.grad_clip) and start a new run; the last good checkpoint is {tmp_path / CHECKPOINT} "
        f"(after epoch 0); {tmp_path / 'archive.jsonl'} keeps its 2 records"
    )
    assert isinstance(err.value, UserError)
    checkpoint = torch.load(tmp_path / CHECKPOINT, weights_only=False)
    assert checkpoint["epoch"] == 0 and finite(checkpoint)

    monkeypatch.setattr(SharedWeightsModule, "training_step", original)
    resumed = shared_search(evaluator(**FAULT_KW), RandomStrategy(SPACE, 0), tmp_path, resume=True)
    after = (tmp_path / "archive.jsonl").read_text().splitlines()
    assert after[:2] == before and [r.extra.get("epoch") for r in resumed.archive.records][:6] == [0, 0, 1, 1, 2, 2]
    assert torch.load(tmp_path / CHECKPOINT, weights_only=False)["epoch"] == 2


def test_weights_broken_by_the_last_step_of_an_epoch_are_neither_scored_nor_saved(tmp_path, monkeypatch) -> None:
    """What an accelerator's unread last steps (or an overflowing finite loss) leave: the epoch's end checks
    the weights before the strategy phase scores anything and before the checkpoint is written."""
    original = SharedWeightsModule.training_step

    def break_weights(self, batch, batch_idx):
        original(self, batch, batch_idx)
        if self.current_epoch == 1 and batch_idx == 2:
            with torch.no_grad():
                next(self.supernet.parameters()).fill_(float("inf"))

    monkeypatch.setattr(SharedWeightsModule, "training_step", break_weights)
    with pytest.raises(TrainingDivergedError, match=r"the weights are not finite after epoch 1 \(supernet\.") as err:
        shared_search(evaluator(**FAULT_KW), RandomStrategy(SPACE, 0), tmp_path)
    assert f"the last good checkpoint is {tmp_path / CHECKPOINT} (after epoch 0)" in str(err.value)
    records = [json.loads(line) for line in (tmp_path / "archive.jsonl").read_text().splitlines()]
    assert [r["extra"]["epoch"] for r in records] == [0, 0]  # nothing scored with the broken weights
    checkpoint = torch.load(tmp_path / CHECKPOINT, weights_only=False)
    assert checkpoint["epoch"] == 0 and finite(checkpoint)


@pytest.mark.parametrize("damage", ["truncated", "non-finite"])
def test_a_damaged_checkpoint_is_refused_on_resume_in_one_line_naming_the_file(tmp_path, damage) -> None:
    """Never a silent restart, and never training on from NaN weights: the refusal leaves the checkpoint and
    the archive as they were; moved away, shared training starts again from epoch 0 and keeps the archive."""
    kw = {**FAULT_KW, "epochs": 1}
    shared_search(evaluator(**kw), RandomStrategy(SPACE, 0), tmp_path)
    path = tmp_path / CHECKPOINT
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:1000])
    else:
        checkpoint = torch.load(path, weights_only=False)
        name = next(k for k in checkpoint["state_dict"] if k.startswith("supernet."))
        checkpoint["state_dict"][name].fill_(float("nan"))
        torch.save(checkpoint, path)
    damaged, archive = path.read_bytes(), (tmp_path / "archive.jsonl").read_bytes()
    with pytest.raises(CorruptStateError) as err:
        shared_search(evaluator(**kw), RandomStrategy(SPACE, 0), tmp_path, resume=True)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{path} ")
    assert ("is unreadable (" if damage == "truncated" else "holds non-finite weights (supernet.") in message
    assert message.endswith(
        "; move it away and run resume=true again: shared-weight training then starts again from epoch 0 with the "
        "strategy from its seed, and archive.jsonl is kept (a record in it is not scored again)"
    )
    assert path.read_bytes() == damaged and (tmp_path / "archive.jsonl").read_bytes() == archive

    path.rename(tmp_path / "damaged.ckpt")
    resumed = shared_search(evaluator(**kw), RandomStrategy(SPACE, 0), tmp_path, resume=True)
    assert (tmp_path / "archive.jsonl").read_bytes() == archive  # the seeded strategy asked what was archived
    assert len(resumed.archive.records) == len(archive.splitlines())
    assert finite(torch.load(path, weights_only=False))
