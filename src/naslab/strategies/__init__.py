"""Search strategies (ask / tell)."""

from naslab.strategies.base import Strategy
from naslab.strategies.random import RandomStrategy
from naslab.strategies.reinforce import ReinforceStrategy

__all__ = ["RandomStrategy", "ReinforceStrategy", "Strategy"]
