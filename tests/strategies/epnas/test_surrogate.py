"""EPNAS's LSTM surrogate: shapes, padding, gradients, the hash table, errors, learning, determinism, resume."""

from __future__ import annotations

import io
import random
import warnings

import numpy as np
import pytest
import torch
from scipy.stats import kendalltau
from torch.utils.data import DataLoader

from naslab.loggers import quiet_lightning
from naslab.spaces.macro.space import MacroSpace
from naslab.strategies.epnas.surrogate import Surrogate, SurrogateNet, _collate, _PrefixDataset
from tests.lightning_helpers import quiet_trainer

SPACE = MacroSpace(num_layers=4)
CHOICES = SPACE.token_choices()  # [6, 6, 2, 6, 2, 2, 6, 2, 2, 2]
KINDS = SPACE.token_kinds()  # op, op, skip, op, skip, skip, ...
# Layer l contributes 1 + l tokens (its op, then one skip bit per earlier layer): prefixes end here.
BOUNDS = [sum(1 + layer for layer in range(k)) for k in range(1, SPACE.num_layers + 1)]  # [1, 3, 6, 10]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def prefixes(rng: np.random.Generator, n: int, exclude: set[tuple[int, ...]] = frozenset()) -> list[tuple[int, ...]]:
    """`n` distinct prefixes of sampled genotypes, each cut after a random number of whole layers."""
    found: dict[tuple[int, ...], None] = {}
    while len(found) < n:
        tokens = SPACE.to_tokens(SPACE.sample(rng))
        prefix = tokens[: BOUNDS[int(rng.integers(len(BOUNDS)))]]
        if prefix not in exclude:
            found[prefix] = None
    return list(found)


def planted_score(seed: int):
    """A score in about [0.2, 0.9]: sigmoid of a fixed random weight per (position, value), summed."""
    rng = np.random.default_rng(seed)
    weights = [rng.normal(size=n) for n in CHOICES]

    def score(tokens: tuple[int, ...]) -> float:
        z = sum(weights[p][v] for p, v in enumerate(tokens)) / np.sqrt(len(CHOICES))
        return float(0.2 + 0.7 / (1.0 + np.exp(-z)))

    return score


def test_token_table_and_prefix_bounds_match_the_space() -> None:
    assert len(CHOICES) == BOUNDS[-1]
    for start, end in zip([0] + BOUNDS[:-1], BOUNDS):
        assert CHOICES[start] == len(SPACE.ops) and all(n == 2 for n in CHOICES[start + 1 : end])


def test_output_shape_range_and_padding_does_not_matter() -> None:
    surrogate = Surrogate(CHOICES, KINDS, seed=0)
    rng = np.random.default_rng(0)
    seqs = prefixes(rng, 12)
    short = min(seqs, key=len)
    together = surrogate.predict(seqs)
    assert together.shape == (12,) and together.dtype == np.float64
    assert ((together >= 0) & (together <= 1)).all()
    alone = surrogate.predict([short])
    full = tuple(SPACE.to_tokens(SPACE.sample(rng)))
    with_longer = surrogate.predict([full, short, full])
    assert alone[0] == pytest.approx(with_longer[1], abs=1e-6)
    assert together[seqs.index(short)] == pytest.approx(alone[0], abs=1e-6)
    assert surrogate.predict([]).shape == (0,)

    # The pad value is never read: packing stops each sequence at its own length.
    net = surrogate.net.eval()
    ids, lengths, _ = _collate([(surrogate.encode(s), len(s), 0.5) for s in (short, full)])
    garbage = ids.clone()
    garbage[0, len(short) :] = net.embedding.num_embeddings - 1
    with torch.no_grad():
        assert torch.allclose(net(ids, lengths), net(garbage, lengths), atol=1e-6)


def test_ids_share_rows_by_kind_or_are_offset_by_position() -> None:
    by_kind = Surrogate(CHOICES, KINDS)
    assert by_kind.encode((0, 0, 1, 5, 1, 0)).tolist() == [0, 0, 7, 5, 7, 6]  # ops: rows 0-5, skips: 6-7
    assert by_kind.net.embedding.num_embeddings == 8
    one_kind = Surrogate(CHOICES)  # a space without kinds: every position reads the same rows
    assert one_kind.encode((0, 0, 1)).tolist() == [0, 0, 1] and one_kind.net.embedding.num_embeddings == 6
    surrogate = Surrogate(CHOICES, embedding="position")
    assert surrogate.encode((0, 0, 1)).tolist() == [0, 6, 13]  # offsets 0, 6, 12: cumulative choices
    assert surrogate.net.embedding.num_embeddings == sum(CHOICES)
    weights = [surrogate.net.embedding.weight, surrogate.net.head.weight, surrogate.net.head.bias]
    assert all(float(w.detach().abs().max()) <= 1.0 for w in weights)  # the paper's uniform [-1, 1] init


def test_one_training_step_reaches_embedding_lstm_and_head() -> None:
    torch.manual_seed(0)
    surrogate = Surrogate(CHOICES, embedding="position")
    net = SurrogateNet(surrogate.net.embedding.num_embeddings, input_size=16, hidden=16)
    seqs = prefixes(np.random.default_rng(1), 8)
    dataset = _PrefixDataset([surrogate.encode(s) for s in seqs], [0.5] * len(seqs))
    batch = _collate([dataset[i] for i in range(len(dataset))])
    with warnings.catch_warnings():  # self.log() outside a Trainer only warns
        warnings.simplefilter("ignore")
        loss = net.training_step(batch, 0)
    assert loss.item() == pytest.approx(torch.nn.functional.l1_loss(net(*batch[:2]), batch[2]).item())
    loss.backward()
    used = torch.unique(torch.cat([surrogate.encode(s) for s in seqs]))
    grad = net.embedding.weight.grad
    assert grad[used].abs().sum(dim=1).gt(0).all()
    unused = torch.ones(len(grad), dtype=torch.bool)
    unused[used] = False
    assert grad[unused].abs().sum() == 0  # unseen (position, value) rows get nothing, pad slots included
    for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0"):
        assert getattr(net.lstm, name).grad.abs().sum() > 0, name
    assert net.head.weight.grad.abs().sum() > 0 and net.head.bias.grad.abs().sum() > 0

    # And through Lightning: one optimizer step with training_step's L1 loss moves every part.
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net.zero_grad()
    trainer = quiet_trainer(max_steps=1)
    with quiet_lightning():
        trainer.fit(net, DataLoader(dataset, batch_size=len(seqs), collate_fn=_collate))
    after = net.state_dict()
    for key in ("embedding.weight", "lstm.weight_ih_l0", "lstm.weight_hh_l0", "head.weight", "head.bias"):
        assert not torch.equal(before[key], after[key]), key
    assert "surrogate/l1" in trainer.callback_metrics


def test_hash_table_keeps_one_entry_with_the_last_score() -> None:
    surrogate = Surrogate(CHOICES)
    surrogate.add((1, 0, 1), 0.3)
    surrogate.add([1, np.int64(0), 1], 0.7)  # same architecture, other container and int type
    surrogate.add((1,), 0.5)
    assert len(surrogate) == 2
    assert surrogate.data[(1, 0, 1)] == 0.7
    assert surrogate.state_dict()["data"] == [[[1, 0, 1], 0.7], [[1], 0.5]]


def test_bad_input_raises_one_line_value_errors() -> None:
    surrogate = Surrogate(CHOICES)
    with pytest.raises(ValueError, match="no data"):
        surrogate.fit()
    with pytest.raises(ValueError, match="position 2 is 2; valid tokens there are 0..1"):
        surrogate.add((0, 1, 2), 0.5)
    with pytest.raises(ValueError, match="position 0 is 6"):
        surrogate.predict([(0,), (6,)])
    with pytest.raises(ValueError, match="position 1 is -1"):
        surrogate.predict([(0, -1)])
    with pytest.raises(ValueError, match="11 tokens but the space has 10 positions"):
        surrogate.add((0,) * 11, 0.5)
    with pytest.raises(ValueError, match="empty"):
        surrogate.predict([()])
    with pytest.raises(ValueError, match="position 1 must be an int"):
        surrogate.add((0, 0.5), 0.5)
    with pytest.raises(ValueError, match=r"score must be in \[0, 1\]"):
        surrogate.add((0,), 93.0)  # a percentage, not an accuracy
    assert len(surrogate) == 0  # nothing bad was stored
    with pytest.raises(ValueError) as info:
        surrogate.add((0, 0, 5), 0.5)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="embedding must be one of kind, position, got 'tokens'"):
        Surrogate(CHOICES, embedding="tokens")
    with pytest.raises(ValueError, match="3 token kinds for 10 positions"):
        Surrogate(CHOICES, KINDS[:3])


def test_learns_a_planted_score_on_variable_length_prefixes() -> None:
    """The key test: ~300 distinct prefixes of 1..4 layers in, ranking of ~100 held-out ones out."""
    score = planted_score(seed=7)
    rng = np.random.default_rng(3)
    train = prefixes(rng, 300)
    test = prefixes(rng, 100, exclude=set(train))
    assert {len(s) for s in train} == set(BOUNDS) and not set(train) & set(test)
    surrogate = Surrogate(CHOICES, KINDS, lr=3e-3, epochs=30, seed=0)
    for tokens in train:
        surrogate.add(tokens, score(tokens))
    untrained = kendalltau(surrogate.predict(test), [score(s) for s in test]).statistic
    loss = surrogate.fit()
    predicted = surrogate.predict(test)
    tau = kendalltau(predicted, [score(s) for s in test]).statistic
    assert tau > 0.6, (tau, untrained, loss)
    assert loss < 0.05
    # It reads the tokens, not only the length: the ranking also holds among whole architectures.
    full = [i for i, s in enumerate(test) if len(s) == BOUNDS[-1]]
    assert kendalltau(predicted[full], [score(test[i]) for i in full]).statistic > 0.5


def kind_score(seed: int):
    """A score mostly by kind: one weight per op and per skip value wherever it stands, plus a little
    per (position, value): what an op is worth carries over from one layer to the next."""
    rng = np.random.default_rng(seed)
    per_kind = {"op": rng.normal(size=len(SPACE.ops)), "skip": rng.normal(size=2)}
    per_position = [0.3 * rng.normal(size=n) for n in CHOICES]

    def score(tokens: tuple[int, ...]) -> float:
        z = sum(per_kind[KINDS[p]][v] + per_position[p][v] for p, v in enumerate(tokens)) / np.sqrt(len(tokens))
        return float(0.2 + 0.7 / (1.0 + np.exp(-z)))

    return score


def test_rows_shared_by_kind_predict_the_next_level_that_rows_per_position_cannot() -> None:
    """A progressive search asks about level l + 1 after seeing levels 1..l: the 4th layer's tokens have
    never been seen. Rows shared by kind carry what was learnt about each op; rows per position are
    still random there, so their ranking of the new level is guesswork."""
    score = kind_score(seed=5)
    rng = np.random.default_rng(4)
    seen = [p for p in prefixes(rng, 400) if len(p) < BOUNDS[-1]][:250]
    new_level = [p for p in prefixes(rng, 400, exclude=set(seen)) if len(p) == BOUNDS[-1]][:80]
    assert len(new_level) == 80 and {len(p) for p in seen} == set(BOUNDS[:-1])
    truth = [score(p) for p in new_level]
    taus = {}
    for embedding in ("kind", "position"):
        surrogate = Surrogate(CHOICES, KINDS, embedding=embedding, lr=3e-3, epochs=30, seed=0)
        for tokens in seen:
            surrogate.add(tokens, score(tokens))
        surrogate.fit()
        taus[embedding] = kendalltau(surrogate.predict(new_level), truth).statistic
    assert taus["kind"] > 0.5, taus
    assert taus["kind"] > taus["position"] + 0.15, taus


def _trained(seed: int, epochs: int = 3) -> Surrogate:
    score = planted_score(seed=1)
    surrogate = Surrogate(CHOICES, KINDS, input_size=32, hidden=32, epochs=epochs, batch_size=16, seed=seed)
    for tokens in prefixes(np.random.default_rng(5), 60):
        surrogate.add(tokens, score(tokens))
    surrogate.fit()
    return surrogate


def test_same_seed_and_data_give_identical_predictions_and_leave_global_rngs_alone() -> None:
    queries = prefixes(np.random.default_rng(9), 20)
    np.random.seed(123)
    random.seed(123)
    torch.manual_seed(123)
    expected = (np.random.rand(), random.random(), torch.rand(1).item())
    np.random.seed(123)
    random.seed(123)
    torch.manual_seed(123)
    first = _trained(seed=4).predict(queries)
    assert (np.random.rand(), random.random(), torch.rand(1).item()) == expected
    torch.manual_seed(999)  # whatever ran before does not matter
    second = _trained(seed=4).predict(queries)
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, _trained(seed=5).predict(queries))


def test_state_dict_round_trip_and_resume() -> None:
    queries = prefixes(np.random.default_rng(11), 20)
    original = _trained(seed=2)
    buffer = io.BytesIO()
    torch.save(original.state_dict(), buffer)  # as a killed search would have saved it
    buffer.seek(0)
    restored = Surrogate(CHOICES, KINDS, input_size=32, hidden=32, epochs=3, batch_size=16, seed=2)
    restored.load_state_dict(torch.load(buffer))
    assert restored.data == original.data
    np.testing.assert_array_equal(restored.predict(queries), original.predict(queries))
    # Training goes on the same way after the resume.
    original.fit()
    restored.fit()
    np.testing.assert_array_equal(restored.predict(queries), original.predict(queries))
