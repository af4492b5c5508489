"""Search strategies (ask / tell)."""

from naslab.strategies.base import Strategy
from naslab.strategies.random import RandomStrategy

__all__ = ["RandomStrategy", "Strategy"]
