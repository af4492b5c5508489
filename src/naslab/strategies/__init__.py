"""Search strategies: ask / tell proposers, and DARTS, which searches by gradient with its own supernet."""

from naslab.strategies.base import GradientStrategy, Strategy
from naslab.strategies.random import RandomStrategy
from naslab.strategies.reinforce import ReinforceStrategy

__all__ = ["GradientStrategy", "RandomStrategy", "ReinforceStrategy", "Strategy"]
