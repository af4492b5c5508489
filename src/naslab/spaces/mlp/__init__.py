"""The MLP space of MLPNAS: layers of width and activation."""

from naslab.spaces.mlp.space import MLPGenotype, MLPLayer, MLPSpace

__all__ = ["MLPGenotype", "MLPLayer", "MLPSpace"]
