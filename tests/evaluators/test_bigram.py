"""evaluator=bigram: MLPNAS's bigram weight sharing (the NAS overview, Sec. 4.1) on tiny MLPs and a slice of digits."""

from __future__ import annotations

import functools
from pathlib import Path

import lightning as L
import pytest
import torch

from naslab.data import DigitsDataModule
from naslab.evaluators.bigram import BigramEvaluator, BigramStore, bigram_keys, linear_layers
from naslab.spaces import MicroSpace, Task
from naslab.spaces.mlp.space import MLPGenotype, MLPLayer, MLPSpace

SPACE = MLPSpace(max_layers=3, widths=(8, 16), activations=("relu", "tanh"))
TASK = Task(10, (1, 8, 8))
A = MLPGenotype((MLPLayer(16, "relu"), MLPLayer(8, "tanh")))
B = MLPGenotype((MLPLayer(16, "relu", dropout=True), MLPLayer(16, "tanh")))  # shares only A's first bigram
C = MLPGenotype((MLPLayer(16, "relu"), MLPLayer(16, "tanh"), MLPLayer(8, "tanh")))  # A's first, B's second, A's last


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def evaluator(space=SPACE, **kwargs) -> BigramEvaluator:
    """A few batches of digits per child: seconds for the whole file."""
    return BigramEvaluator(
        space,
        TASK,
        functools.partial(DigitsDataModule, phase="search", search_valid_size=0.2, max_train_samples=256),
        functools.partial(L.Trainer, accelerator="cpu", deterministic=True, limit_val_batches=2),
        epochs=1,
        train_batches=3,
        batch_size=32,
        **kwargs,
    )


def fresh_layers(ev: BigramEvaluator, genotype: MLPGenotype) -> list[torch.nn.Linear]:
    """The child as the stand-alone evaluator would start it: seeded, built, nothing inherited."""
    L.seed_everything(ev.seed, workers=True, verbose=False)
    return linear_layers(SPACE.build_child(genotype, TASK))


def same(a: torch.nn.Linear, b: torch.nn.Linear) -> bool:
    return torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)


def test_bigram_keys_follow_the_layers_and_ignore_dropout() -> None:
    assert bigram_keys(A, 64, 10) == [
        (("input", 64), (16, "relu")),
        ((16, "relu"), (8, "tanh")),
        ((8, "tanh"), ("output", 10)),
    ]
    assert bigram_keys(B, 64, 10)[0] == bigram_keys(A, 64, 10)[0]  # B's first layer has dropout: same bigram
    assert bigram_keys(A, 13, 3)[0] != bigram_keys(A, 64, 10)[0]  # another input is another bigram


def test_store_holds_the_trained_layers_under_their_bigrams() -> None:
    ev = evaluator()
    (evaluation,) = ev.evaluate([A])
    assert evaluation.error is None and evaluation.extra["inherited_layers"] == 0
    assert 0.0 <= evaluation.extra["train_accuracy"] <= 1.0  # the stand-alone path reports it (NASES's reward)
    keys = bigram_keys(A, 64, 10)
    assert list(ev.store.entries) == keys
    assert [tuple(w.shape) for w, _ in ev.store.entries.values()] == [(16, 64), (8, 16), (10, 8)]
    assert [tuple(b.shape) for _, b in ev.store.entries.values()] == [(16,), (8,), (10,)]
    for key, fresh in zip(keys, fresh_layers(ev, A)):  # trained: not the initialisation any more
        assert not torch.equal(ev.store.entries[key][0], fresh.weight)


def test_second_child_starts_from_the_first_childs_trained_weights() -> None:
    ev = evaluator()
    ev.evaluate([A])
    trained_first = ev.store.entries[bigram_keys(A, 64, 10)[0]]
    network, inherited = ev.initial_network(B)
    layers, fresh = linear_layers(network), fresh_layers(ev, B)
    assert inherited == [True, False, False]
    assert torch.equal(layers[0].weight, trained_first[0]) and torch.equal(layers[0].bias, trained_first[1])
    assert not same(layers[0], fresh[0])
    assert same(layers[1], fresh[1]) and same(layers[2], fresh[2])  # no stored bigram: stand-alone initialisation
    # a copy, not the stored tensor: training B must not change what A left in the store
    assert layers[0].weight.data_ptr() != trained_first[0].data_ptr()


def test_inherited_counts_and_last_writer_wins() -> None:
    ev = evaluator()
    a, b, c = ev.evaluate([A, B, C])
    assert [e.extra["inherited_layers"] for e in (a, b, c)] == [0, 1, 3]
    assert [e.extra["linear_layers"] for e in (a, b, c)] == [3, 3, 4]
    assert [e.extra["stored_bigrams"] for e in (a, b, c)] == [3, 5, 6]
    assert all(e.error is None and 0.0 <= e.score <= 1.0 for e in (a, b, c))
    # C trained the first bigram last: a fourth child starts from C's weights, not A's or B's
    network, inherited = ev.initial_network(A)
    assert inherited == [True, True, True]
    assert torch.equal(linear_layers(network)[0].weight, ev.store.entries[bigram_keys(C, 64, 10)[0]][0])


def test_store_round_trip_gives_the_same_initialisation(tmp_path: Path) -> None:
    path = tmp_path / "bigram_store.pt"
    ev = evaluator(store_path=path)
    ev.evaluate([A, B])
    assert path.exists()
    expected, inherited = ev.initial_network(C)
    assert inherited == [True, True, False, True]  # (16 tanh, 8 tanh) is new

    copy = evaluator()
    copy.load_state_dict(ev.state_dict())
    resumed = evaluator(store_path=path, resume=True)
    for other in (copy, resumed):
        network, again = other.initial_network(C)
        assert again == inherited
        assert all(same(x, y) for x, y in zip(linear_layers(network), linear_layers(expected)))
    # without resume=true the run starts with an empty store, whatever the file holds
    assert evaluator(store_path=path).initial_network(C)[1] == [False] * 4
    loaded = BigramStore()
    loaded.load(path)  # plain containers and tensors: loads with weights_only=True
    assert list(loaded.entries) == list(ev.store.entries)


def test_refuses_other_spaces_and_parallel_backends() -> None:
    with pytest.raises(ValueError, match="space=mlp") as err:
        evaluator(space=MicroSpace(2, "enas"))
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="backend=pool") as err:
        evaluator(backend="pool")
    assert "\n" not in str(err.value)


def test_config_builds_the_evaluator_with_its_store_in_the_run_dir(compose_cfg, tmp_path: Path) -> None:
    from hydra.utils import instantiate

    from naslab.stages.build import build_evaluator as _evaluator

    cfg = compose_cfg("space=mlp", "evaluator=bigram", "debug=fast", run_dir=tmp_path / "run")
    ev = _evaluator(cfg, instantiate(cfg.space), TASK, functools.partial(L.Trainer, accelerator="cpu"))
    assert isinstance(ev, BigramEvaluator) and ev.name == "bigram"
    assert ev.store_path == tmp_path / "run" / "bigram_store.pt"
    assert ev.epochs == cfg.evaluator.epochs == 1
