"""EPNAS and PNAS: progressive search with an LSTM surrogate."""

from naslab.strategies.epnas.strategy import EPNASStrategy, PNASStrategy

__all__ = ["EPNASStrategy", "PNASStrategy"]
