"""Word-level language-modelling data: Penn Treebank and WikiText-2 as AWD-LSTM / ENAS / DARTS read them.

Each line is split on whitespace and ends with `<eos>`; the vocabulary is built from the train file
only (PTB: 10,000 words, WikiText-2: 33,278, as the papers report), and a word of the valid or test
file that is not in it becomes `<unk>` (both corpora are closed-vocabulary, so this never happens on
the real files). A split is one long stream of token ids, cut into `batch_size` parallel columns
(`batchify`: the tail that does not fill a row is dropped, as in the reference code) and read in
windows of `bptt` steps: `(x, y)` with y the stream shifted by one.

Training windows have variable length as in AWD-LSTM: the base length is `bptt` with probability
0.95 and `bptt / 2` otherwise, then drawn from N(base, 5), at least `min_seq_len` and at most
`bptt + max_seq_len_delta`. Windows follow each other without gaps or overlaps, so every position
of the stream is a target exactly once per epoch. The lengths depend only on (seed, epoch):
`BPTTSampler.set_epoch` is called by Lightning, so a resumed run replays the same windows. A
training loop rescales its learning rate by `len / bptt` per window (AWD-LSTM does).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Iterator, Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from naslab.data.base import PHASES, MissingDataError

log = logging.getLogger(__name__)
EOS = "<eos>"
UNK = "<unk>"
SPLITS = ("train", "valid", "test")
IMAGE_ONLY_OPTIONS = frozenset(
    {"cutout", "search_valid_size", "split_seed", "max_train_samples", "max_test_samples", "download"}
)


@dataclass
class Vocabulary:
    """Words in order of first appearance in the train file (the reference code's order)."""

    words: list[str]

    def __post_init__(self) -> None:
        self.index = {w: i for i, w in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    @classmethod
    def from_lines(cls, lines: Sequence[str]) -> Vocabulary:
        seen: dict[str, None] = {}
        for line in lines:
            for word in line.split() + [EOS]:
                seen.setdefault(word, None)
        return cls(list(seen))

    def encode(self, lines: Sequence[str], what: str) -> torch.Tensor:
        """Token ids of the lines (each ending in <eos>); unknown words become <unk>, or an error."""
        unk = self.index.get(UNK)
        ids: list[int] = []
        for n, line in enumerate(lines):
            for word in line.split() + [EOS]:
                i = self.index.get(word, unk)
                if i is None:
                    raise ValueError(f"{what} line {n + 1}: word '{word}' is not in the train vocabulary (no <unk>)")
                ids.append(i)
        return torch.tensor(ids, dtype=torch.long)


def batchify(stream: torch.Tensor, batch_size: int) -> torch.Tensor:
    """(steps, batch_size): column j is the j-th contiguous slice of the stream; the tail is dropped."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    steps = stream.numel() // batch_size
    if steps < 2:
        raise ValueError(f"a stream of {stream.numel()} tokens is too short for {batch_size} columns")
    return stream[: steps * batch_size].view(batch_size, steps).t().contiguous()


def window_lengths(
    num_steps: int,
    bptt: int,
    rng: np.random.Generator | None,
    min_seq_len: int = 5,
    max_seq_len_delta: int = 20,
    seq_len_std: float = 5.0,
) -> list[int]:
    """Lengths of consecutive windows covering positions 0..num_steps-2 (each needs a next token).

    With `rng` None every window is `bptt` long (evaluation); otherwise AWD-LSTM's random lengths:
    base `bptt` (probability 0.95) or `bptt / 2`, drawn from N(base, seq_len_std). `seq_len_std=0`
    takes the base itself, as DARTS' search does (quark0/darts rnn/train_search.py: 35, or 17, with
    the normal draw commented out).
    """
    if bptt < 1:
        raise ValueError(f"bptt must be >= 1, got {bptt}")
    lengths, start, end = [], 0, num_steps - 1
    while start < end:
        length = bptt
        if rng is not None:
            base = bptt if rng.random() < 0.95 else bptt / 2
            length = max(min_seq_len, int(rng.normal(base, seq_len_std) if seq_len_std > 0 else base))
            length = min(length, bptt + max_seq_len_delta)
        length = min(length, end - start)
        lengths.append(length)
        start += length
    return lengths


class BPTTSampler(Sampler[tuple[int, int]]):
    """(start, length) of each window of an epoch; random lengths are a function of (seed, epoch)."""

    def __init__(
        self,
        num_steps: int,
        bptt: int,
        seed: int | None,
        min_seq_len: int = 5,
        max_seq_len_delta: int = 20,
        seq_len_std: float = 5.0,
    ):
        self.num_steps, self.bptt, self.seed, self.epoch = num_steps, bptt, seed, 0
        self.min_seq_len, self.max_seq_len_delta, self.seq_len_std = min_seq_len, max_seq_len_delta, seq_len_std

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def windows(self) -> list[tuple[int, int]]:
        rng = None if self.seed is None else np.random.default_rng([self.seed % 2**63, self.epoch])
        lengths = window_lengths(
            self.num_steps, self.bptt, rng, self.min_seq_len, self.max_seq_len_delta, self.seq_len_std
        )
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(int).tolist()
        return list(zip(starts, lengths))

    def __iter__(self) -> Iterator[tuple[int, int]]:
        # A generator: the windows are drawn at the first `next`, not at `iter`. A resumed Lightning
        # loop creates its iterator before it calls `set_epoch`; an eager list would replay epoch 0.
        yield from self.windows()

    # No __len__, on purpose: the number of windows changes from epoch to epoch. Lightning computes a
    # sized loader's length once and validates when the batch index reaches it, so an epoch with fewer
    # windows than the first would never validate and a longer one would validate before its end. An
    # unsized loader is validated when it is exhausted: at every epoch's end.


class StreamWindows(Dataset):
    """dataset[(start, length)] = (x, y): rows start..start+length of a batchified stream and the next."""

    def __init__(self, data: torch.Tensor):
        self.data = data

    def __len__(self) -> int:
        return self.data.size(0) - 1

    def __getitem__(self, window: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        start, length = window
        return self.data[start : start + length], self.data[start + 1 : start + 1 + length]


class TextDataModule(L.LightningDataModule):
    """Train / valid / test token streams of a word-level corpus.

    In the search phase the loaders are train and valid (the papers search on PTB's validation set);
    the final phase adds test. Batches are `(x, y)` of shape (length, batch) with integer token ids.

    Args:
        data_dir: folder holding the corpus files (see `file_candidates`).
        batch_size: columns of the training stream (DARTS search 256, final 64; ENAS 64).
        eval_batch_size: columns of the valid stream (10 in the reference code).
        test_batch_size: columns of the test stream (1 in the reference code).
        bptt: window length (35).
        min_seq_len, max_seq_len_delta: bounds of the random training window lengths (5, 20).
        seq_len_std: spread of the random lengths around bptt (AWD-LSTM: 5; 0: bptt or bptt / 2 exactly).
        phase: "search" or "final".
        seed: seeds the window lengths (with the epoch); None = fixed `bptt` windows everywhere.
        max_train_tokens: cap on the training stream (its first N tokens), for debug runs.
        image_options: options of the image datamodules (`IMAGE_ONLY_OPTIONS`: cutout, the search-valid
            split, sample caps) are accepted and ignored, so `debug=fast` and the pipeline's final-training
            call compose with any dataset; anything else is an error.
    """

    name: ClassVar[str]
    files: ClassVar[dict[str, tuple[str, ...]]]  # split -> candidate paths relative to data_dir
    source: ClassVar[str]  # where to get the files

    def __init__(
        self,
        data_dir: str = "data",
        batch_size: int = 64,
        eval_batch_size: int = 10,
        test_batch_size: int = 1,
        bptt: int = 35,
        min_seq_len: int = 5,
        max_seq_len_delta: int = 20,
        seq_len_std: float = 5.0,
        phase: str = "search",
        seed: int | None = 0,
        max_train_tokens: int | None = None,
        num_workers: int = 0,
        **image_options: object,
    ) -> None:
        super().__init__()
        unknown = sorted(set(image_options) - IMAGE_ONLY_OPTIONS)
        if unknown:
            raise TypeError(f"{type(self).__name__} got unknown options {unknown}")
        if phase not in PHASES:
            raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
        self.data_dir, self.phase = Path(data_dir), phase
        self.batch_sizes = {"train": batch_size, "valid": eval_batch_size, "test": test_batch_size}
        self.bptt, self.min_seq_len, self.max_seq_len_delta = bptt, min_seq_len, max_seq_len_delta
        if seq_len_std < 0:
            raise ValueError(f"seq_len_std must be >= 0, got {seq_len_std}")
        self.seq_len_std = seq_len_std
        self.seed, self.max_train_tokens, self.num_workers = seed, max_train_tokens, num_workers
        self.vocabulary: Vocabulary | None = None
        self.streams: dict[str, torch.Tensor] = {}

    def file_path(self, split: str) -> Path:
        """The first candidate of `split` that exists, or the one-line MissingDataError."""
        candidates = [self.data_dir / c for c in self.files[split]]
        for path in candidates:
            if path.is_file():
                return path
        raise MissingDataError(
            f"{self.name}: no {split} file in {self.data_dir} (looked for {', '.join(map(str, candidates))}); "
            f"get it from {self.source}"
        )

    def prepare_data(self) -> None:
        for split in SPLITS:
            self.file_path(split)

    def setup(self, stage: str | None = None) -> None:
        if self.vocabulary is not None:
            return
        lines = {s: self.file_path(s).read_text(encoding="utf-8").splitlines() for s in SPLITS}
        self.vocabulary = Vocabulary.from_lines(lines["train"])
        self.streams = {s: self.vocabulary.encode(lines[s], f"{self.name} {s}") for s in SPLITS}
        if self.max_train_tokens is not None:
            self.streams["train"] = self.streams["train"][: self.max_train_tokens]
        log.info(
            "%s: vocabulary %d, tokens %s",
            self.name,
            len(self.vocabulary),
            {s: int(t.numel()) for s, t in self.streams.items()},
        )

    @property
    def vocab_size(self) -> int:
        if self.vocabulary is None:
            self.setup()
        assert self.vocabulary is not None
        return len(self.vocabulary)

    def _loader(self, split: str, seed: int | None, columns: int | None = None) -> DataLoader:
        """Windows of `split` in `columns` (default: the split's batch size); seed None = fixed bptt."""
        if self.vocabulary is None:
            self.setup()
        data = batchify(self.streams[split], columns or self.batch_sizes[split])
        sampler = BPTTSampler(data.size(0), self.bptt, seed, self.min_seq_len, self.max_seq_len_delta, self.seq_len_std)
        return DataLoader(StreamWindows(data), sampler=sampler, batch_size=None, num_workers=self.num_workers)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.seed)

    def val_dataloader(self) -> DataLoader:
        return self._loader("valid", None)

    def test_dataloader(self) -> DataLoader:
        if self.phase != "final":
            raise RuntimeError("test set is only for final training (phase='final')")
        return self._loader("test", None)

    def random_valid_batches(
        self, num_batches: int, batch_size: int | None = None, generator: torch.Generator | None = None
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """`num_batches` consecutive `bptt` windows of the valid stream from a random starting window.

        A weight-sharing score of a language model reads windows in order with the hidden state carried
        from a zero start (`train.objectives.evaluate_perplexity`), so the random part is where the run of
        windows starts: a window index drawn uniformly among those that leave `num_batches` windows
        (all of them from the first when the stream has fewer). `batch_size` = columns of the stream
        (None = the valid loader's `eval_batch_size`, what the scores read before). `generator` alone
        decides the start; the global RNG is left alone.
        """
        if num_batches < 1:
            raise ValueError(f"num_batches must be >= 1, got {num_batches}")
        if self.vocabulary is None:
            self.setup()
        data = batchify(self.streams["valid"], batch_size or self.batch_sizes["valid"])
        windows = BPTTSampler(data.size(0), self.bptt, None).windows()
        count = min(num_batches, len(windows))
        start = int(torch.randint(len(windows) - count + 1, (1,), generator=generator))
        dataset = StreamWindows(data)
        return [dataset[w] for w in windows[start : start + count]]

    def shuffled_valid_dataloader(self) -> DataLoader:
        """DARTS' architecture batches: the valid stream in `batch_size` columns, fixed `bptt` windows.

        The image datamodules shuffle their held-out half; a text stream keeps its order (the hidden
        state runs through it), read in `bptt` windows as DARTS' rnn/train_search.py reads `search_data`.
        """
        return self._loader("valid", None, columns=self.batch_sizes["train"])


class PTBDataModule(TextDataModule):
    """Penn Treebank, Mikolov's version: 929k / 73k / 82k tokens, vocabulary 10,000."""

    name = "ptb"
    files = {s: (f"ptb/ptb.{s}.txt", f"ptb.{s}.txt", f"penn/{s}.txt") for s in SPLITS}
    source = "simple-examples.tgz of Mikolov's RNNLM toolkit (data/ptb.*.txt), or torchtext's PennTreebank"


class WikiText2DataModule(TextDataModule):
    """WikiText-2 v1 (tokenised): 2,088k / 218k / 246k tokens, vocabulary 33,278."""

    name = "wikitext2"
    files = {s: (f"wikitext-2/wiki.{s}.tokens", f"wiki.{s}.tokens", f"wikitext-2/{s}.txt") for s in SPLITS}
    source = "wikitext-2-v1.zip (Merity et al. 2016; Salesforce research / Hugging Face 'wikitext-2-v1')"
