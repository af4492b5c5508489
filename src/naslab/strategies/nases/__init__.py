"""NASES: reinforcement learning in an autoencoder's embedding of architectures."""

from naslab.strategies.nases.strategy import NASESStrategy

__all__ = ["NASESStrategy"]
