"""naslab: neural architecture search as space x strategy x evaluator (see README.md and DESIGN.md)."""

__version__ = "0.1.0"
