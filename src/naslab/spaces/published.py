"""Published genotypes as data, looked up by name (never `eval`), or read from a genotype.json."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from naslab.spaces.micro_genotype import GenotypeError, MicroGenotype, parse_genotype_json


@lru_cache(maxsize=None)
def _published_micro() -> dict[str, Any]:
    text = resources.files("naslab.spaces").joinpath("published/micro.json").read_text()
    return json.loads(text)


def published_names() -> list[str]:
    return sorted(_published_micro())


def published_source(name: str) -> str:
    return _published_micro()[name].get("source", "")


def published_genotype(name: str) -> MicroGenotype:
    entries = _published_micro()
    if name not in entries:
        raise GenotypeError(f"unknown published genotype '{name}'; known: {', '.join(sorted(entries))}")
    return MicroGenotype.from_dict(entries[name]["genotype"])


def load_genotype_data(ref: str) -> tuple[str | None, Any]:
    """Resolves `genotype=<published name | path>` to (space name or None, genotype data)."""
    if ref in _published_micro():
        return "micro", _published_micro()[ref]["genotype"]
    path = Path(ref).expanduser()
    if not path.exists():
        raise GenotypeError(
            f"genotype '{ref}' is neither a published name ({', '.join(published_names())}) nor an existing file"
        )
    data = parse_genotype_json(path.read_text(), f"genotype file {path}")
    if isinstance(data, dict) and "genotype" in data:
        return data.get("space"), data["genotype"]
    return None, data
