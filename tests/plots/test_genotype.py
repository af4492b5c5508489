"""A genotype's pictures, whatever its space (naslab.plots.genotype): one drawer per space class."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from naslab.plots.genotype import draw_genotype_pictures
from naslab.spaces import MicroSpace, MLPSpace
from naslab.spaces.subspace import SubSpace


def test_each_space_gets_its_pictures_and_a_space_without_a_drawer_none(tmp_path: Path) -> None:
    micro = MicroSpace(2, "enas")
    g = micro.sample(np.random.default_rng(0))
    assert draw_genotype_pictures(micro, g, tmp_path / "micro") == [
        tmp_path / "micro" / "normal.png",
        tmp_path / "micro" / "reduce.png",
    ]
    assert all(p.stat().st_size > 0 for p in (tmp_path / "micro").glob("*.png"))
    mlp = MLPSpace()
    assert draw_genotype_pictures(mlp, mlp.sample(np.random.default_rng(0)), tmp_path / "mlp") == []


def test_a_subspace_is_drawn_as_its_base_space(tmp_path: Path) -> None:
    base = MicroSpace(2, "enas")
    sub = SubSpace(base, fixed={0: 0})
    g = sub.sample(np.random.default_rng(1))
    names = [p.name for p in draw_genotype_pictures(sub, g, tmp_path)]
    assert names == ["normal.png", "reduce.png"]
