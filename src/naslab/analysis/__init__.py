"""Analysis helpers: pictures of searched architectures."""
from naslab.analysis.cell_plot import cell_to_dot, draw_cell, draw_genotype

__all__ = ["cell_to_dot", "draw_cell", "draw_genotype"]
