"""Published genotypes as data, looked up by name (never `eval`), or read from a genotype.json.

`published/<space>.json` holds the genotypes of one space (micro: CIFAR/ImageNet cells; rnn: PTB
cells); names are unique across spaces, so `genotype=darts_ptb` alone says which space it needs.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from naslab.spaces.base import GenotypeError, parse_genotype_json
from naslab.spaces.micro.genotype import MicroGenotype

SPACES_WITH_PUBLISHED = ("micro", "rnn")


@lru_cache(maxsize=None)
def _published(space: str) -> dict[str, Any]:
    text = resources.files("naslab.spaces").joinpath(f"published/{space}.json").read_text()
    return json.loads(text)


def _entry(name: str) -> tuple[str, dict[str, Any]] | None:
    for space in SPACES_WITH_PUBLISHED:
        if name in _published(space):
            return space, _published(space)[name]
    return None


def published_names(space: str | None = "micro") -> list[str]:
    """Names of one space's published genotypes, or of every space's (space=None)."""
    spaces = SPACES_WITH_PUBLISHED if space is None else (space,)
    return sorted(name for s in spaces for name in _published(s))


def published_genotype(name: str) -> Any:
    """The genotype object of a published name (MicroGenotype or RNNGenotype)."""
    entry = _entry(name)
    if entry is None:
        raise GenotypeError(f"unknown published genotype '{name}'; known: {', '.join(published_names(None))}")
    space, data = entry
    if space == "rnn":
        from naslab.spaces.rnn.space import RNNGenotype

        return RNNGenotype.from_dict(data["genotype"])
    return MicroGenotype.from_dict(data["genotype"])


def load_genotype_data(ref: str) -> tuple[str | None, Any]:
    """Resolves `genotype=<published name | path>` to (space name or None, genotype data)."""
    entry = _entry(ref)
    if entry is not None:
        return entry[0], entry[1]["genotype"]
    path = Path(ref).expanduser()
    if path.is_dir():  # a run dir: the genotype it found or trained
        path = path / "genotype.json"
    if not path.exists():
        raise GenotypeError(
            f"genotype '{ref}' is neither a published name ({', '.join(published_names(None))}) "
            "nor an existing genotype.json or run dir"
        )
    data = parse_genotype_json(path.read_text(), f"genotype file {path}")
    if isinstance(data, dict) and "genotype" in data:
        return data.get("space"), data["genotype"]
    return None, data
