"""Training LightningModules for child and final networks (image classifiers, word-level language models)."""

from naslab.train.classifier import ClassifierModule, NonFiniteLossError
from naslab.train.language_model import LanguageModelModule

__all__ = ["ClassifierModule", "LanguageModelModule", "NonFiniteLossError"]
