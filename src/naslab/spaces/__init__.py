"""Search spaces: what an architecture is, how to sample, tokenize and build it."""

from naslab.spaces.base import Space, Task
from naslab.spaces.macro import MacroGenotype, MacroSpace
from naslab.spaces.micro import MicroSpace
from naslab.spaces.micro_genotype import Branch, Cell, GenotypeError, MicroGenotype, Node, make_cell
from naslab.spaces.mlp import MLPGenotype, MLPLayer, MLPSpace
from naslab.spaces.nases import NASESGenotype, NASESSpace
from naslab.spaces.rnn import RNNGenotype, RNNNode, RNNSpace

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
