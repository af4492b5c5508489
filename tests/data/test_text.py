"""PTB / WikiText-2 datamodules on small files written in the real formats (and on the real files if present)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from naslab.data.base import MissingDataError
from naslab.data.text import BPTTSampler, PTBDataModule, Vocabulary, WikiText2DataModule, batchify, window_lengths
from tests.real_data import data_dir as real_data_dir
from tests.real_data import real_data_marks


def write_ptb(root: Path, train: str, valid: str = " a b \n", test: str = " b a \n") -> Path:
    folder = root / "ptb"
    folder.mkdir(parents=True, exist_ok=True)
    for split, text in (("train", train), ("valid", valid), ("test", test)):
        (folder / f"ptb.{split}.txt").write_text(text)
    return root


def test_vocabulary_is_built_from_train_with_eos_per_line_and_unk_for_unseen_words(tmp_path) -> None:
    write_ptb(tmp_path, " a b <unk> \n c a \n", valid=" a zebra \n\n")
    dm = PTBDataModule(tmp_path, batch_size=2)
    dm.setup()
    assert dm.vocabulary.words == ["a", "b", "<unk>", "<eos>", "c"] and dm.vocab_size == 5
    assert dm.streams["train"].tolist() == [0, 1, 2, 3, 4, 0, 3]  # <eos> ends every line
    assert dm.streams["valid"].tolist() == [0, 2, 3, 3]  # zebra -> <unk>; an empty line is one <eos>
    with pytest.raises(ValueError, match="word 'zebra' is not in the train vocabulary"):
        Vocabulary.from_lines(["a b"]).encode(["a zebra"], "valid")


def test_batchify_makes_contiguous_columns_and_drops_the_tail() -> None:
    data = batchify(torch.arange(11), 3)
    assert data.shape == (3, 3)
    assert data[:, 0].tolist() == [0, 1, 2] and data[:, 2].tolist() == [6, 7, 8]  # tokens 9, 10 dropped
    with pytest.raises(ValueError, match="too short"):
        batchify(torch.arange(3), 2)


@pytest.mark.parametrize("seed", [None, 0, 7])
def test_windows_cover_every_token_exactly_once_per_epoch(tmp_path, seed) -> None:
    rng = np.random.default_rng(1)
    lines = [" ".join(f"w{int(i)}" for i in rng.integers(0, 50, size=rng.integers(3, 20))) for _ in range(300)]
    write_ptb(tmp_path, "\n".join(lines) + "\n", valid=lines[0], test=lines[1])
    dm = PTBDataModule(tmp_path, batch_size=4, bptt=12, seed=seed)
    dm.setup()
    data = batchify(dm.streams["train"], 4)
    for epoch in range(2):
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(epoch)
        xs, ys = zip(*loader)
        assert torch.equal(torch.cat(xs), data[:-1]) and torch.equal(torch.cat(ys), data[1:])  # once each
        lengths = [len(x) for x in xs]
        assert all(1 <= n <= 12 + 20 for n in lengths) and all(n >= 5 for n in lengths[:-1])
        if seed is None:
            assert set(lengths[:-1]) == {12}
        else:
            assert len(set(lengths)) > 3  # AWD-LSTM's variable lengths


def test_window_lengths_depend_only_on_seed_and_epoch() -> None:
    a, b = BPTTSampler(1000, 35, seed=3), BPTTSampler(1000, 35, seed=3)
    assert a.windows() == b.windows()
    b.set_epoch(1)
    assert a.windows() != b.windows()
    a.set_epoch(1)  # a resumed run at epoch 1 replays epoch 1
    assert a.windows() == b.windows()
    assert sum(window_lengths(1000, 35, np.random.default_rng(0))) == 999


def test_darts_search_windows_are_bptt_or_half_of_it_without_the_normal_draw() -> None:
    """quark0/darts rnn/train_search.py: seq_len = int(35 if random() < 0.95 else 17.5), nothing else."""
    rng = np.random.default_rng(0)
    lengths = window_lengths(20_000, 35, rng, seq_len_std=0)
    assert set(lengths[:-1]) == {35, 17}  # the last window is cut by the stream's end
    share = lengths[:-1].count(17) / len(lengths[:-1])
    assert 0.03 < share < 0.07  # 5 % of the windows, over ~600 draws
    spread = set(window_lengths(20_000, 35, np.random.default_rng(0))[:-1])
    assert len(spread) > 10  # AWD-LSTM's N(base, 5), the default


def test_missing_files_are_one_clear_error(tmp_path) -> None:
    with pytest.raises(MissingDataError, match="ptb: no train file in .*simple-examples") as err:
        PTBDataModule(tmp_path).prepare_data()
    assert "\n" not in str(err.value)
    with pytest.raises(MissingDataError, match="wikitext2: no train file"):
        WikiText2DataModule(tmp_path).setup()


def test_search_phase_has_no_test_loader(tmp_path) -> None:
    write_ptb(tmp_path, " a b c d e f g h \n" * 10)
    with pytest.raises(RuntimeError, match="only for final training"):
        PTBDataModule(tmp_path, batch_size=2).test_dataloader()
    x, y = next(iter(PTBDataModule(tmp_path, batch_size=2, phase="final", bptt=4).test_dataloader()))
    assert x.shape == y.shape and x.shape[1] == 1


@pytest.mark.parametrize(
    ("module", "vocab", "tokens"),
    [
        pytest.param(PTBDataModule, 10_000, (929_589, 73_760, 82_430), marks=real_data_marks("ptb"), id="ptb"),
        pytest.param(
            WikiText2DataModule, 33_278, (2_088_628, 217_646, 245_569), marks=real_data_marks("wikitext-2"), id="wt2"
        ),
    ],
)
def test_real_corpora_have_the_published_sizes(module, vocab, tokens) -> None:
    dm = module(real_data_dir())
    dm.setup()
    assert dm.vocab_size == vocab
    assert tuple(int(dm.streams[s].numel()) for s in ("train", "valid", "test")) == tokens


def test_random_valid_batches_are_consecutive_windows_from_a_seeded_random_start(tmp_path) -> None:
    """A language model's weight-sharing score: `num_batches` windows in a row, hidden state carried."""
    rng = np.random.default_rng(0)
    lines = [" ".join(f"w{int(i)}" for i in rng.integers(0, 500, size=12)) for _ in range(300)]
    write_ptb(tmp_path, "\n".join(lines) + "\n", valid="\n".join(lines[:120]) + "\n", test=lines[0])
    dm = PTBDataModule(tmp_path, batch_size=4, eval_batch_size=3, bptt=5)
    dm.setup()
    data = batchify(dm.streams["valid"], 3)  # the valid stream in eval_batch_size columns, as the valid loader
    windows = [(x, y) for x, y in dm.val_dataloader()]
    state = torch.get_rng_state()
    starts = set()
    for seed in range(20):
        batches = dm.random_valid_batches(3, generator=torch.Generator().manual_seed(seed))
        (first,) = [k for k, (x, _) in enumerate(windows) if torch.equal(x, batches[0][0])]  # windows are distinct
        assert all(torch.equal(b[0], w[0]) and torch.equal(b[1], w[1]) for b, w in zip(batches, windows[first:]))
        assert len(batches) == 3 and batches[0][0].shape == (5, 3)
        starts.add(first)
        again = dm.random_valid_batches(3, generator=torch.Generator().manual_seed(seed))
        assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again))
    assert torch.equal(torch.get_rng_state(), state)  # the generator alone decides
    assert len(starts) > 5 and max(starts) <= len(windows) - 3  # random starts that leave three windows
    assert data.size(0) == sum(len(x) for x, _ in windows) + 1
    wide = dm.random_valid_batches(2, batch_size=4, generator=torch.Generator().manual_seed(0))
    assert wide[0][0].shape == (5, 4)  # batch_size = columns of the stream
    everything = dm.random_valid_batches(10_000, generator=torch.Generator().manual_seed(0))
    assert len(everything) == len(windows)  # more than the stream has: all of it, from the first window
