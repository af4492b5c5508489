"""The MLPNAS space (the NAS overview): genotype and token round trips, stop tokens, counting, networks, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torch import nn

from naslab.plots.genotype import draw_genotype_pictures
from naslab.spaces import GenotypeError, Task
from naslab.spaces.mlp.space import MLP_WIDTHS, MLPGenotype, MLPLayer, MLPNetwork, MLPSpace
from naslab.strategies.base import results_of
from naslab.strategies.reinforce.strategy import ReinforceStrategy
from tests.conftest import CONF_DIR

TINY = dict(max_layers=2, widths=(8, 16), activations=("relu", "tanh"))
SPACES = [
    MLPSpace(),
    MLPSpace(dropout=None),
    MLPSpace(**TINY),
    MLPSpace(**TINY, min_layers=0),
    MLPSpace(max_layers=1, widths=(4,), activations=("elu",), dropout=None),
]
DIGITS = Task(10, (1, 8, 8))
WINE = Task(3, (13,), stem="tabular", kind="tabular")


def mlp(*layers: tuple) -> MLPGenotype:
    return MLPGenotype(tuple(MLPLayer(*layer) for layer in layers))


# --- genotype and tokens -------------------------------------------------------------------------
@pytest.mark.parametrize("space", SPACES, ids=repr)
def test_json_dict_and_token_round_trips(space: MLPSpace) -> None:
    rng = np.random.default_rng(0)
    for _ in range(30):
        g = space.sample(rng)
        space.validate(g)
        assert MLPGenotype.from_json(g.to_json()) == g and hash(MLPGenotype.from_json(g.to_json())) == hash(g)
        assert space.genotype_from_dict(json.loads(json.dumps(space.to_dict(g)))) == g
        tokens = space.to_tokens(g)
        assert len(tokens) == len(space.token_choices()) == space.max_layers
        assert all(t in space.valid_tokens(i) for i, t in enumerate(tokens))
        assert space.from_tokens(tokens) == g
        assert space.canonical_tokens(tokens) == tokens


def test_token_table_layer_vocabulary_then_stop() -> None:
    space = MLPSpace()
    assert len(space.vocabulary()) == 7 * 4 * 2 == space.stop_token  # MLPNAS's 7 widths x 4 activations x dropout
    assert space.token_choices() == [56] + [57] * 9  # the first slot cannot stop: at least one hidden layer
    assert space.token_kinds() == ["layer"] * 10
    g = mlp((8, "sigmoid"), (512, "elu", True))
    # width-major, then activation, then the dropout bit: (0 * 4 + 0) * 2 + 0 and (6 * 4 + 3) * 2 + 1
    assert space.to_tokens(g) == (0, 55) + (56,) * 8
    assert [space.vocabulary()[t] for t in (0, 55)] == list(g.layers)
    assert MLPSpace(dropout=None).to_tokens(mlp((16, "tanh"))) == (5,) + (28,) * 9
    assert MLPSpace(**TINY, min_layers=0).token_choices() == [9, 9]


def test_tokens_after_the_first_stop_are_ignored_and_canonicalised() -> None:
    space = MLPSpace(max_layers=4)
    stop = space.stop_token
    variants = [(5, stop, 0, 0), (5, stop, stop, stop), (5, stop, 17, stop), (5, stop, stop, 55)]
    genotypes = [space.from_tokens(t) for t in variants]
    assert all(g == mlp((8, "relu", True)) for g in genotypes)  # (0 * 4 + 2) * 2 + 1 = 5
    assert {space.key(g) for g in genotypes} == {space.key(genotypes[0])}
    assert {space.canonical_tokens(t) for t in variants} == {(5, stop, stop, stop)}
    assert space.from_tokens((3, 4, 5, 6)).num_layers == 4 and space.from_tokens((3, 4, stop, 6)).num_layers == 2
    with pytest.raises(GenotypeError, match="token 0 is 56; valid tokens at this position are 0..55"):
        space.from_tokens((stop, 0, 0, 0))  # no stop in the first slot: min_layers=1
    with pytest.raises(GenotypeError, match="expected 4 tokens"):
        space.from_tokens((0, 0, 0))


def test_size_counts_architectures_and_matches_enumerate() -> None:
    space = MLPSpace(**TINY)  # V = 2 widths x 2 activations x 2 dropout bits = 8
    every = list(space.enumerate())
    assert space.size() == 8 + 8**2 == len(every) == len(set(every)) == len({space.key(g) for g in every})
    assert set(every) == {space.from_tokens(t) for t in np.ndindex(*space.token_choices())}
    with_empty = MLPSpace(**TINY, min_layers=0)
    assert with_empty.size() == 1 + 8 + 64 == len(list(with_empty.enumerate()))
    assert MLPGenotype(()) in set(with_empty.enumerate())
    assert MLPSpace().size() == sum(56**n for n in range(1, 11))
    with pytest.raises(NotImplementedError, match="too many to enumerate"):
        next(MLPSpace().enumerate())


def test_seeded_sampling_is_reproducible_and_covers_depths_and_choices() -> None:
    space = MLPSpace()
    assert [space.sample(np.random.default_rng(3)) for _ in range(3)] == [
        space.sample(np.random.default_rng(3)) for _ in range(3)
    ]
    rng = np.random.default_rng(0)
    samples = [space.sample(rng) for _ in range(300)]
    assert {g.num_layers for g in samples} == set(range(1, 11))  # depth uniform over 1..10
    layers = [layer for g in samples for layer in g.layers]
    assert {layer.width for layer in layers} == set(MLP_WIDTHS)
    assert {layer.activation for layer in layers} == {"sigmoid", "tanh", "relu", "elu"}
    assert {layer.dropout for layer in layers} == {False, True}
    assert not any(layer.dropout for g in [MLPSpace(dropout=None).sample(rng) for _ in range(50)] for layer in g.layers)


def test_reinforce_controller_samples_and_learns_on_the_token_table() -> None:
    space = MLPSpace()
    strategy = ReinforceStrategy(space, seed=0, hidden=16)
    proposals = strategy.ask(6)
    for p in proposals:
        space.validate(p.genotype)
    strategy.tell(results_of(proposals, [0.1 * i for i in range(6)]))
    assert strategy.baseline is not None


def test_config_builds_the_default_space() -> None:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=["space=mlp", "dataset=wine", "logger=none"])
    space = instantiate(cfg.space)
    assert isinstance(space, MLPSpace) and repr(space) == repr(MLPSpace())


# --- validation and errors ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("genotype", "space", "message"),
    [
        (mlp((64, "gelu")), MLPSpace(), "layers\\[0\\].activation='gelu' is not allowed; activations: sigmoid, tanh"),
        (mlp((64, "relu"), (48, "relu")), MLPSpace(), "layers\\[1\\].width=48 is not allowed; widths: 8, 16"),
        (mlp(*[(8, "relu")] * 11), MLPSpace(), "genotype has 11 layers; MLPSpace\\(.*\\) allows 1..10"),
        (MLPGenotype(()), MLPSpace(), "genotype has 0 layers"),
        (mlp((8, "relu", True)), MLPSpace(dropout=None), "layers\\[0\\] has dropout, but the space has none"),
        (mlp((8, "tanh")), MLPSpace(activations=("relu",)), "activation='tanh' is not allowed; activations: relu"),
    ],
)
def test_validate_gives_one_line_errors(genotype: MLPGenotype, space: MLPSpace, message: str) -> None:
    with pytest.raises(GenotypeError, match=message) as err:
        space.validate(genotype)
    assert "\n" not in str(err.value)
    with pytest.raises(GenotypeError):
        space.to_tokens(genotype)
    with pytest.raises(GenotypeError):
        space.build_child(genotype, WINE)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"layers": [{"width": 0, "activation": "relu"}]}, "layers\\[0\\].width must be a positive int"),
        ({"layers": [{"width": True, "activation": "relu"}]}, "layers\\[0\\].width must be a positive int"),
        ({"layers": [{"width": 8, "activation": ""}]}, "layers\\[0\\].activation must be an activation name"),
        ({"layers": [{"width": 8, "activation": "relu", "dropout": 1}]}, "layers\\[0\\].dropout must be true or fa"),
        ({"layers": [{"width": 8}]}, "layers\\[0\\] must be an object with 'width' and 'activation'"),
        ({"layers": [{"width": 8, "activation": "relu", "rate": 0.5}]}, "unknown fields \\['rate'\\]"),
        ({"layers": "8 relu"}, "layers must be a list"),
        ([8, "relu"], "an mlp genotype must be an object with 'layers'"),
    ],
)
def test_malformed_genotype_data_gives_one_line_errors(data: object, message: str) -> None:
    with pytest.raises(GenotypeError, match=message) as err:
        MLPGenotype.from_dict(data)
    assert "\n" not in str(err.value)


def test_malformed_json_is_a_genotype_error() -> None:
    with pytest.raises(GenotypeError, match="not valid JSON"):
        MLPGenotype.from_json("{layers: ")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"activations": ("relu", "swish")}, "activations must be distinct names from sigmoid, tanh, relu, elu"),
        ({"widths": (8, 8)}, "widths must be distinct positive ints"),
        ({"widths": ()}, "widths must be distinct positive ints"),
        ({"max_layers": 0}, "max_layers >= 1"),
        ({"min_layers": 11}, "0 <= min_layers <= max_layers=10"),
        ({"dropout": 1.5}, "dropout must be a rate in \\(0, 1\\) or null"),
    ],
)
def test_bad_space_settings_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message) as err:
        MLPSpace(**kwargs)
    assert "\n" not in str(err.value)


def test_text_tasks_are_refused_with_one_line() -> None:
    with pytest.raises(ValueError, match="space=mlp builds classifiers of feature vectors.*text data") as err:
        MLPSpace().build_child(mlp((8, "relu")), Task(10_000, (), stem="text", kind="text"))
    assert "\n" not in str(err.value)


# --- networks -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("task", "batch"), [(DIGITS, (5, 1, 8, 8)), (WINE, (5, 13))], ids=["digits", "wine"])
def test_networks_flatten_any_input_and_end_in_the_task_classes(task: Task, batch: tuple[int, ...]) -> None:
    space = MLPSpace()
    rng = np.random.default_rng(1)
    for g in [space.sample(rng) for _ in range(5)] + [mlp((512, "sigmoid"))]:
        net = space.build_child(g, task, channels=16, cells_per_stage=1, auxiliary=True)  # cell keywords ignored
        assert isinstance(net, MLPNetwork)
        out = net(torch.randn(batch))
        assert out.shape == (5, task.num_classes)
        linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
        assert [m.out_features for m in linears] == [layer.width for layer in g.layers] + [task.num_classes]
        assert linears[0].in_features == int(np.prod(task.input_shape))


def test_linear_classifier_without_hidden_layers() -> None:
    net = MLPSpace(min_layers=0).build_child(MLPGenotype(()), WINE)
    assert [type(m) for m in net.body] == [nn.Flatten] and net.classifier.in_features == 13
    assert net(torch.randn(2, 13)).shape == (2, 3)


def test_dropout_only_where_chosen_and_activations_in_order() -> None:
    g = mlp((64, "relu"), (32, "tanh", True), (16, "elu"), (8, "sigmoid", True))
    net = MLPSpace().build_child(g, WINE)
    assert [type(m) for m in net.body] == [
        *(nn.Flatten, nn.Linear, nn.ReLU, nn.Linear, nn.Tanh, nn.Dropout),
        *(nn.Linear, nn.ELU, nn.Linear, nn.Sigmoid, nn.Dropout),
    ]
    assert [m.p for m in net.modules() if isinstance(m, nn.Dropout)] == [0.2, 0.2]
    assert not [m for m in MLPSpace().build_child(mlp((64, "relu")), WINE).modules() if isinstance(m, nn.Dropout)]
    net.eval()  # dropout off: deterministic
    x = torch.randn(4, 13)
    assert torch.equal(net(x), net(x))


def test_describe_and_files(tmp_path: Path) -> None:
    space = MLPSpace()
    g = mlp((64, "relu"), (32, "tanh", True))
    assert space.describe(g) == "64 relu -> 32 tanh (dropout 0.2) -> linear"
    assert str(g) == "64 relu -> 32 tanh (dropout) -> linear"
    assert draw_genotype_pictures(space, g, tmp_path) == []
    space.save_genotype(g, tmp_path / "genotype.json")
    saved = json.loads((tmp_path / "genotype.json").read_text())
    assert saved["space"] == "mlp" and space.genotype_from_dict(saved["genotype"]) == g


def test_channels_last_training_leaves_feature_vectors_alone() -> None:
    """`train.channels_last=true` lays out image batches (rank 4) only: a wine batch (rank 2) trains too."""
    from naslab.train.classifier import ClassifierModule

    net = MLPSpace().build_child(MLPGenotype((MLPLayer(16, "relu", False),)), Task(3, (13,), kind="tabular"))
    module = ClassifierModule(net, num_classes=3, channels_last=True)
    x, y = torch.randn(4, 13), torch.tensor([0, 1, 2, 0])
    assert module(x).shape == (4, 3)
    loss = module.training_step((x, y), 0)
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in net.parameters())
