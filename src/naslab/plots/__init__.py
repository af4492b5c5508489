"""Pictures: searched architectures (`plots.genotype`, per space), the search itself, alpha heatmaps, predictions."""

from naslab.plots.alpha_plot import plot_alpha_heatmaps
from naslab.plots.cell_plot import cell_to_dot, draw_cell, draw_genotype
from naslab.plots.search_plot import plot_search_curve

__all__ = ["cell_to_dot", "draw_cell", "draw_genotype", "plot_alpha_heatmaps", "plot_search_curve"]
