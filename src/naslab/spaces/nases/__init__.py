"""The NASES space: layer chains embedded by an autoencoder."""

from naslab.spaces.nases.space import NASESGenotype, NASESSpace

__all__ = ["NASESGenotype", "NASESSpace"]
