"""DARTS: differentiable search on a relaxed (mixed-op) supernet, first and second order."""

from naslab.strategies.darts.strategy import DartsStrategy

__all__ = ["DartsStrategy"]
