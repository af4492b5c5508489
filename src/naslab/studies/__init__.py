"""Evaluating the search itself: ground-truth tables, weight-sharing rankings, study tables and figures."""

__all__ = []
