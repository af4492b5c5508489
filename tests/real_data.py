"""Where the real-data tests find their data: one setting, the `NASLAB_DATA_DIR` environment variable.

`NASLAB_DATA_DIR` is a folder holding the verified copies `ptb/` and `wikitext-2/` (the files
`{train,valid,test}.txt` / `wiki.{train,valid,test}.tokens`) and, optionally, `fashion-mnist/` (the four
`*-ubyte.gz` files). Without `fashion-mnist/` there, Fashion-MNIST comes from Debian's
`dataset-fashion-mnist` package (`/usr/share/datasets/fashion-mnist`, what `.ci/run` installs).

A real-data test is marked `@needs_real_data("ptb")`: it carries the `real_data` marker and skips, with
the setting to use, where its data is missing. The suite's closing summary lists every real-data test
that ran and every one that skipped (tests/conftest.py), so a CI log says loudly what was checked on
real files and what was not.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, TypeVar

import pytest

from naslab.data.fashion_mnist import DEBIAN_SOURCE, RAW_FILES

DATA_DIR_ENV = "NASLAB_DATA_DIR"
F = TypeVar("F", bound=Callable[..., object])


def data_dir() -> Path | None:
    """`NASLAB_DATA_DIR`, or None where it is not set."""
    value = os.environ.get(DATA_DIR_ENV)
    return Path(value) if value else None


def _fashion_mnist(folder: Path) -> bool:
    return all((folder / f"{name}.gz").is_file() for name in RAW_FILES)


def real_source(name: str) -> Path | None:
    """The folder holding dataset `name` ("ptb", "wikitext-2", "fashion-mnist"), or None where it is missing."""
    root = data_dir()
    if name == "fashion-mnist":
        for folder in ([root / "fashion-mnist"] if root else []) + [Path(DEBIAN_SOURCE)]:
            if _fashion_mnist(folder):
                return folder
        return None
    if name not in ("ptb", "wikitext-2"):
        raise ValueError(f"no real dataset called {name!r}")
    return root if root is not None and (root / name).is_dir() else None


def how_to_get(name: str) -> str:
    """The skip reason: what is missing and the one setting that provides it."""
    if name == "fashion-mnist":
        return f"needs Fashion-MNIST: apt-get install dataset-fashion-mnist, or ${DATA_DIR_ENV}/fashion-mnist/*.gz"
    return f"needs the verified {name} copy in ${DATA_DIR_ENV}/{name} ({DATA_DIR_ENV} is not set or lacks it)"


def real_data_marks(name: str) -> list[pytest.MarkDecorator]:
    """The marks of a real-data test of `name` (for `pytest.param(..., marks=...)`)."""
    return [pytest.mark.real_data(name), pytest.mark.skipif(real_source(name) is None, reason=how_to_get(name))]


def needs_real_data(name: str) -> Callable[[F], F]:
    """Marks a test as a real-data test of `name` and skips it where that data is missing."""

    def mark(test: F) -> F:
        for marker in real_data_marks(name):
            test = marker(test)
        return test

    return mark
