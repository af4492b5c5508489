"""bf16 autocast (trainer=gpu's precision, exercised here on a CPU) and torch.compile compute what float32
eager computes, within the tolerances stated per test; parameters stay float32."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from naslab.spaces import MacroSpace, MicroSpace, Task
from naslab.train.classifier import ClassifierModule
from tests.lightning_helpers import quiet_trainer

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TASK = Task(10, (3, 16, 16))


def _networks() -> dict[str, tuple[torch.nn.Module, tuple]]:  # type: ignore[type-arg]
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    micro = MicroSpace(3, "enas")
    macro = MacroSpace(4)
    darts = MicroSpace(4, "darts", "all")
    mixed = darts.build_mixed_supernet(TASK, channels=8, cells_per_stage=1)
    weights = {k: torch.softmax(torch.randn(*s), -1) for k, s in mixed.alpha_shapes.items()}
    return {
        "micro child": (micro.build_child(micro.sample(rng), TASK, channels=8), ()),
        "ENAS micro supernet": (micro.build_supernet(TASK, channels=8), (micro.sample(rng),)),
        "macro child": (macro.build_child(macro.sample(rng), TASK, channels=8), ()),
        "DARTS mixed supernet": (mixed, (weights,)),
    }


def _run(net: torch.nn.Module, args: tuple, bf16: bool) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[type-arg]
    """(logits as float32, every parameter gradient concatenated)."""
    net.zero_grad()
    x = torch.randn(8, *TASK.input_shape, generator=torch.Generator().manual_seed(1))
    y = torch.arange(8) % 10
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        logits = net(x, *args)
        loss = F.cross_entropy(logits, y)
    loss.backward()
    grads = torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None])
    return logits.float().detach(), grads


@pytest.mark.parametrize("name", list(_networks()))
def test_bf16_autocast_keeps_predictions_and_gradient_directions(name: str) -> None:
    """Logits within 5 % (relative L2) and the gradient at cosine > 0.95 of float32's, params float32.

    Measured: logits 1-3 % off, gradient cosine 0.97 (micro child, DARTS mixed supernet) to > 0.99 (the
    others): bf16 keeps 8 bits of mantissa, and BatchNorm's batch statistics of 8 images amplify it."""
    net, args = _networks()[name]
    net.train()
    reference = _run(net, args, bf16=False)
    got = _run(net, args, bf16=True)
    assert all(p.dtype == torch.float32 for p in net.parameters())
    relative = float((got[0] - reference[0]).norm() / reference[0].norm())
    cosine = float(F.cosine_similarity(got[1], reference[1], 0))
    assert relative < 0.05 and cosine > 0.95, (relative, cosine)


def _fit(precision: str, compile: bool = False) -> ClassifierModule:
    torch.manual_seed(0)
    space = MicroSpace(2, "enas")
    net = space.build_child(space.sample(np.random.default_rng(0)), TASK, channels=8, auxiliary=True)
    module = ClassifierModule(net, 10, epochs=1, auxiliary_weight=0.4, compile=compile)
    g = torch.Generator().manual_seed(2)
    data = TensorDataset(torch.randn(32, *TASK.input_shape, generator=g), torch.randint(0, 10, (32,), generator=g))
    trainer = quiet_trainer(max_epochs=1, precision=precision)
    trainer.fit(module, DataLoader(data, batch_size=8))
    return module


def test_a_child_trains_under_bf16_mixed_with_float32_weights_close_to_float32_training() -> None:
    bf16, fp32 = _fit("bf16-mixed"), _fit("32-true")
    a = torch.cat([p.detach().flatten() for p in bf16.parameters()])
    b = torch.cat([p.detach().flatten() for p in fp32.parameters()])
    assert a.dtype == torch.float32
    assert float((a - b).norm() / b.norm()) < 0.01  # four SGD steps: weights within 1 % of float32's


@pytest.mark.slow
def test_a_compiled_child_computes_what_the_eager_one_does_and_keeps_its_state_dict_keys() -> None:
    """torch.compile (inductor, on this CPU): same logits within 1e-4, same checkpoint keys as eager."""
    eager, compiled = _fit("32-true"), _fit("32-true", compile=True)
    assert eager.state_dict().keys() == compiled.state_dict().keys()
    compiled.load_state_dict(eager.state_dict())
    x = torch.randn(4, *TASK.input_shape)
    eager.eval(), compiled.eval()
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), eager(x), rtol=1e-4, atol=1e-4)
