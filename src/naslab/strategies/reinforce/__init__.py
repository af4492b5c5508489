"""REINFORCE with an LSTM controller: NASNet / ENAS's strategy."""

from naslab.strategies.reinforce.strategy import ReinforceStrategy

__all__ = ["ReinforceStrategy"]
