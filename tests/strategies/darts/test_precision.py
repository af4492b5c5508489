"""DARTS under bf16 autocast (strategy.precision=bf16-mixed, what trainer=gpu gives it), on a CPU.

Every forward pass runs in bfloat16 except the two finite-difference passes of the order-2
Hessian-vector product, which must stay float32; the alpha gradients point where float32's do, within
the tolerances measured here (bf16 is opt-in for DARTS: its alpha gradients are noisy).
"""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch.utilities import CombinedLoader
from torch.utils.data import DataLoader, TensorDataset

from naslab.spaces.base import Task
from naslab.spaces.micro.space import MicroSpace
from naslab.strategies.darts.module import DartsSearchModule
from naslab.strategies.darts.strategy import DartsStrategy
from tests.lightning_helpers import quiet_trainer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def one_step(order: int, precision: str) -> tuple[DartsSearchModule, list[torch.dtype]]:
    torch.manual_seed(0)
    net = MicroSpace(2, "darts", "all").build_mixed_supernet(Task(3, (1, 8, 8)), channels=4, cells_per_stage=1)
    module = DartsSearchModule(net, order=order, epochs=1)
    dtypes: list[torch.dtype] = []
    net.register_forward_hook(lambda _m, _i, out: dtypes.append(out.dtype))
    g = torch.Generator().manual_seed(1)
    data = TensorDataset(torch.randn(6, 1, 8, 8, generator=g), torch.randint(0, 3, (6,), generator=g))
    loaders = {"train": DataLoader(data, batch_size=6), "valid": DataLoader(data, batch_size=6)}
    trainer = quiet_trainer(max_epochs=1, precision=precision)
    trainer.fit(module, train_dataloaders=CombinedLoader(loaders, mode="min_size"))
    return module, dtypes


def test_order_2_under_bf16_keeps_the_finite_difference_passes_in_float32() -> None:
    module, dtypes = one_step(2, "bf16-mixed")
    # virtual-step gradient, validation at w', Hessian-vector product w+ and w-, weight step
    assert dtypes == [torch.bfloat16, torch.bfloat16, torch.float32, torch.float32, torch.bfloat16]
    assert all(a.dtype == torch.float32 and torch.isfinite(a).all() for a in module.alphas.values())
    reference, float_dtypes = one_step(2, "32-true")
    assert float_dtypes == [torch.float32] * 5
    assert cosines(module, reference) > 0.8


def cosines(module: DartsSearchModule, reference: DartsSearchModule) -> float:
    """The smallest cosine similarity between the alpha gradients of the (only) step of two runs.

    Measured on this 4-channel toy: 0.93-0.95 for order 1 and 0.83-0.84 for order 2 (the relative error
    of a bf16 alpha gradient is 0.3-0.55). That is why strategy.precision defaults to float32.
    """
    return min(
        float(
            torch.nn.functional.cosine_similarity(
                module.alphas[k].grad.flatten(), reference.alphas[k].grad.flatten(), 0
            )
        )
        for k in module.alphas
    )


def test_order_1_under_bf16_runs_every_pass_in_bfloat16() -> None:
    module, dtypes = one_step(1, "bf16-mixed")
    assert dtypes == [torch.bfloat16, torch.bfloat16]
    assert cosines(module, one_step(1, "32-true")[0]) > 0.9


def test_precision_setting_maps_fp16_to_float32_and_names_itself_when_wrong() -> None:
    space = MicroSpace(2, "darts", "all")
    assert DartsStrategy(space, precision="bf16-mixed").precision == "bf16-mixed"
    assert DartsStrategy(space, precision="16-mixed").precision == "32-true"  # unscaled alpha gradients
    with pytest.raises(ValueError, match="strategy.precision must be one of"):
        DartsStrategy(space, precision="64-true")
