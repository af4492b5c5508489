"""The NAO encoder / predictor / decoder: vocabulary, shapes, validity of decoding, gradient ascent."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from naslab.evaluators.planted import PlantedEvaluator
from naslab.spaces import MacroSpace, MicroSpace
from naslab.strategies.nao.model import NAOModel, TokenVocabulary, fit

SPACES = {
    "micro_enas": MicroSpace(5, "enas"),
    "micro_nao": MicroSpace(5, "nao"),
    "micro_small": MicroSpace(2, "enas"),
    "macro": MacroSpace(6, "enas_macro"),
}


def test_vocabulary_shares_entries_by_kind_and_masks_each_position() -> None:
    space = MicroSpace(3, "enas")  # inputs: 2, 3, 4 choices; ops: 5
    vocab = TokenVocabulary(space.token_choices(), space.token_kinds())
    assert vocab.size == 4 + 5 + 1  # widest input position + ops + start token
    assert vocab.valid.sum(dim=1).tolist() == space.token_choices()
    tokens = torch.tensor([space.to_tokens(space.sample(np.random.default_rng(0)))])
    entries = vocab.encode(tokens)
    assert torch.equal(vocab.decode(entries), tokens)
    assert vocab.valid[torch.arange(vocab.length), entries[0]].all()
    op_positions = [i for i, k in enumerate(space.token_kinds()) if k == "op"]
    assert len({int(vocab.offsets[i]) for i in op_positions}) == 1  # one op embedding table
    with pytest.raises(ValueError, match="token table"):
        TokenVocabulary([2, 3], ["input"])


@pytest.mark.parametrize("name", sorted(SPACES))
def test_shapes_unit_states_and_predictions_in_unit_interval(name: str) -> None:
    space = SPACES[name]
    model = NAOModel(space.token_choices(), space.token_kinds(), embedding=8, hidden=16)
    rng = np.random.default_rng(0)
    tokens = torch.tensor([space.to_tokens(space.sample(rng)) for _ in range(5)])
    states = model.encode(tokens)
    assert states.shape == (5, len(space.token_choices()), 16)
    assert torch.allclose(states.norm(dim=-1), torch.ones(5, len(space.token_choices())), atol=1e-5)
    predicted = model.predict(states)
    assert predicted.shape == (5,) and ((predicted > 0) & (predicted < 1)).all()
    log_probs = model.reconstruction_log_probs(states, tokens)
    assert log_probs.shape == (5, len(space.token_choices()), model.vocab.size)
    assert torch.isneginf(log_probs[:, ~model.vocab.valid]).all()  # invalid entries carry no mass
    assert torch.isfinite(log_probs[:, model.vocab.valid]).all()


@pytest.mark.parametrize("name", sorted(SPACES))
def test_no_decoded_genotype_is_ever_invalid(name: str) -> None:
    """Random embeddings (not only encoder outputs), decoded by untrained and moved models."""
    space = SPACES[name]
    torch.manual_seed(0)
    model = NAOModel(space.token_choices(), space.token_kinds(), embedding=8, hidden=16)
    length = len(space.token_choices())
    for trial in range(5):
        states = F.normalize(torch.randn(200, length, 16) * (1 + 10 * trial), dim=-1)
        with torch.no_grad():
            model.output.bias.normal_(0, 5)  # push the logits towards arbitrary entries
        tokens = model.decode(states)
        assert tokens.shape == (200, length)
        for row in tokens.tolist():
            space.validate(space.from_tokens(row))


def test_ascent_moves_the_embedding_uphill_for_the_predictor() -> None:
    space = SPACES["micro_small"]
    torch.manual_seed(0)
    model = NAOModel(space.token_choices(), space.token_kinds(), embedding=8, hidden=16)
    tokens = torch.tensor([space.to_tokens(space.sample(np.random.default_rng(i))) for i in range(16)])
    small, large = model.ascend(tokens, 0.1), model.ascend(tokens, 1.0)
    assert torch.allclose(small.predicted_before, large.predicted_before)
    assert (small.predicted_after >= small.predicted_before - 1e-6).all()
    assert large.predicted_after.mean() > small.predicted_after.mean() > small.predicted_before.mean()
    assert not any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())  # no stray grads


def _planted_data(space: MicroSpace, n: int, seed: int = 0):
    evaluator = PlantedEvaluator(space, seed=seed)
    rng = np.random.default_rng(seed)
    genotypes = [space.sample(rng) for _ in range(n)]
    scores = np.array([evaluator.score(g) for g in genotypes])
    return evaluator, genotypes, scores


def test_training_learns_the_planted_score_and_ascent_improves_the_true_score() -> None:
    """On a planted score, predicted and true scores of decoded architectures rise over their seeds."""
    space = MicroSpace(3, "enas")
    evaluator, genotypes, scores = _planted_data(space, 300)
    train, test = slice(0, 260), slice(260, 300)
    lo, hi = scores[train].min(), scores[train].max()
    rng = np.random.default_rng(1)
    tokens, targets = [], []
    for g, s in zip(genotypes[train], scores[train]):
        for twin in (g, space.random_symmetry(g, rng)):
            tokens.append(space.to_tokens(twin))
            targets.append((s - lo) / (hi - lo))
    torch.manual_seed(0)
    model = NAOModel(space.token_choices(), space.token_kinds(), embedding=16, hidden=48)
    losses = fit(model, torch.tensor(tokens), torch.tensor(targets), epochs=60, batch_size=50, seed=0)
    assert losses["nao/mse"] < 0.02

    seeds = torch.tensor([space.to_tokens(g) for g in genotypes[test]])
    from naslab.rank_agreement import pairwise_accuracy

    assert pairwise_accuracy(scores[test], model.predict_tokens(seeds).tolist()) > 0.7
    ascent = model.ascend(seeds, 10.0)
    assert ascent.predicted_after.mean() > ascent.predicted_before.mean() + 0.05
    assert model.predict_tokens(ascent.tokens).mean() > ascent.predicted_before.mean() + 0.05  # f(E(x')) too
    decoded = [space.from_tokens(t) for t in ascent.tokens.tolist()]
    true_after = np.array([evaluator.score(g) for g in decoded])
    assert true_after.mean() > scores[test].mean() + 0.02
    # the gain is the ascent's, not the decoder's: decoding the unmoved embedding gives the seeds back
    unmoved = [space.from_tokens(t) for t in model.ascend(seeds, 0.0).tokens.tolist()]
    assert np.mean([evaluator.score(g) for g in unmoved]) < true_after.mean() - 0.02


def test_unlabelled_rows_enter_the_reconstruction_loss_only() -> None:
    space = SPACES["micro_small"]
    torch.manual_seed(0)
    model = NAOModel(space.token_choices(), space.token_kinds(), embedding=8, hidden=16).eval()
    tokens = torch.tensor([space.to_tokens(space.sample(np.random.default_rng(i))) for i in range(6)])
    scores = torch.tensor([0.1, float("nan"), 0.9, float("nan"), 0.5, float("nan")])
    scored = ~scores.isnan()
    mse, nll = model.losses(tokens, scores)
    labelled_mse, _ = model.losses(tokens[scored], scores[scored])
    _, all_nll = model.losses(tokens, torch.zeros(6))
    assert torch.allclose(mse, labelled_mse) and torch.equal(nll, all_nll)
    mse, nll = model.losses(tokens[~scored], scores[~scored])  # a batch of unlabelled cells only
    assert mse.item() == 0 and nll.item() > 0
    (0.8 * mse + 0.2 * nll).backward()
    assert all(p.grad is None or p.grad.isfinite().all() for p in model.parameters())
