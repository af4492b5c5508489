"""The NASES macro space (Liu's NASES paper): decoding rules, validity of the whole box, tokens, identity, networks.

Every one of 10,000 uniform vectors is decoded and checked structurally (ops, kernels, filters and
skips recomputed independently from the closeness rule); networks are built and run forward /
backward for a deterministic subset of 50 of them plus 6 extreme corners (building all 10,000 would
take minutes), with tiny widths (channels=4, so filter counts 4 / 8 / 12 / 16).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from naslab.ops.cnn import Pool, ReLUConvBN, SepConv
from naslab.plots.genotype import draw_genotype_pictures
from naslab.spaces.base import GenotypeError, Task
from naslab.spaces.nases.network import NASES_KINDS, NASESNetwork
from naslab.spaces.nases.space import FIELDS, PAPER_RULES, NASESGenotype, NASESSpace
from tests.plots.figure_checks import assert_texts_inside
from tests.plots.test_chain_plot import boxes, captured, picture_of, skip_squares

CONFIG = Path(__file__).resolve().parents[3] / "conf" / "space" / "nases.yaml"
SPACE = NASESSpace()
ONE = NASESSpace(num_layers=1, reduce_after=[])


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def vector(*layers: tuple[float, float, float, float]) -> NASESGenotype:
    """A genotype from per-layer (filters, filter size, kernel type, connection coefficient)."""
    return NASESGenotype(tuple(v for layer in layers for v in layer))


def corners() -> dict[str, NASESGenotype]:
    n = SPACE.num_values
    return {
        "zeros": NASESGenotype((0.0,) * n),
        "thirties": NASESGenotype((30.0,) * n),
        "alternating": NASESGenotype(tuple(30.0 * (i % 2) for i in range(n))),
        "alternating_other": NASESGenotype(tuple(30.0 * ((i + 1) % 2) for i in range(n))),
        "layers_alternating": NASESGenotype(tuple(30.0 * ((i // 4) % 2) for i in range(n))),
        "thresholds": NASESGenotype(tuple([7.0, 10.0, 7.0, 0.0, 7.5, 20.0, 15.0, 3.0, 22.5, 10.0, 22.0, 6.0] * 5)),
    }


# --- decoding rules, by hand ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (0, "sep_conv"),
        (7, "sep_conv"),  # paper: "<= 7 assigns depthwise-separable convolution"
        (7.0001, "conv"),  # paper: "> 7 or <= 15 assigns convolution"
        (15, "conv"),
        (15.0001, "max_pool"),
        (22, "max_pool"),
        (22.0001, "avg_pool"),
        (30, "avg_pool"),
    ],
)
def test_kernel_type_thresholds(value: float, kind: str) -> None:
    (layer,) = ONE.decode(vector((0, 0, value, 0)))
    assert layer.kind == kind


@pytest.mark.parametrize(("value", "kernel"), [(0, 3), (10, 3), (10.0001, 5), (15, 5), (20, 5), (20.0001, 7), (30, 7)])
def test_filter_size_thresholds(value: float, kernel: int) -> None:
    (layer,) = ONE.decode(vector((0, value, 0, 0)))
    assert layer.kernel == kernel  # paper: "<= 10 assigns to the 3x3 filter size"


@pytest.mark.parametrize(
    ("value", "filters"),
    [(0, 64), (7, 64), (7.5, 64), (7.5001, 128), (15, 128), (15.0001, 192), (22.5, 192), (22.5001, 256), (30, 256)],
)
def test_filter_count_thresholds(value: float, filters: int) -> None:
    (layer,) = ONE.decode(vector((value, 0, 0, 0)))
    assert layer.filters == filters


def test_hand_decoded_network_with_skips() -> None:
    space = NASESSpace(num_layers=6, reduce_after=[2])
    g = vector(
        (0, 0, 0, 2),  # sep_conv 3x3, 64
        (7.5001, 10.0001, 7.0001, 5),  # conv 5x5, 128; |5 - 2| = 3 connects to layer 0 (the paper's 2..5)
        (15.0001, 30, 15.0001, 8.0001),  # max_pool 7x7, 192; 3.0001 from layer 1, 6.0001 from 0: none
        (30, 20, 22.0001, 11),  # avg_pool 5x5, 256; 2.9999 from layer 2 only
        (22.5, 15, 30, 0),  # avg_pool 5x5, 192; 2 from layer 0 only (11 is too far from 0)
        (7, 20.0001, 7, 3.0001),  # sep_conv 7x7, 64; 1.0001 from layer 0, 1.9999 from 1, 3.0001 from 4: no
    )
    assert space.describe(g) == (
        "0:sep_conv_3x3/64 1:conv_5x5/128[+0] 2:max_pool_7x7/192 3:avg_pool_5x5/256[+2] "
        "4:avg_pool_5x5/192[+0] 5:sep_conv_7x7/64[+0,1]"
    )
    assert [layer.op for layer in g.decoded()] == [
        "sep_conv_3x3",
        "conv_5x5",
        "max_pool_7x7",
        "avg_pool_5x5",
        "avg_pool_5x5",
        "sep_conv_7x7",
    ]
    # channels=8 scales 64 / 128 / 192 / 256 to 8 / 16 / 24 / 32; a layer's output concatenates its skips' h.
    assert space.widths(g, channels=8) == [8, 16, 24, 32, 24, 8]
    net = space.build_child(g, Task(10, (3, 8, 8)), channels=8)
    assert isinstance(net, NASESNetwork)
    assert net.stem[0].weight.shape == (8, 3, 3, 3)
    assert "0" not in net.projections  # no 1x1 conv before the first layer (Liu's NASES paper A.3)
    in_widths = {i: net.projections[str(i)][1].weight.shape[1] for i in range(1, 6)}
    assert in_widths == {1: 8, 2: 16 + 8, 3: 24, 4: 32 + 24, 5: 24 + 8}
    assert [net.projections[str(i)][1].weight.shape[0] for i in range(1, 6)] == [16, 24, 32, 24, 8]
    assert net.classifier.in_features == 8 + 8 + 16
    assert isinstance(net.layers[1], ReLUConvBN) and net.layers[1][1].weight.shape == (16, 16, 5, 5)
    assert isinstance(net.layers[1][0], nn.ReLU) and isinstance(net.layers[1][2], nn.BatchNorm2d)  # ReLU-conv-BN
    assert isinstance(net.layers[2], Pool) and (net.layers[2].kind, net.layers[2].kernel) == ("max", 7)
    assert isinstance(net.layers[3], Pool) and (net.layers[3].kind, net.layers[3].kernel) == ("avg", 5)
    assert isinstance(net.layers[5], SepConv)  # separable conv applied twice (Liu's NASES paper A.1)
    depthwise = [m for m in net.layers[5].modules() if isinstance(m, nn.Conv2d) and m.groups == 8]
    assert [m.kernel_size for m in depthwise] == [(7, 7), (7, 7)]
    # He initialisation (fan-out): std sqrt(2 / (16 * 25)) = 0.0707 for the 5x5 conv; PyTorch's
    # default would give 1 / sqrt(3 * 16 * 25) = 0.0289.
    assert net.layers[1][1].weight.std().item() == pytest.approx(math.sqrt(2 / 400), rel=0.15)
    out = net(torch.randn(2, 3, 8, 8))
    assert out.shape == (2, 10)


def test_connection_window_boundaries() -> None:
    space = NASESSpace(num_layers=3, reduce_after=[])

    def skips(c0: float, c1: float, c2: float) -> list[tuple[int, ...]]:
        return [layer.skips for layer in space.decode(vector((0, 0, 0, c0), (0, 0, 0, c1), (0, 0, 0, c2)))]

    assert skips(2, 5, 30) == [(), (0,), ()]  # the paper's example: layers one and two, 2 and 5
    assert skips(0, 3.0001, 30) == [(), (), ()]
    assert skips(0.1, 3.1, 30) == [(), (0,), ()]  # 3.0000000000000004 in floats: still within 3
    assert skips(0, 3, 6) == [(), (0,), (1,)]  # 6 is 6 from layer 0
    assert skips(10, 10, 10) == [(), (0,), (0, 1)]
    wide = NASESSpace(num_layers=3, reduce_after=[], connect_window=30)
    assert [layer.skips for layer in wide.decode(vector((0, 0, 0, 0), (0, 0, 0, 30), (0, 0, 0, 15)))] == [
        (),
        (0,),
        (0, 1),
    ]


# --- the whole box decodes -----------------------------------------------------------------------
def test_ten_thousand_uniform_vectors_decode_to_valid_architectures() -> None:
    rng = np.random.default_rng(0)
    draws = rng.uniform(0, 30, size=(10_000, SPACE.num_values))
    kernels = {3, 5, 7}
    choices = set(PAPER_RULES.filter_choices)
    kinds_seen: set[str] = set()
    skip_counts = []
    for row in draws:
        g = NASESGenotype(tuple(row.tolist()))
        layers = SPACE.decode(g)
        assert len(layers) == 15
        close = np.abs(row[3::4, None] - row[None, 3::4]) <= 3.0 + 1e-9  # the closeness rule, recomputed
        for j, layer in enumerate(layers):
            assert layer.kind in NASES_KINDS and layer.kernel in kernels and layer.filters in choices
            assert layer.skips == tuple(int(i) for i in np.flatnonzero(close[j, :j]))
            kinds_seen.add(layer.kind)
        skip_counts.append(sum(len(layer.skips) for layer in layers))
    assert kinds_seen == set(NASES_KINDS)
    # P(|U - V| <= 3) for U, V uniform on [0, 30] is 0.19: 105 pairs give about 20 skips per network.
    assert 18 < np.mean(skip_counts) < 22
    assert min(min(SPACE.widths(NASESGenotype(tuple(r.tolist())), channels=1)) for r in draws[:100]) == 1


def _forward_backward(space: NASESSpace, g: NASESGenotype, shape: tuple[int, int, int, int], classes: int) -> None:
    net = space.build_child(g, Task(classes, shape[1:]), channels=4)
    logits = net(torch.randn(*shape))
    assert logits.shape == (shape[0], classes)
    assert torch.isfinite(logits).all()
    logits.square().mean().backward()
    grad = net.stem[0].weight.grad  # the first convolution: layer 0 may be a parameter-free pool
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def _build_subset() -> list[tuple[str, NASESGenotype]]:
    rng = np.random.default_rng(1)
    sampled = [(f"sample{i}", SPACE.sample(rng)) for i in range(50)]
    return list(corners().items()) + sampled


@pytest.mark.parametrize(("name", "genotype"), _build_subset(), ids=lambda x: x if isinstance(x, str) else "")
def test_networks_build_and_train_on_small_and_cifar_inputs(name: str, genotype: NASESGenotype) -> None:
    SPACE.validate(genotype)
    torch.manual_seed(0)
    _forward_backward(SPACE, genotype, (2, 1, 8, 8), 7)
    _forward_backward(SPACE, genotype, (2, 3, 32, 32), 10)


def test_corners_decode_as_expected() -> None:
    c = corners()
    zeros = SPACE.decode(c["zeros"])
    assert {layer.op for layer in zeros} == {"sep_conv_3x3"} and {layer.filters for layer in zeros} == {64}
    assert [layer.skips for layer in zeros] == [tuple(range(j)) for j in range(15)]  # equal coefficients: dense
    thirties = SPACE.decode(c["thirties"])
    assert {(layer.op, layer.filters) for layer in thirties} == {("avg_pool_7x7", 256)}
    alternating = SPACE.decode(c["alternating"])  # filters 0, size 30, type 0, coefficient 30 in every layer
    assert {(layer.op, layer.filters) for layer in alternating} == {("sep_conv_7x7", 64)}
    by_layer = SPACE.decode(c["layers_alternating"])  # coefficients 0, 30, 0, ...: even layers join even ones
    assert by_layer[4].skips == (0, 2) and by_layer[5].skips == (1, 3)
    assert [layer.op for layer in by_layer[:2]] == ["sep_conv_3x3", "avg_pool_7x7"]


def test_reductions_and_odd_input_sizes() -> None:
    g = SPACE.sample(np.random.default_rng(3))
    for reduce_after, side, expected in [([4, 9], 8, 2), ([], 9, 9), ([0, 1, 2], 9, 2), ([4, 9], 11, 3)]:
        space = NASESSpace(reduce_after=reduce_after, reduction="avg")
        net = space.build_child(g, Task(3, (2, side, side)), channels=2)
        seen: list[int] = []
        net.layers[14].register_forward_hook(lambda m, i, o: seen.append(o.shape[-1]))
        assert net(torch.randn(1, 2, side, side)).shape == (1, 3)
        assert seen == [expected]  # ceil-mode 2x2 pooling: 11 -> 6 -> 3


# --- tokens, identity, serialisation -------------------------------------------------------------
def test_token_round_trip() -> None:
    assert SPACE.token_choices() == [31] * 60
    assert SPACE.token_kinds()[:5] == list(FIELDS) + ["filters"]
    rng = np.random.default_rng(4)
    for _ in range(50):
        g = SPACE.sample(rng)
        tokens = SPACE.to_tokens(g)
        assert all(t in SPACE.valid_tokens(i) for i, t in enumerate(tokens))
        assert all(abs(t - v) <= 0.5 for t, v in zip(tokens, g.values))
        back = SPACE.from_tokens(tokens)
        assert all(v == int(v) for v in back.values)
        assert SPACE.to_tokens(back) == tokens
        assert SPACE.from_tokens(SPACE.to_tokens(back)) == back
    g = NASESGenotype((0.49, 0.5, 7.5, 29.5) + (30.0,) * 56)
    assert SPACE.to_tokens(g)[:5] == (0, 1, 8, 30, 30)  # halves round up, 30 stays 30
    with pytest.raises(GenotypeError, match="token 3 is 31; valid tokens at this position are 0..30"):
        SPACE.from_tokens([0, 0, 0, 31] + [0] * 56)
    with pytest.raises(GenotypeError, match="expected 60 tokens"):
        SPACE.from_tokens([0] * 59)


def test_json_round_trip_and_hash() -> None:
    g = SPACE.sample(np.random.default_rng(5))
    assert NASESGenotype.from_json(g.to_json()) == g and hash(NASESGenotype.from_json(g.to_json())) == hash(g)
    assert SPACE.genotype_from_dict(json.loads(json.dumps(SPACE.to_dict(g)))) == g
    assert NASESGenotype([1, 2.5] + [0] * 58) == NASESGenotype(tuple([1.0, 2.5] + [0.0] * 58))
    assert len({g, NASESGenotype(g.values)}) == 1


def test_key_is_the_decoded_architecture() -> None:
    a = vector(*[(1, 1, 1, 2.0 * j) for j in range(15)])  # neighbours 2 apart: layer j joins j-1 only
    b = vector(*[(7.4, 9.9, 6.9, 2.0 * j + 1.5) for j in range(15)])  # same bins, same closeness pattern
    c = vector(*[(1, 1, 8, 2.0 * j) for j in range(15)])  # conv instead of sep_conv
    d = vector((1, 1, 1, 10), *[(1, 1, 1, 2.0 * j) for j in range(1, 15)])  # layer 0 moved away: other skips
    assert a != b and SPACE.key(a) == SPACE.key(b)
    assert SPACE.key(a) != SPACE.key(c) and SPACE.key(a) != SPACE.key(d)
    assert [layer.skips for layer in SPACE.decode(a)] == [()] + [(j - 1,) for j in range(1, 15)]
    assert SPACE.decode(d)[1].skips == () and SPACE.decode(d)[4].skips == (0, 3)
    rng = np.random.default_rng(6)
    for _ in range(100):
        g = SPACE.sample(rng)
        canon = SPACE.canonical(g)
        assert SPACE.key(canon) == SPACE.key(g)  # snapping never changes the network
        assert SPACE.canonical(canon) == canon
        assert all(float(v).is_integer() for i, v in enumerate(canon.values) if i % 4 != 3)
        assert canon.values[3::4] == g.values[3::4]
    # representatives: the integer nearest each bin's middle
    assert SPACE.canonical(a).values[:4] == (4.0, 5.0, 3.0, 0.0)
    assert SPACE.canonical(NASESGenotype((30.0,) * 60)).values[:3] == (26.0, 25.0, 26.0)


def test_size_is_decisions_times_skip_patterns() -> None:
    assert SPACE.size() == 48**15 * 2**105
    assert NASESSpace(num_layers=2).size() == 48**2 * 2


def test_default_reductions_follow_the_depth() -> None:
    assert SPACE.reduce_after == (4, 9)
    assert NASESSpace(num_layers=6).reduce_after == (1, 3)
    assert NASESSpace(num_layers=2).reduce_after == (0,)
    assert NASESSpace(num_layers=1).reduce_after == ()
    assert NASESSpace(reduce_after=[9, 4, 4]).reduce_after == (4, 9)


# --- validation and construction ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("values", "message"),
    [
        ((0.0,) * 59, r"genotype has 59 values; space=nases needs 60 \(15 layers x filters"),
        ((0.0,) * 17 + (math.nan,) + (0.0,) * 42, r"values\[17\] \(layer 4 filter_size\) is nan"),
        ((0.0,) * 2 + (math.inf,) + (0.0,) * 57, r"values\[2\] \(layer 0 kernel_type\) is inf"),
        ((0.0,) * 59 + (30.0001,), r"values\[59\] \(layer 14 connection\) is 30.0001; must be in \[0, 30\]"),
        ((-0.1,) + (0.0,) * 59, r"values\[0\] \(layer 0 filters\) is -0.1; must be in \[0, 30\]"),
    ],
)
def test_validation_errors_are_one_line(values: tuple[float, ...], message: str) -> None:
    with pytest.raises(GenotypeError, match=message) as err:
        SPACE.validate(NASESGenotype(values))
    assert "\n" not in str(err.value)


def test_malformed_genotype_data() -> None:
    cases = [
        ({"values": [0, "a"]}, r"values\[1\] is 'a'; values must be numbers"),
        ({"values": [True]}, r"values\[0\] is True"),
        ({"vals": []}, "must be an object with 'values'"),
        ({"values": 3}, "values must be a list of numbers"),
    ]
    for data, message in cases:
        with pytest.raises(GenotypeError, match=message) as err:
            SPACE.genotype_from_dict(data)
        assert "\n" not in str(err.value)
    with pytest.raises(GenotypeError, match="not valid JSON"):
        NASESGenotype.from_json("{")
    with pytest.raises(GenotypeError, match="expected a NASESGenotype"):
        SPACE.validate((0.0,) * 60)  # type: ignore[arg-type]


def test_bad_rules_and_tasks_are_refused() -> None:
    with pytest.raises(ValueError, match="3 thresholds need 4 choices"):
        NASESSpace(filter_choices=[1, 2, 3])
    with pytest.raises(ValueError, match="strictly ascending"):
        NASESSpace(size_thresholds=[20, 10])
    with pytest.raises(ValueError, match=r"must lie in \[0, 30\)"):
        NASESSpace(size_thresholds=[10, 30])
    with pytest.raises(ValueError, match="odd positive"):
        NASESSpace(size_choices=[3, 4, 7])
    with pytest.raises(ValueError, match="unknown kernel types"):
        NASESSpace(type_choices=["conv", "sep_conv", "identity", "max_pool"])
    with pytest.raises(ValueError, match="reduce_after must name layers"):
        NASESSpace(reduce_after=[15])
    g = SPACE.sample(np.random.default_rng(7))
    with pytest.raises(ValueError, match="space=nases builds image networks"):
        SPACE.build_child(g, Task(10, (), "text", "text"))
    with pytest.raises(ValueError, match="only the CIFAR stem"):
        SPACE.build_child(g, Task(10, (3, 224, 224), "imagenet"))


def test_config_instantiates_the_default_space() -> None:
    space = instantiate(OmegaConf.load(CONFIG))
    assert isinstance(space, NASESSpace)
    assert repr(space) == repr(SPACE)
    g = space.sample(np.random.default_rng(8))
    space.validate(g)
    assert space.describe(g) == SPACE.describe(g)
    custom = instantiate(OmegaConf.merge(OmegaConf.load(CONFIG), {"num_layers": 3, "connect_window": 0.5}))
    assert custom.num_values == 12 and custom.rules.connect_window == 0.5


def test_draw_writes_png_and_dot(tmp_path: Path) -> None:
    space = NASESSpace(num_layers=4, reduce_after=[1])
    g = vector((0, 0, 0, 0), (8, 11, 8, 1), (16, 21, 16, 30), (23, 0, 23, 2))
    (png,) = draw_genotype_pictures(space, g, tmp_path)
    assert png == tmp_path / "nases.png" and png.stat().st_size > 0
    dot = (tmp_path / "nases.dot").read_text()
    assert "sep_conv_3x3/64" in dot and "avg_pool_3x3/256" in dot
    assert "L0 -> L1 [style=dashed" in dot and "L1 -> L3 [style=dashed" in dot and "L0 -> L3 [style=dashed" in dot
    assert "L2 -> L3 [style=dashed" not in dot


@pytest.mark.slow
def test_two_thousand_uniform_vectors_build_networks_that_run_forward() -> None:
    """Each of 2,000 uniform draws builds (1 channel per filter unit) and maps an 8x8 image to 10 finite
    logits. 10,000 draws are decoded and validated above in seconds; building and running one costs 9 ms,
    so 10,000 here took 83 s of the suite for what 2,000 already cover (every op, filter count and skip
    pattern of the decoder appears hundreds of times)."""
    draws = np.random.default_rng(2).uniform(0, 30, size=(2_000, SPACE.num_values))
    task, image = Task(10, (1, 8, 8)), torch.randn(1, 1, 8, 8)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            for row in draws:
                logits = SPACE.build_child(NASESGenotype(tuple(row.tolist())), task, channels=1).eval()(image)
                assert logits.shape == (1, 10) and torch.isfinite(logits).all()
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("seed", [0, 3])
def test_picture_names_layers_and_skips_as_describe(tmp_path: Path, monkeypatch, seed: int) -> None:
    """Box "j: op/filters" and a filled square (j, i) for every `j:op/filters[+i,...]` of describe()."""
    figures = captured(monkeypatch)
    g = SPACE.sample(np.random.default_rng(seed))
    draw_genotype_pictures(SPACE, g, tmp_path)
    (fig,) = figures
    labels, squares = picture_of(SPACE.describe(g))
    assert len(labels) == 15 and boxes(fig) == labels and skip_squares(fig) == squares
    assert_texts_inside(fig)
