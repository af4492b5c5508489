"""The recurrent cell space of ENAS / DARTS / NAO for language modelling."""

from naslab.spaces.rnn.space import RNNGenotype, RNNNode, RNNSpace

__all__ = ["RNNGenotype", "RNNNode", "RNNSpace"]
