"""The tied micro space of PNAS / EPNAS: one cell for the whole network, grown one block per level."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from naslab.evaluators.planted import PlantedEvaluator
from naslab.ops.cnn import OP_SETS
from naslab.spaces import MicroGenotype, MicroSpace, Task
from naslab.spaces.base import GenotypeError
from naslab.spaces.macro.network import MACRO_OPS_ENAS
from naslab.spaces.micro.genotype import make_cell
from naslab.spaces.micro.network import MicroNetwork

CONF = Path(__file__).resolve().parents[3] / "conf"
TINY = MicroSpace(2, op_set=["identity", "conv_3x3"], tied=True)
TASK = Task(10, (3, 16, 16))


def tied(nodes) -> MicroGenotype:
    cell = make_cell(nodes)
    return MicroGenotype(cell, cell)


def test_the_epnas_space_is_the_papers() -> None:
    space = instantiate(OmegaConf.load(CONF / "space" / "micro_epnas.yaml"))
    assert space.tied and space.num_nodes == 5 and space.concat_rule == "unused"
    assert space.ops == ("identity",) + MACRO_OPS_ENAS == OP_SETS["epnas"]  # the macro ops plus identity
    # one cell: sum over blocks k of log((k + 2)^2 * 7^2), about 1.5e14 (EPNAS arXiv:1808.00391 quotes ~5e14)
    assert space.size() == math.prod((k + 2) ** 2 * 49 for k in range(5))
    assert len(space.token_choices()) == 5 * 4


def test_tied_genotypes_round_trip_through_one_cell_of_tokens() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        genotype = TINY.sample(rng)
        assert genotype.normal == genotype.reduce
        tokens = TINY.to_tokens(genotype)
        assert len(tokens) == len(TINY.token_choices()) == 8
        assert TINY.from_tokens(tokens) == genotype
        assert all(g.normal == g.reduce for g in TINY.symmetries(genotype))
        swapped = TINY.random_symmetry(genotype, rng)
        assert swapped.normal == swapped.reduce and TINY.key(swapped) == TINY.key(genotype)
    untied = MicroGenotype(make_cell([((0, "identity"), (1, "identity"))] * 2), make_cell([((0, "conv_3x3"),) * 2] * 2))
    with pytest.raises(GenotypeError, match="ties the reduction cell to the normal cell"):
        TINY.validate(untied)
    # DARTS on a tied space relaxes its one cell: one alpha matrix, derived into a tied genotype
    tied_darts = MicroSpace(2, "darts", concat="all", tied=True)
    assert set(tied_darts.build_mixed_supernet(TASK).alpha_shapes) == {"cell"}


def test_expand_level_by_level_reaches_every_architecture_exactly_once() -> None:
    """Counted against enumerate(): every token sequence of the space, up to a block's branch swap."""
    level = TINY.expand(None)
    assert len(level) == 4 * 5 // 2  # unordered pairs of 2 inputs x 2 ops, a branch may repeat: 10
    children = [child for parent in level for child in TINY.expand(parent)]
    assert len(children) == len(level) * (6 * 7 // 2)  # block 2: 3 inputs x 2 ops = 6 branches, 21 pairs
    keys = [TINY.key(g) for g in children]
    assert len(set(keys)) == len(keys)  # duplicate-free ...
    everything = list(TINY.enumerate())
    assert len(everything) == TINY.size() == (2 * 2) ** 2 * (3 * 2) ** 2
    assert set(keys) == {TINY.key(g) for g in everything}  # ... and exhaustive
    assert all(TINY.canonical(g) == g and TINY.is_complete(g) for g in children)
    assert TINY.expand(children[0]) == [] and {TINY.level(g) for g in level} == {1}
    with pytest.raises(ValueError, match="grows one cell used as both normal and reduction cell"):
        MicroSpace(2).expand(None)


def test_partial_cells_are_token_prefixes_and_prefix_gives_the_ancestor() -> None:
    space = MicroSpace(4, "epnas", tied=True)
    full = space.sample(np.random.default_rng(3))
    partial = space.prefix(full, 2)
    assert space.level(partial) == 2 and not space.is_complete(partial) and space.is_complete(full)
    assert space.to_tokens(full)[:8] == space.to_tokens(partial)
    assert partial.normal.concat == partial.normal.unused_nodes()  # output rule recomputed for 2 blocks
    space.validate_partial(partial)
    with pytest.raises(GenotypeError, match="has 2 nodes"):
        space.validate(partial)
    assert any(space.key(child) == space.key(space.prefix(full, 3)) for child in space.expand(partial))


def test_partial_cells_run_in_the_child_network_and_the_supernet_with_the_same_weights() -> None:
    """1x1 convs between cells take whichever blocks a cell concatenates, so every level shares weights."""
    space = MicroSpace(3, "epnas", tied=True)
    torch.manual_seed(0)
    supernet = space.build_supernet(TASK, channels=8, cells_per_stage=1).eval()
    x = torch.randn(2, *TASK.input_shape)
    full = space.sample(np.random.default_rng(1))
    for level in (1, 2, 3):
        genotype = space.prefix(full, level)
        child = space.build_child(genotype, TASK, channels=8, cells_per_stage=1)
        child.load_state_dict(supernet.child_state_dict(genotype), strict=True)
        assert torch.equal(supernet(x, genotype), child.eval()(x))
        supernet.zero_grad()
        supernet.train()(x, genotype).sum().backward()
        supernet.eval()
        # the classifier reads the last cell's concatenated blocks: exactly their columns learn
        width = supernet.classifier_width
        grad = supernet.classifier_weight.grad.abs().sum(dim=0).reshape(space.num_nodes, width).sum(dim=1)
        assert [bool(g > 0) for g in grad] == [j + 2 in genotype.normal.concat for j in range(space.num_nodes)]
    assert isinstance(child, MicroNetwork)


def test_planted_scores_judge_a_partial_cell_among_cells_of_its_level() -> None:
    space = MicroSpace(3, "epnas", tied=True)
    planted = PlantedEvaluator(space, seed=0)
    rng = np.random.default_rng(5)
    samples = [space.sample(rng) for _ in range(300)]
    for level in (1, 2, 3):
        z = np.array([planted.standardised(space.prefix(g, level)) for g in samples])
        assert abs(z.mean()) < 0.2 and 0.8 < z.std() < 1.2, (level, z.mean(), z.std())
    # a good partial cell tends to have good descendants: its score predicts theirs
    parents = [space.prefix(g, 2) for g in samples]
    corr = np.corrcoef([planted.raw(p) for p in parents], [planted.raw(g) for g in samples])[0, 1]
    assert corr > 0.5
