"""Random search: the baseline every method must beat."""

from naslab.strategies.random.strategy import RandomStrategy

__all__ = ["RandomStrategy"]
