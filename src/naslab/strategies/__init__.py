"""Search strategies: ask / tell proposers (`strategies.base.Strategy`), one package per method."""

from naslab.strategies.base import Proposal, Result, SharesWeights, Strategy
from naslab.strategies.random import RandomStrategy
from naslab.strategies.reinforce import ReinforceStrategy

__all__ = ["Proposal", "RandomStrategy", "ReinforceStrategy", "Result", "SharesWeights", "Strategy"]
