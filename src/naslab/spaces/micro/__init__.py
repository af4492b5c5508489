"""The micro (cell) space of NASNet / ENAS / DARTS / NAO: genotype, networks, supernets, derivation."""

from naslab.spaces.micro.genotype import Branch, Cell, MicroGenotype, Node, make_cell
from naslab.spaces.micro.space import MicroSpace

__all__ = ["Branch", "Cell", "MicroGenotype", "MicroSpace", "Node", "make_cell"]
