"""Search spaces: what an architecture is, how to sample, tokenize and build it."""

from naslab.spaces.base import GenotypeError, Space, Task
from naslab.spaces.macro.space import MacroGenotype, MacroSpace
from naslab.spaces.micro.genotype import Branch, Cell, MicroGenotype, Node, make_cell
from naslab.spaces.micro.space import MicroSpace
from naslab.spaces.mlp.space import MLPGenotype, MLPLayer, MLPSpace
from naslab.spaces.nases.space import NASESGenotype, NASESSpace
from naslab.spaces.rnn.space import RNNGenotype, RNNNode, RNNSpace

__all__ = [
    "Branch",
    "Cell",
    "GenotypeError",
    "MacroGenotype",
    "MacroSpace",
    "MicroGenotype",
    "MicroSpace",
    "MLPGenotype",
    "MLPLayer",
    "MLPSpace",
    "NASESGenotype",
    "NASESSpace",
    "Node",
    "RNNGenotype",
    "RNNNode",
    "RNNSpace",
    "Space",
    "Task",
    "make_cell",
]
