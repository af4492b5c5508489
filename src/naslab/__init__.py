"""naslab: neural architecture search as space x strategy x evaluator (see README.md and docs/architecture.md)."""

__version__ = "0.1.0"
