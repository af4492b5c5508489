"""The macro space of ENAS / EPNAS: a chain of layers with skip connections."""

from naslab.spaces.macro.space import MacroGenotype, MacroLayer, MacroSpace

__all__ = ["MacroGenotype", "MacroLayer", "MacroSpace"]
