"""The search: a strategy's proposals scored, archived and resumable, in one of three ways.

`search_kind` reads from the configured classes which search a run needs (DARTS-like strategies
declare `search_kinds = ("gradient",)`; an evaluator declares the search that drives it, `ask_tell`
or `shared`), and `SEARCHES` maps that kind to its class. Modules are imported lazily by
`search_class`, so checking a config imports no torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

# kind -> "module:class" of its Search (naslab.search.base.Search)
SEARCHES = {
    "ask_tell": "naslab.search.ask_tell:AskTellSearch",
    "shared": "naslab.search.shared:SharedWeightSearch",
    "gradient": "naslab.search.gradient:GradientSearch",
}


def search_kind(strategy_class: Any, evaluator_class: Any) -> str:
    """The search a run of these configured classes needs: `gradient` for a strategy that owns a
    relaxed supernet (it takes no evaluator), else the evaluator's own (`ask_tell` or `shared`)."""
    if tuple(getattr(strategy_class, "search_kinds", ())) == ("gradient",):
        return "gradient"
    return str(getattr(evaluator_class, "search_kind", "ask_tell"))


def search_class(kind: str) -> type:
    """The Search class of `kind` (one of SEARCHES)."""
    module, name = SEARCHES[kind].split(":")
    return getattr(import_module(module), name)
