"""Size of a network as the papers' tables report it: parameters and multiply-adds."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from naslab.spaces.micro.network import count_parameters


def count_macs(network: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-adds of one forward pass on one input (torch counts 2 FLOPs per multiply-add).

    Convolutions and linear layers only, like the papers: pooling, BN and additions are free.
    """
    was_training = network.training
    network.eval()
    # A language model says what one input is (one token: multiply-adds per token).
    example = network.example_input() if hasattr(network, "example_input") else torch.zeros(1, *input_shape)
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            network(example)
    finally:
        network.train(was_training)
    return int(counter.get_total_flops()) // 2


def network_size(network: nn.Module, input_shape: tuple[int, ...]) -> dict[str, int]:
    return {"params": count_parameters(network), "macs": count_macs(network, input_shape)}
