"""Training LightningModules for child and final networks."""

from naslab.train.classifier import ClassifierModule, NonFiniteLossError

__all__ = ["ClassifierModule", "NonFiniteLossError"]
