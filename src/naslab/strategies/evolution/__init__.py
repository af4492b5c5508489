"""Regularized (aging) evolution, Real et al. arXiv:1802.01548."""

from naslab.strategies.evolution.strategy import RegularizedEvolution

__all__ = ["RegularizedEvolution"]
