"""Search spaces: what an architecture is, how to sample, tokenize and build it."""

from naslab.spaces.base import Space, Task
from naslab.spaces.macro import MacroGenotype, MacroSpace
from naslab.spaces.micro import MicroSpace
from naslab.spaces.micro_genotype import Branch, Cell, GenotypeError, MicroGenotype, Node, make_cell

__all__ = [
    "Branch",
    "Cell",
    "GenotypeError",
    "MacroGenotype",
    "MacroSpace",
    "MicroGenotype",
    "MicroSpace",
    "Node",
    "Space",
    "Task",
    "make_cell",
]
