"""strategy=nases on token spaces: the adapters between a space and the autoencoder's box (`nases_vectors`),
the policy gradient on a planted score, seeded determinism, resume, and the one-line errors."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from naslab.spaces.micro.genotype import MicroGenotype
from naslab.spaces.micro.space import MicroSpace
from naslab.spaces.nases.space import NASESGenotype, NASESSpace
from naslab.strategies.base import Proposal, results_of
from naslab.strategies.nases.strategy import NASESStrategy, obtain_autoencoder
from naslab.strategies.nases.vectors import (
    NASESVectors,
    OneHotTokens,
    ScaledTokens,
    architecture_vectors,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SPACE = MicroSpace(
    num_nodes=2,
    op_set=["sep_conv_3x3", "max_pool_3x3", "identity"],
    concat="all",
    tied=True,
    distinct_inputs=True,
)
CHOICES = [2, 3, 1, 3, 3, 3, 2, 3]
TARGET = (1, 0, 0, 2, 0, 1, 1, 2)  # the planted best architecture's tokens
UNIFORM_SCORE = float(np.mean([1 / n for n in CHOICES]))  # expected planted score of a uniform architecture: 0.458
PRETRAIN = {"embedding_size": 8, "hidden": [64, 32], "train_size": 2000, "test_size": 200, "epochs": 3, "lr": 1e-3}
ENCODINGS = ("onehot", "scaled")


def planted(genotype: MicroGenotype) -> float:
    """The share of token positions equal to TARGET's (1 for TARGET, 0.458 on average for uniform tokens)."""
    return float(np.mean([a == b for a, b in zip(SPACE.to_tokens(genotype), TARGET, strict=True)]))


def make(encoding: str, **options: Any) -> NASESStrategy:
    return NASESStrategy(SPACE, encoding=encoding, pretrain=PRETRAIN, **{"cache": None, **options})


def run(strategy: NASESStrategy, proposals: int) -> tuple[list[Proposal], list[float]]:
    asked, scores = [], []
    for _ in range(proposals):
        proposed = strategy.ask(1)
        asked += proposed
        scores.append(planted(proposed[0].genotype))
        strategy.tell(results_of(proposed, scores[-1:]))
    return asked, scores


# --- the adapters --------------------------------------------------------------------------
def test_the_adapters_fit_the_token_table() -> None:
    assert SPACE.token_choices() == CHOICES
    onehot, scaled = architecture_vectors(SPACE, "onehot"), architecture_vectors(SPACE, "scaled")
    assert isinstance(onehot, OneHotTokens) and (onehot.num_values, onehot.low, onehot.high) == (20, 0.0, 1.0)
    assert isinstance(scaled, ScaledTokens) and (scaled.num_values, scaled.low, scaled.high) == (8, 0.0, 1.0)
    genotype = SPACE.from_tokens([1, 2, 0, 1, 2, 0, 1, 2])
    assert scaled.encode(genotype) == pytest.approx([0.75, 5 / 6, 0.5, 0.5, 5 / 6, 1 / 6, 0.75, 5 / 6])
    assert onehot.encode(genotype) == [0, 1, 0, 0, 1, 1, 0, 1, 0, 0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 1]
    # ties go to the lowest token; scaled bins are [k / n, (k + 1) / n), the top one closed
    assert SPACE.to_tokens(onehot.decode([0.5] * 20)) == (0,) * 8
    assert SPACE.to_tokens(scaled.decode([0.0] * 8)) == (0,) * 8
    assert SPACE.to_tokens(scaled.decode([1.0] * 8)) == tuple(n - 1 for n in CHOICES)
    edges = [0.5, 1 / 3, 0.9, 2 / 3 - 1e-9, 0.34, 0.99, 0.49, 0.7]
    assert SPACE.to_tokens(scaled.decode(edges)) == (1, 1, 0, 1, 1, 2, 0, 2)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_every_architecture_round_trips_and_every_vector_decodes(encoding: str) -> None:
    vectors = architecture_vectors(SPACE, encoding)
    architectures = list(SPACE.enumerate())
    assert len(architectures) == 972
    for genotype in architectures:
        values = vectors.encode(genotype)
        assert len(values) == vectors.num_values and all(0.0 <= v <= 1.0 for v in values)
        assert vectors.decode(values) == genotype
    rng = np.random.default_rng(0)
    decoded = [vectors.decode(rng.uniform(0.0, 1.0, vectors.num_values)) for _ in range(500)]
    for genotype in decoded:
        SPACE.validate(genotype)
    assert len({SPACE.key(g) for g in decoded}) > 150  # the box covers the space, not a corner of it
    # outside the box: clamped (below 0 reads as 0, above 1 as 1; NaN as 0); the wrong length is an error
    for genotype in architectures[::97]:
        values = np.array(vectors.encode(genotype))
        assert vectors.decode(3 * values - 1) == genotype
    assert SPACE.to_tokens(vectors.decode([-5.0] * vectors.num_values)) == (0,) * 8
    assert SPACE.to_tokens(vectors.decode([math.nan] * vectors.num_values)) == (0,) * 8
    with pytest.raises(ValueError, match=f"needs {vectors.num_values} values, got 3"):
        vectors.decode([0.5] * 3)


def test_space_nases_keeps_its_own_numbers_whatever_the_encoding() -> None:
    space = NASESSpace()
    for encoding in ENCODINGS:
        vectors = architecture_vectors(space, encoding)
        assert isinstance(vectors, NASESVectors) and (vectors.num_values, vectors.low, vectors.high) == (60, 0, 30)
        genotype = space.sample(np.random.default_rng(1))
        assert vectors.encode(genotype) == list(genotype.values)
        assert vectors.decode(genotype.values) == genotype
        assert vectors.decode([-1.0, 31.0] * 30) == NASESGenotype((0.0, 30.0) * 30)


class NoTokens(MicroSpace):
    def token_choices(self) -> list[int]:
        raise NotImplementedError("no tokens here")


def test_a_space_without_tokens_and_an_unknown_encoding_are_one_line_errors() -> None:
    for call in (
        lambda: architecture_vectors(NoTokens(num_nodes=2), "onehot"),
        lambda: architecture_vectors(SPACE, "binary"),
        lambda: architecture_vectors(NASESSpace(), "binary"),
        lambda: NASESStrategy(NoTokens(num_nodes=2), pretrain=PRETRAIN),
        lambda: NASESStrategy(SPACE, encoding="binary", pretrain=PRETRAIN),
    ):
        with pytest.raises(ValueError, match=r"strategy\.encoding") as error:
            call()
        assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="space=micro"):
        architecture_vectors(NoTokens(num_nodes=2), "onehot")


def test_an_autoencoder_of_another_space_or_encoding_is_refused(tmp_path: Path) -> None:
    cache = tmp_path / "ae.pt"
    obtain_autoencoder(SPACE, None, cache, PRETRAIN, seed=0, encoding="scaled")
    with pytest.raises(ValueError, match=r"maps 8 values in \[0.0, 1.0\].*has 20 values.*delete it"):
        NASESStrategy(SPACE, cache=str(cache), pretrain=PRETRAIN, encoding="onehot")
    with pytest.raises(ValueError, match="set strategy.pretrained=null"):  # a space=nases file
        NASESStrategy(SPACE, pretrained=str(_nases_file(tmp_path)), encoding="scaled")
    NASESStrategy(SPACE, cache=str(cache), pretrain=PRETRAIN, encoding="scaled")  # its own autoencoder fits
    assert "evaluator=standalone, or evaluator=table" in NASESStrategy.check_search("shared", {"encoding": "scaled"})


def _nases_file(tmp_path: Path) -> Path:
    """A tiny autoencoder of a 1-layer space=nases (4 values in [0, 30])."""
    path = tmp_path / "nases.pt"
    options = {**PRETRAIN, "train_size": 200, "test_size": 50, "epochs": 1}
    obtain_autoencoder(NASESSpace(num_layers=1), None, path, options, seed=0)
    return path


# --- the search ----------------------------------------------------------------------------
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_nases_learns_a_planted_score_on_a_token_space(encoding: str) -> None:
    """4 seeds x 60 proposals (10 random warm-up ones): the last 20 score higher than the warm-up and than
    uniform architectures. Measured (seeds 0-7, lr 1e-2): onehot 0.67 against a warm-up 0.47, scaled 0.57
    against 0.36; with the gradient's sign flipped 0.33 and 0.25, with no update 0.43 and 0.37."""
    learned, warmup = [], []
    for seed in range(4):
        strategy = make(encoding, seed=seed, lr=1e-2)
        proposals, scores = run(strategy, 60)
        assert all(len(p.info["nases"]["embedding"]) == strategy.embedding for p in proposals)
        assert strategy.pending == {}  # every proposal was pooled when told
        assert strategy.updates == 51 and len(strategy.pool) == 60
        learned.append(np.mean(scores[-20:]))
        warmup.append(np.mean(scores[:10]))
        assert learned[-1] > warmup[-1], (seed, learned, warmup)
    assert np.mean(learned) > np.mean(warmup) + 0.1, (learned, warmup)
    assert np.mean(learned) > UNIFORM_SCORE + 0.1, (learned, UNIFORM_SCORE)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_seed_fixes_the_proposals_and_a_restored_one_continues_identically(encoding: str, tmp_path: Path) -> None:
    first, _ = run(make(encoding, seed=3, lr=1e-2), 25)
    again, _ = run(make(encoding, seed=3, lr=1e-2), 25)
    assert first == again
    other, _ = run(make(encoding, seed=4, lr=1e-2), 25)
    assert other != first

    cache = str(tmp_path / "ae.pt")  # the resumed strategy reloads the autoencoder instead of training another
    original = make(encoding, seed=5, lr=1e-2, warmup=5, cache=cache)
    run(original, 12)
    state = copy.deepcopy(original.state_dict())
    asked = original.ask(2)  # pending proposals are part of the state too
    state_with_pending = original.state_dict()
    restored = make(encoding, seed=99, lr=1e-2, warmup=5, cache=cache)
    restored.load_state_dict(state_with_pending)
    assert restored.previous == original.previous and restored.pending == original.pending
    continued, scores = run(original, 15)
    assert run(restored, 15) == (continued, scores)
    assert [e.reward for e in original.pool.entries] == [e.reward for e in restored.pool.entries]
    rewound = make(encoding, seed=7, lr=1e-2, warmup=5, cache=cache)
    rewound.load_state_dict(state)
    assert rewound.ask(2) == asked
