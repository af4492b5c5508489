"""NAO: encoder, performance predictor, decoder and gradient ascent in the embedding."""

from naslab.strategies.nao.strategy import NAOStrategy

__all__ = ["NAOStrategy"]
