"""Evaluators: how an architecture gets its score."""

from naslab.evaluators.base import Evaluation, Evaluator
from naslab.evaluators.standalone import StandaloneEvaluator

__all__ = ["Evaluation", "Evaluator", "StandaloneEvaluator"]
