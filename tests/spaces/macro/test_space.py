"""The ENAS macro space: genotype round trips, validation, tokens, networks, supernet, training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from naslab.plots.genotype import draw_genotype_pictures
from naslab.spaces import GenotypeError, Task
from naslab.spaces.macro.network import MacroNetwork, needed_reductions, reduction_layers
from naslab.spaces.macro.space import MACRO_OPS_ENAS, MacroGenotype, MacroLayer, MacroSpace
from tests.lightning_helpers import quiet_trainer
from tests.plots.figure_checks import assert_texts_inside
from tests.plots.test_chain_plot import boxes, captured, picture_of, skip_squares

SPACES = [MacroSpace(), MacroSpace(3), MacroSpace(6, ["conv_3x3", "max_pool_3x3"]), MacroSpace(1)]


def genotype(*layers: tuple[str, list[int]]) -> MacroGenotype:
    return MacroGenotype(tuple(MacroLayer(op, tuple(skips)) for op, skips in layers))


def chain(num_layers: int, op: str = "conv_3x3", **overrides: tuple[str, list[int]]) -> MacroGenotype:
    """`num_layers` layers of `op` without skips, except layers given as l<i>=(op, skips)."""
    return genotype(*(overrides.get(f"l{i}", (op, [])) for i in range(num_layers)))


def skips(index: int, value: object):
    """A mutation of genotype data that sets layers[index].skips to `value`."""
    return lambda d: d["layers"][index].__setitem__("skips", value)


# --- genotype and tokens -------------------------------------------------------------------------
@pytest.mark.parametrize("space", SPACES, ids=repr)
def test_json_and_token_round_trips(space: MacroSpace) -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        g = space.sample(rng)
        space.validate(g)
        assert MacroGenotype.from_json(g.to_json()) == g
        assert hash(MacroGenotype.from_json(g.to_json())) == hash(g)
        assert space.genotype_from_dict(json.loads(json.dumps(space.to_dict(g)))) == g
        tokens = space.to_tokens(g)
        assert len(tokens) == len(space.token_choices())
        assert all(t in space.valid_tokens(i) for i, t in enumerate(tokens))
        assert space.from_tokens(tokens) == g


def test_token_table_is_op_then_one_bit_per_earlier_layer() -> None:
    space = MacroSpace(3)
    assert space.token_choices() == [6, 6, 2, 6, 2, 2]
    g = genotype(("conv_3x3", []), ("sep_conv_3x3", [0]), ("max_pool_3x3", [1]))
    # ENAS branch order: conv_3x3=0, sep_conv_3x3=1, ..., max_pool_3x3=5
    assert space.to_tokens(g) == (0, 1, 1, 5, 0, 1)
    with pytest.raises(GenotypeError, match="token 2 is 2; valid tokens at this position are 0..1"):
        space.from_tokens([0, 0, 2, 0, 0, 0])
    with pytest.raises(GenotypeError, match="token 0 is 6; valid tokens at this position are 0..5"):
        space.from_tokens([6, 0, 0, 0, 0, 0])
    with pytest.raises(GenotypeError, match="expected 6 tokens"):
        space.from_tokens([0] * 5)


def test_size_formula_and_enumeration_agree() -> None:
    space = MacroSpace(3)
    assert space.size() == (6 * 1) * (6 * 2) * (6 * 4)
    every = list(space.enumerate())
    assert len(every) == len(set(every)) == space.size()
    assert MacroSpace(12).size() == 6**12 * 2**66  # ~1.6e29, EPNAS's "~2e29"
    with pytest.raises(NotImplementedError, match="too many to enumerate"):
        next(MacroSpace(12).enumerate())


def test_seeded_sampling_is_reproducible_and_fair() -> None:
    space = MacroSpace(12)
    assert [space.sample(np.random.default_rng(7)) for _ in range(3)] == [
        space.sample(np.random.default_rng(7)) for _ in range(3)
    ]
    rng = np.random.default_rng(0)
    samples = [space.sample(rng) for _ in range(200)]
    assert {op for g in samples for op in g.ops()} == set(MACRO_OPS_ENAS)
    bits = [b for g in samples for i, b in enumerate(space.to_tokens(g)) if space.token_choices()[i] == 2]
    assert 0.45 < np.mean(bits) < 0.55  # each skip is a fair coin


def test_readable_string_and_json_layout() -> None:
    g = genotype(("conv_3x3", []), ("sep_conv_5x5", [0]), ("max_pool_3x3", [0, 1]))
    assert str(g) == "0:conv_3x3 1:sep_conv_5x5[+0] 2:max_pool_3x3[+0,1]"
    assert g.to_dict() == {
        "layers": [
            {"op": "conv_3x3", "skips": []},
            {"op": "sep_conv_5x5", "skips": [0]},
            {"op": "max_pool_3x3", "skips": [0, 1]},
        ]
    }
    assert hash(MacroGenotype([MacroLayer("conv_3x3", [])])) == hash(genotype(("conv_3x3", [])))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (skips(3, [5]), r"layers\[3\].skips has 5; skips must be earlier layers 0..2$"),
        (skips(3, [3]), r"layers\[3\].skips has 3; skips must be earlier layers"),
        (skips(0, [0]), r"layers\[0\].skips has 0; .*layer 0 has none"),
        (skips(2, [1, 0]), r"layers\[2\].skips=\[1, 0\] must be sorted"),
        (skips(2, [1, 1]), r"layers\[2\].skips=\[1, 1\] .*without duplicates"),
        (skips(2, ["1"]), r"layers\[2\].skips has '1'; skips must be int"),
        (skips(2, 1), r"layers\[2\].skips must be a list"),
        (lambda d: d["layers"][1].__setitem__("op", 3), r"layers\[1\].op must be an op name, got 3"),
        (lambda d: d["layers"][1].pop("op"), r"layers\[1\] must be an object with 'op' and 'skips'"),
        (lambda d: d.__setitem__("layers", []), r"layers must be a non-empty list"),
        (lambda d: d.__setitem__("layers", 4), r"layers must be a list, got 4"),
        (lambda d: d.pop("layers"), r"must be an object with 'layers'"),
    ],
)
def test_malformed_genotypes_name_the_bad_field(mutate, message) -> None:
    data = chain(4).to_dict()
    mutate(data)
    with pytest.raises(GenotypeError, match=message):
        MacroGenotype.from_dict(data)


def test_space_validation_names_layer_count_and_op_set() -> None:
    with pytest.raises(GenotypeError, match=r"genotype has 4 layers; MacroSpace\(num_layers=12.* has 12"):
        MacroSpace(12).validate(chain(4))
    with pytest.raises(GenotypeError, match=r"layers\[1\].op='identity' is not in op set 'enas_macro'"):
        MacroSpace(3).validate(chain(3, l1=("identity", [0])))
    with pytest.raises(GenotypeError, match="expected a MacroGenotype"):
        MacroSpace(3).validate("0:conv_3x3")  # type: ignore[arg-type]
    with pytest.raises(GenotypeError, match="not valid JSON"):
        MacroGenotype.from_json("{layers")
    with pytest.raises(ValueError, match="unknown macro op set 'enas'"):
        MacroSpace(3, "enas")
    with pytest.raises(ValueError, match=r"unknown: \['identity'\]"):
        MacroSpace(3, ["conv_3x3", "identity"])
    custom = MacroSpace(2, ["conv_5x5", "avg_pool_3x3"])
    assert repr(custom) == "MacroSpace(num_layers=2, op_set=['conv_5x5', 'avg_pool_3x3'])"
    assert repr(MacroSpace()) == "MacroSpace(num_layers=12, op_set='enas_macro')"
    assert custom.token_choices() == [2, 2, 2]


def test_no_symmetries_and_genotype_file(tmp_path) -> None:
    space = MacroSpace(4)
    g = space.sample(np.random.default_rng(1))
    assert space.symmetries(g) == [g] and space.canonical(g) == g
    space.save_genotype(g, tmp_path / "genotype.json")
    payload = json.loads((tmp_path / "genotype.json").read_text())
    assert payload["space"] == "macro" and payload["readable"] == str(g) == space.describe(g)
    assert space.genotype_from_dict(payload["genotype"]) == g


# --- networks ------------------------------------------------------------------------------------
def test_reduction_layers_follow_enas_pool_layers() -> None:
    assert MacroSpace(12).reduction_layers() == (3, 7)
    assert reduction_layers(6) == (1, 3)
    assert reduction_layers(24) == (7, 15)
    assert reduction_layers(3) == (0, 1) and reduction_layers(2) == ()


@pytest.mark.parametrize("num_layers", [6, 12])
@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 8, 8)], ids=["cifar", "digits"])
def test_child_forward_shapes(num_layers: int, shape: tuple[int, int, int]) -> None:
    space = MacroSpace(num_layers)
    g = space.sample(np.random.default_rng(num_layers))
    net = space.build_child(g, Task(10, shape), channels=4, cells_per_stage=3, auxiliary=True)  # extras ignored
    x = torch.randn(2, *shape)
    assert net(x).shape == (2, 10)
    logits, aux = net.forward_with_aux(x)
    assert logits.shape == (2, 10) and aux is None
    net.set_drop_path(0.3)  # a no-op the trainer may call
    # width doubles at each reduction: 4 -> 8 -> 16 channels into the classifier
    assert net.classifier.in_features == 16


def test_gradients_reach_the_stem() -> None:
    space = MacroSpace(6)
    net = space.build_child(space.sample(np.random.default_rng(2)), Task(5, (3, 16, 16)), channels=4)
    torch.nn.functional.cross_entropy(net(torch.randn(4, 3, 16, 16)), torch.tensor([0, 1, 2, 3])).backward()
    grad = net.stem[0].weight.grad
    assert grad is not None and grad.abs().sum() > 0


def test_skip_across_both_reductions() -> None:
    g = chain(12, l11=("sep_conv_3x3", [0, 5]), l9=("avg_pool_3x3", [4]))
    assert needed_reductions(g, (3, 7)) == {3: (0, 3), 7: (0, 4, 5, 7)}
    net = MacroSpace(12).build_child(g, Task(3, (3, 16, 16)), channels=4)
    keys = {k.rsplit(".", 2)[0] for k in net.state_dict() if k.startswith("reductions.")}
    assert keys == {"reductions.3.0", "reductions.3.3", "reductions.7.0", "reductions.7.4", "reductions.7.5",
                    "reductions.7.7"}  # fmt: skip
    net(torch.randn(2, 3, 16, 16)).sum().backward()
    assert net.reductions["7"]["0"].conv_1.weight.grad.abs().sum() > 0
    plain = MacroSpace(12).build_child(chain(12), Task(3, (3, 16, 16)), channels=4)
    assert {k.rsplit(".", 2)[0] for k in plain.state_dict() if k.startswith("reductions.")} == {
        "reductions.3.3",
        "reductions.7.7",
    }


def test_parameter_names_depend_only_on_layer_and_op() -> None:
    space = MacroSpace(6)
    task = Task(10, (3, 16, 16))
    a = space.build_child(chain(6, l2=("sep_conv_5x5", [0, 1]), l4=("conv_5x5", [])), task, channels=4)
    b = space.build_child(chain(6, "avg_pool_3x3", l2=("sep_conv_5x5", []), l0=("conv_3x3", [])), task, channels=4)
    shared = {k: v.shape for k, v in a.state_dict().items() if k.startswith("layers.2.")}
    assert shared and all(k.startswith("layers.2.sep_conv_5x5.") for k in shared)
    assert shared == {k: v.shape for k, v in b.state_dict().items() if k.startswith("layers.2.")}
    assert "layers.4.conv_5x5.0.weight" in a.state_dict() and "layers.0.conv_3x3.0.weight" in b.state_dict()
    assert not any(k.startswith("layers.1.") for k in b.state_dict())  # pools have no parameters


def test_draw_writes_png_and_dot(tmp_path) -> None:
    space = MacroSpace(12)
    g = space.sample(np.random.default_rng(0))
    paths = draw_genotype_pictures(space, g, tmp_path / "pics")
    assert paths == [tmp_path / "pics" / "macro.png"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    dot = (tmp_path / "pics" / "macro.dot").read_text()
    assert dot.startswith('digraph "macro"') and dot.count("style=dashed") == sum(len(x.skips) for x in g.layers)


# --- supernet ------------------------------------------------------------------------------------
def test_supernet_path_equals_child_with_loaded_weights() -> None:
    space = MacroSpace(6)
    task = Task(10, (3, 16, 16))
    torch.manual_seed(0)
    supernet = space.build_supernet(task, channels=4)
    assert supernet.is_supernet and len(supernet.layers[0]) == len(MACRO_OPS_ENAS)
    rng = np.random.default_rng(3)
    with torch.no_grad():  # move the BN running statistics away from their defaults
        for _ in range(3):
            supernet(torch.randn(8, 3, 16, 16), space.sample(rng))
    supernet.eval()
    x = torch.randn(2, 3, 16, 16)
    for _ in range(3):
        g = space.sample(rng)
        child = space.build_child(g, task, channels=4).eval()
        child_keys = set(child.state_dict())
        assert child_keys <= set(supernet.state_dict())
        result = child.load_state_dict(
            {k: v for k, v in supernet.state_dict().items() if k in child_keys}, strict=False
        )
        assert not result.missing_keys
        with torch.no_grad():
            assert torch.allclose(supernet(x, g), child(x), atol=1e-6)


def test_supernet_step_leaves_unsampled_ops_unchanged() -> None:
    space = MacroSpace(6)
    supernet = space.build_supernet(Task(4, (3, 16, 16)), channels=4)
    g = chain(6, "sep_conv_3x3", l5=("conv_3x3", [0, 4]))
    before = {k: v.clone() for k, v in supernet.state_dict().items()}
    opt = torch.optim.SGD(supernet.parameters(), lr=0.1)
    loss = torch.nn.functional.cross_entropy(supernet(torch.randn(4, 3, 16, 16), g), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    opt.step()
    after = supernet.state_dict()
    used = {f"layers.{i}.{layer.op}." for i, layer in enumerate(g.layers)}
    used |= {f"reductions.{r}.{j}." for r, js in needed_reductions(g, supernet.reduction_layers).items() for j in js}
    for key, value in before.items():
        on_path = key.startswith(("stem.", "skip_bns.", "classifier.")) or any(key.startswith(u) for u in used)
        if not on_path:
            assert torch.equal(value, after[key]), key
    assert not torch.equal(before["layers.5.conv_3x3.0.weight"], after["layers.5.conv_3x3.0.weight"])
    assert not torch.equal(before["reductions.3.0.conv_1.weight"], after["reductions.3.0.conv_1.weight"])


def test_network_path_errors() -> None:
    space = MacroSpace(3)
    task = Task(2, (3, 8, 8))
    supernet = space.build_supernet(task, channels=2)
    x = torch.randn(1, 3, 8, 8)
    with pytest.raises(ValueError, match="needs forward"):
        supernet(x)
    with pytest.raises(ValueError, match="genotype has 4 layers; the supernet has 3"):
        supernet(x, chain(4))
    child = space.build_child(chain(3), task, channels=2)
    with pytest.raises(ValueError, match="runs only its own genotype"):
        child(x, chain(3, "max_pool_3x3"))
    with pytest.raises(ValueError, match="only the CIFAR stem"):
        space.build_child(chain(3), Task(2, (3, 8, 8), stem="imagenet"))
    with pytest.raises(ValueError, match="needs num_layers"):
        MacroNetwork(None, num_classes=2)


# --- training ------------------------------------------------------------------------------------
def test_child_trains_with_the_classifier_module() -> None:
    from torch.utils.data import DataLoader, TensorDataset

    from naslab.train.classifier import ClassifierModule

    space = MacroSpace(6)
    net = space.build_child(space.sample(np.random.default_rng(0)), Task(4, (1, 8, 8)), channels=4)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    data = DataLoader(TensorDataset(torch.randn(16, 1, 8, 8), torch.randint(0, 4, (16,))), batch_size=8)
    trainer = quiet_trainer(max_steps=2)
    trainer.fit(ClassifierModule(net, num_classes=4, lr=0.05), train_dataloaders=data)
    assert trainer.global_step == 2
    assert not torch.equal(before["stem.0.weight"], net.state_dict()["stem.0.weight"])


# --- progressive search (EPNAS / PNAS) -------------------------------------------------------------


def test_expand_level_by_level_reaches_every_architecture_exactly_once() -> None:
    space = MacroSpace(3, op_set=["conv_3x3", "max_pool_3x3"])
    level = space.expand(None)
    counts = [len(level)]
    for _ in range(space.max_level() - 1):
        level = [child for parent in level for child in space.expand(parent)]
        counts.append(len(level))
    assert counts == [2, 2 * 2 * 2, 8 * 2 * 4]  # |ops| * 2**l children per parent at layer l
    assert len(set(level)) == len(level) == space.size()  # duplicate-free ...
    assert set(level) == set(space.enumerate())  # ... and exhaustive
    assert space.expand(level[0]) == [] and {space.level(g) for g in level} == {3}


def test_partial_genotypes_are_token_prefixes_and_strict_validation_refuses_them() -> None:
    space = MacroSpace(4)
    full = space.sample(np.random.default_rng(3))
    partial = MacroGenotype(full.layers[:2])
    assert space.to_tokens(full)[: len(space.to_tokens(partial))] == space.to_tokens(partial)
    assert len(space.to_tokens(partial)) == 1 + 2  # layer 0: op; layer 1: op + one skip bit
    space.validate(partial, partial=True)
    with pytest.raises(GenotypeError, match="has 4"):
        space.validate(partial)
    with pytest.raises(GenotypeError, match="at most 4"):
        space.validate(chain(5), partial=True)


def test_supernet_runs_partial_paths_through_the_remaining_reductions() -> None:
    """Every progressive level shares the supernet's weights: a 1-layer path still reaches the classifier."""
    space = MacroSpace(6)  # reductions after layers 1 and 3
    supernet = space.build_supernet(Task(5, (3, 16, 16)), channels=4)
    x = torch.randn(2, 3, 16, 16)
    for layers in range(1, 7):
        genotype = MacroGenotype(chain(6).layers[:layers])
        supernet.zero_grad()
        out = supernet(x, genotype)
        assert out.shape == (2, 5)
        out.sum().backward()
        last = str(layers - 1)
        for r in supernet.reduction_layers:
            if r > layers - 1:  # a stage the partial path stopped before: its reduction of the last output ran
                assert all(p.grad is not None for p in supernet.reductions[str(r)][last].parameters())
        assert supernet.classifier.weight.grad is not None
    with pytest.raises(ValueError, match="the supernet has 6"):
        supernet(x, chain(7))


@pytest.mark.parametrize("seed", [0, 1])
def test_picture_names_layers_and_skips_as_describe(tmp_path, monkeypatch, seed) -> None:
    """Box "j: op" and a filled square (j, i) for every `j:op[+i,...]` of describe(): nothing else."""
    figures = captured(monkeypatch)
    space = MacroSpace(12)
    g = space.sample(np.random.default_rng(seed))
    draw_genotype_pictures(space, g, tmp_path)
    (fig,) = figures
    labels, squares = picture_of(space.describe(g))
    assert boxes(fig) == labels and skip_squares(fig) == squares
    assert_texts_inside(fig)
