"""Channels-last (NHWC, naslab's default layout) computes what NCHW computes, and does not crash.

torch 2.14.1's CPU (oneDNN) weight gradient of a stride-2 1x1 conv segfaults on channels-last
inputs from 48x48 up (found by trying every conv shape of the cell ops: only that one fails).
`naslab.ops.cnn.pointwise_conv2d` reads every second pixel with a stride-1 conv instead; these tests
hold it to the strided conv's numbers, run the shapes that crashed in a subprocess (a segfault
there fails the test instead of killing pytest), and compare every network family's outputs and
gradients in NHWC with NCHW.
"""

from __future__ import annotations

import copy
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from naslab.ops.cnn import OP_SETS, Conv2d, FactorizedReduce, ReLUConvBN, build_op, pointwise_conv2d
from naslab.ops.mixed import MixedOp
from naslab.spaces import MacroSpace, MicroSpace, Task
from naslab.spaces.micro.mixed import search_op
from naslab.train.layout import laid_out, lay_out_network, memory_format
from naslab.train.objectives import ImageObjective

pytestmark = pytest.mark.usefixtures("one_torch_thread")
NHWC = torch.channels_last


@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("size", [7, 8, 15])
def test_pointwise_conv_matches_the_strided_conv_and_its_gradients(stride: int, size: int) -> None:
    """A channels-last input (the rerouted path): the same output (size ceil(H / stride)) and the same
    gradients for input and weight as F.conv2d(stride=stride) on the NCHW input, the reference."""
    torch.manual_seed(0)
    x = torch.randn(3, 5, size, size, requires_grad=True)
    w = torch.randn(4, 5, 1, 1, requires_grad=True)
    reference = F.conv2d(x, w, stride=stride)
    ours = pointwise_conv2d(x.contiguous(memory_format=NHWC), w, stride)
    assert ours.shape == reference.shape == (3, 4, -(-size // stride), -(-size // stride))
    torch.testing.assert_close(ours, reference, rtol=1e-6, atol=1e-6)
    g = torch.randn_like(reference)
    expected = torch.autograd.grad(reference, (x, w), g)
    got = torch.autograd.grad(ours, (x, w), g)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    offset = x[:, :, 1:, 1:]  # FactorizedReduce's second half reads an offset view
    torch.testing.assert_close(
        pointwise_conv2d(offset.contiguous(memory_format=NHWC)[:, :, :, :], w, stride),
        F.conv2d(offset, w, stride=stride),
        rtol=1e-6,
        atol=1e-6,
    )


def test_an_nchw_input_keeps_the_strided_kernel_bit_for_bit() -> None:
    """`channels_last=false` computes exactly what naslab computed before the workaround."""
    torch.manual_seed(0)
    x, w = torch.randn(4, 6, 12, 12), torch.randn(3, 6, 1, 1)
    assert torch.equal(pointwise_conv2d(x, w, 2), F.conv2d(x, w, stride=2))
    assert torch.equal(pointwise_conv2d(x[:, :, 1:, 1:], w, 2), F.conv2d(x[:, :, 1:, 1:], w, stride=2))


def test_conv2d_keeps_nn_conv2d_parameters_and_only_reroutes_strided_pointwise() -> None:
    """Same state-dict keys as nn.Conv2d (old checkpoints load); other convs are untouched."""
    ours, torchs = Conv2d(4, 6, 1, stride=2, bias=False), nn.Conv2d(4, 6, 1, stride=2, bias=False)
    assert ours.state_dict().keys() == torchs.state_dict().keys()
    torchs.load_state_dict(ours.state_dict())
    x = torch.randn(2, 4, 10, 10)
    torch.testing.assert_close(ours(x), torchs(x))
    calls = []
    original = F.conv2d

    def spy(inp, weight, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append((tuple(inp.shape[-2:]), args[1] if len(args) > 1 else kwargs.get("stride", 1)))
        return original(inp, weight, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(F, "conv2d", spy)
        Conv2d(4, 6, 1, stride=2, bias=False)(x.contiguous(memory_format=NHWC))
        Conv2d(4, 6, 3, stride=2, padding=1, bias=False)(x)
        Conv2d(4, 6, 1, stride=2, bias=False)(x)
    # channels-last: the strided 1x1 conv reads a 5x5 input at stride 1; the 3x3 conv is nn.Conv2d's own
    # call; an NCHW input keeps the strided 1x1 kernel
    assert calls[0][0] == (5, 5) and calls[1] == ((10, 10), (2, 2)) and calls[2] == ((10, 10), 2)


CRASHING_SHAPES = [(2, 8, 56, 56), (16, 3, 48, 48), (2, 8, 64, 64)]


def test_the_shapes_that_crashed_train_in_channels_last() -> None:
    """FactorizedReduce, a stride-2 conv_1x1 (NAO's op) and a whole NAO-op child at 56x56, in NHWC,
    forward and backward in a child process: a segfault is rc -11 there, not a dead test run."""
    code = textwrap.dedent(
        f"""
        import torch
        torch.set_num_threads(1)
        from naslab.ops.cnn import FactorizedReduce, ReLUConvBN
        from naslab.spaces import MicroSpace, Task
        import numpy as np
        for n, c, h, w in {CRASHING_SHAPES}:
            for layer in (FactorizedReduce(c, 2 * c), ReLUConvBN(c, c, 1, 2, 0)):
                layer = layer.to(memory_format=torch.channels_last)
                x = torch.randn(n, c, h, w).contiguous(memory_format=torch.channels_last).requires_grad_()
                layer(x).sum().backward()
                assert layer.conv_1.weight.grad is not None if hasattr(layer, "conv_1") else True
        space = MicroSpace(2, "nao")
        net = space.build_child(space.sample(np.random.default_rng(0)), Task(10, (3, 56, 56)), channels=8)
        net = net.to(memory_format=torch.channels_last)
        net(torch.randn(2, 3, 56, 56).contiguous(memory_format=torch.channels_last)).sum().backward()
        print("trained")
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0 and "trained" in out, f"rc {proc.returncode}: {err[-2000:]}"


def _outputs_and_gradients(net: nn.Module, x: torch.Tensor, layout: torch.memory_format, *args) -> list[torch.Tensor]:  # type: ignore[no-untyped-def]
    """Logits and every parameter's gradient (NCHW-contiguous copies) of a deep copy laid out in `layout`."""
    net = lay_out_network(copy.deepcopy(net), layout)
    x = laid_out(x.clone(), layout).requires_grad_()
    out = net(x, *args)
    loss = F.cross_entropy(out, torch.arange(out.size(0)) % out.size(1))
    params = [p for p in net.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, [x, *params], allow_unused=True)
    return [out.detach()] + [torch.zeros_like(p) if g is None else g.contiguous() for p, g in zip([x, *params], grads)]


def _assert_same(nchw: list[torch.Tensor], nhwc: list[torch.Tensor]) -> None:
    """Equal within float32 rounding of differently ordered sums: each tensor to 1e-4 of its own scale,
    plus 1e-6 for gradients that are zero in exact arithmetic (a bias before BatchNorm: ~1e-8 of noise)."""
    assert len(nchw) == len(nhwc)
    for a, b in zip(nchw, nhwc):
        scale = float(a.abs().max())
        assert float((a - b).abs().max()) <= 1e-4 * scale + 1e-6, (float((a - b).abs().max()), scale)


def _networks() -> list[tuple[str, nn.Module, tuple[int, ...], tuple]]:  # type: ignore[type-arg]
    rng = np.random.default_rng(3)
    task = Task(10, (3, 16, 16))
    out = []
    for op_set in ("darts", "nao", "enas"):
        space = MicroSpace(3, op_set)
        genotype = space.sample(rng)
        child = space.build_child(genotype, task, channels=8, cells_per_stage=1, auxiliary=True)
        out.append((f"micro child ({op_set} ops)", child, task.input_shape, ()))
    enas = MicroSpace(3, "enas")
    out.append(("ENAS micro supernet", enas.build_supernet(task, channels=8), task.input_shape, (enas.sample(rng),)))
    macro = MacroSpace(4)
    genotype = macro.sample(rng)
    out.append(("macro child", macro.build_child(genotype, task, channels=8), task.input_shape, ()))
    out.append(("ENAS macro supernet", macro.build_supernet(task, channels=8), task.input_shape, (genotype,)))
    darts = MicroSpace(4, "darts", "all")
    mixed = darts.build_mixed_supernet(task, channels=8, cells_per_stage=1)
    weights = {
        k: torch.softmax(torch.randn(*s, generator=torch.Generator().manual_seed(0)), -1)
        for k, s in mixed.alpha_shapes.items()
    }
    out.append(("DARTS mixed supernet", mixed, task.input_shape, (weights,)))
    return out


@pytest.mark.parametrize("index", range(7))
def test_every_network_family_computes_the_same_in_channels_last(index: int) -> None:
    """Outputs and all gradients (input and every weight) of NHWC equal NCHW's, in training mode."""
    name, net, shape, args = _networks()[index]
    torch.manual_seed(0)
    x = torch.randn(4, *shape)
    nchw = _outputs_and_gradients(net, x, torch.contiguous_format, *args)
    torch.manual_seed(0)
    nhwc = _outputs_and_gradients(net, x, NHWC, *args)
    _assert_same(nchw, nhwc)


def test_mixed_op_shares_the_relu_skips_the_zero_op_and_keeps_the_plain_sums_numbers() -> None:
    """DARTS' MixedOp is sum_o w_o * o(x) (Liu et al. Eqn. 1): the same output and gradients (input,
    mixing weights, op weights) as that sum written out, while the backward pass stores less."""
    torch.manual_seed(0)
    ops = OP_SETS["darts"]  # the 8 DARTS ops: none, pools, identity, separable and dilated convolutions
    for stride in (1, 2):
        mixed = MixedOp([search_op(op, 6, stride) for op in ops])
        x = torch.randn(2, 6, 8, 8, requires_grad=True)
        w = torch.softmax(torch.randn(len(ops)), 0).requires_grad_()
        params = list(mixed.parameters())

        def plain() -> torch.Tensor:
            return sum(wi * op(x) for wi, op in zip(w, mixed.ops))  # type: ignore[return-value]

        saved: dict[str, int] = {}
        for name, fn in (("plain", plain), ("mixed", lambda: mixed(x, w))):
            storage: set[int] = set()

            def pack(t: torch.Tensor, storage: set[int] = storage) -> torch.Tensor:
                storage.add(t.untyped_storage().data_ptr())
                return t

            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                out = fn()
            saved[name] = len(storage)
            g = torch.autograd.grad(out.sum() + (out**2).mean(), [x, w, *params], allow_unused=True)
            if name == "plain":
                reference = (out.detach(), g)
            else:
                torch.testing.assert_close(out.detach(), reference[0], rtol=1e-6, atol=1e-6)
                for a, b in zip(g, reference[1]):
                    if a is None or b is None:  # an op weight the stride-2 zero op has none of
                        assert a is None and b is None
                    else:
                        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        # four convolutions' ReLUs become one, and the zero op's product is gone
        assert saved["mixed"] <= saved["plain"] - 4, saved


def test_image_objective_lays_out_batches_and_only_images() -> None:
    nhwc, nchw = ImageObjective(channels_last=True), ImageObjective(channels_last=False)
    x = torch.randn(2, 3, 4, 4)
    assert nhwc.lay_out(x).is_contiguous(memory_format=NHWC) and not x.is_contiguous(memory_format=NHWC)
    assert nchw.lay_out(x).is_contiguous()
    v = torch.randn(2, 5)
    assert nhwc.lay_out(v) is v
    assert memory_format(True) is NHWC and memory_format(False) is torch.contiguous_format


def test_factorized_reduce_and_strided_conv_1x1_keep_their_outputs() -> None:
    """Their old formulation (F.conv2d at stride 2, NCHW) is the reference."""
    torch.manual_seed(0)
    fr = FactorizedReduce(4, 6)
    x = torch.randn(2, 4, 10, 10)
    relu = F.relu(x)
    expected = fr.bn(
        torch.cat(
            [F.conv2d(relu, fr.conv_1.weight, stride=2), F.conv2d(relu[:, :, 1:, 1:], fr.conv_2.weight, stride=2)], 1
        )
    )
    torch.testing.assert_close(fr(x), expected)
    conv = ReLUConvBN(4, 4, 1, 2, 0)
    torch.testing.assert_close(conv(x), conv[2](F.conv2d(relu, conv[1].weight, stride=2)))
    assert build_op("conv_1x1", 4, 2)(x).shape == (2, 4, 5, 5)
