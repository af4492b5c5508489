"""Common machinery for the NAS image datamodules.

Every dataset exposes the same three splits so that search strategies and final training never
disagree about which images they may look at:

* ``search-train``: the train set minus a held-out part, used to fit weights during the search;
* ``search-valid``: the held-out part of the TRAIN set, used to score candidate architectures;
* ``test``: the official test set, touched only in ``phase="final"`` (re-training the chosen
  architecture), never during the search, so reported test accuracy is not selection-biased.
"""

from __future__ import annotations

import abc
import logging
import pickle
from typing import Any, Callable, ClassVar, Iterator, Sequence

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset, default_collate

from naslab.errors import MissingDataError  # noqa: F401  (re-exported: the datamodules raise it)

log = logging.getLogger(__name__)

PHASES = ("search", "final")
# The test-set cap must not depend on split_seed (the test set is the same for every seed).
_TEST_CAP_SEED = 0
VALID_CACHE_BYTES = 1 << 30  # search-valid images kept transformed in memory up to this size (CIFAR-10: 307 MB)


class EpochShuffleSampler(Sampler[int]):
    """A random order that depends only on (seed, epoch): a run resumed at epoch e sees the same order.

    Lightning calls `set_epoch` at the start of every epoch (as for DistributedSampler), so a
    training loop restarted from a checkpoint draws exactly the batches the uninterrupted one drew,
    which a sampler with one running generator cannot do.
    """

    def __init__(self, num_samples: int, seed: int) -> None:
        self.num_samples, self.seed, self.epoch = num_samples, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        # A generator: the order is drawn at the first `next`, after Lightning's `set_epoch` (a resumed
        # loop creates its iterator before calling it).
        generator = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) % 2**63)
        yield from torch.randperm(self.num_samples, generator=generator).tolist()

    def __len__(self) -> int:
        return self.num_samples


class TransformedDataset(Dataset):
    """Applies a transform to the image of an ``(image, label)`` dataset.

    Lets the train images be decoded/indexed once and served twice (train transform for
    search-train, eval transform for search-valid) without duplicating them in memory.
    """

    def __init__(self, dataset: Dataset, transform: Callable | None) -> None:
        self.dataset = dataset
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        image, label = self.dataset[index]
        if self.transform is not None:
            image = self.transform(image)
        return image, label


def resolve_count(size: int | float, n: int, what: str) -> int:
    """Turns an int count or a float fraction of ``n`` into a count in ``[1, n - 1]``."""
    if isinstance(size, bool) or not isinstance(size, (int, float)):
        raise TypeError(f"{what} must be an int count or a float fraction, got {size!r}")
    if isinstance(size, float):
        if not 0.0 < size < 1.0:
            raise ValueError(f"{what} as a fraction must be in (0, 1), got {size}")
        count = max(1, int(round(size * n)))
    else:
        count = size
    if not 1 <= count < n:
        raise ValueError(f"{what}={size} leaves no images on one side of a train set of {n}")
    return count


class ImageDataModule(L.LightningDataModule, abc.ABC):
    """Abstract search/final datamodule; subclasses only say how to load and transform images.

    ``name``, ``num_classes`` and ``input_shape`` (C, H, W) are class attributes so that a network
    can be built from the datamodule before any data is read.

    Args:
        data_dir: root folder holding the dataset files (layout documented per subclass).
        batch_size: training batch size.
        eval_batch_size: batch size of the search-valid/test loaders (``batch_size`` if None).
        search_valid_size: images held out of the train set for search-valid; an int is a count,
            a float a fraction. Ignored in the final phase.
        phase: ``"search"`` (search-train / search-valid) or ``"final"`` (whole train / test).
        num_workers: DataLoader workers.
        split_seed: seeds the permutation that picks the held-out images, so runs can vary or fix
            the split independently of the training seed.
        cutout: side of the Cutout square on training images; 0 disables it. Independent of
            ``augment``.
        augment: random crop/flip style augmentation of training images.
        download: let torchvision download the data where it can; never done otherwise.
        max_train_samples: cap on the training split (first N of the seeded permutation), for
            debug runs.
        max_test_samples: cap on the test split (first N of a fixed permutation), for debug runs.
    """

    name: ClassVar[str]
    num_classes: int
    input_shape: tuple[int, int, int]

    def __init__(
        self,
        data_dir: str = "data",
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        search_valid_size: int | float = 0.1,
        phase: str = "search",
        num_workers: int = 0,
        split_seed: int = 0,
        cutout: int = 0,
        augment: bool = True,
        download: bool = False,
        max_train_samples: int | None = None,
        max_test_samples: int | None = None,
    ) -> None:
        super().__init__()
        if phase not in PHASES:
            raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
        if batch_size < 1 or (eval_batch_size is not None and eval_batch_size < 1):
            raise ValueError("batch sizes must be positive")
        if cutout < 0:
            raise ValueError(f"cutout must be >= 0, got {cutout}")
        for cap_name, cap in (("max_train_samples", max_train_samples), ("max_test_samples", max_test_samples)):
            if cap is not None and cap < 1:
                raise ValueError(f"{cap_name} must be positive or None, got {cap}")
        self.data_dir = str(data_dir)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.search_valid_size = search_valid_size
        self.phase = phase
        self.num_workers = num_workers
        self.split_seed = split_seed
        self.cutout = cutout
        self.augment = augment
        self.download = download
        self.max_train_samples = max_train_samples
        self.max_test_samples = max_test_samples
        self.train_set: Dataset | None = None
        self.valid_set: Dataset | None = None
        self.test_set: Dataset | None = None
        self.train_indices: list[int] = []
        self.valid_indices: list[int] = []
        self._valid_cache: tuple[torch.Tensor, torch.Tensor] | bool | None = None  # see _valid_tensors

    # -- subclass interface ---------------------------------------------------------------------
    @abc.abstractmethod
    def _transforms(self) -> tuple[Callable, Callable]:
        """Returns ``(train_transform, eval_transform)``."""

    @abc.abstractmethod
    def _read_train(self) -> Dataset:
        """The whole train set as untransformed (image, label) pairs; read once, then cached."""

    @abc.abstractmethod
    def _read_test(self) -> Dataset:
        """The official test set as untransformed (image, label) pairs."""

    @abc.abstractmethod
    def check_files(self) -> None:
        """Raises MissingDataError if the files are not in ``data_dir``."""

    def _download(self) -> None:
        """Fetches the data (only called when ``download=True``); no-op where impossible."""

    def _materialize(self) -> None:
        """Puts data from a declared local source in place before checking (no-op by default)."""

    # -- LightningDataModule hooks --------------------------------------------------------------
    def prepare_data(self) -> None:
        """Runs once per node: local materialisation, optional download, then a file check."""
        self._materialize()
        if self.download:
            self._download()
        self.check_files()

    def setup(self, stage: str | None = None) -> None:
        """Builds the splits; idempotent because Lightning calls it once per stage."""
        if self.train_set is not None:
            return
        self._materialize()
        self.check_files()
        train_tf, eval_tf = self._transforms()
        # The train images are read once and served with two transforms (search-train / -valid).
        train_images = self._readable(self._read_train)
        train_full = TransformedDataset(train_images, train_tf)
        n = len(train_full)  # type: ignore[arg-type]
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.split_seed)).tolist()
        if self.phase == "search":
            n_valid = resolve_count(self.search_valid_size, n, "search_valid_size")
            valid_idx, train_idx = perm[:n_valid], perm[n_valid:]
            self.valid_indices = sorted(valid_idx)
            self.valid_set = Subset(TransformedDataset(train_images, eval_tf), self.valid_indices)
        else:
            train_idx = perm
            self.test_set = self._capped(
                TransformedDataset(self._readable(self._read_test), eval_tf), self.max_test_samples
            )
        if self.max_train_samples is not None:
            train_idx = train_idx[: self.max_train_samples]
        self.train_indices = sorted(train_idx)
        self.train_set = Subset(train_full, self.train_indices)
        log.info("%s splits: %s", self.name, self.describe())

    def _readable(self, read: Callable[[], Dataset]) -> Dataset:
        """`read()`, where files that are there but cannot be decoded (truncated or corrupt: a broken
        download, a wrong file under the expected name) are one MissingDataError line naming the dataset."""
        try:
            return read()
        except (pickle.UnpicklingError, EOFError, ValueError, OSError, RuntimeError, IndexError) as err:
            if isinstance(err, MissingDataError):
                raise
            raise MissingDataError(
                f"{self.name} files under {self.data_dir} are there but unreadable ({type(err).__name__}: "
                f"{str(err).splitlines()[0] if str(err) else 'corrupt'}); replace them with a fresh copy"
            ) from err

    @staticmethod
    def _capped(dataset: Dataset, cap: int | None) -> Dataset:
        n = len(dataset)  # type: ignore[arg-type]
        if cap is None or cap >= n:
            return dataset
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(_TEST_CAP_SEED))
        return Subset(dataset, sorted(perm[:cap].tolist()))

    def _loader(self, dataset: Dataset, batch_size: int, shuffle: bool, stream: int = 0) -> DataLoader:
        # The order derives from torch's global seed (lightning.seed_everything fixes it), the epoch
        # and `stream`, so two shuffled loaders of one run do not share a permutation.
        seed = torch.initial_seed() + stream
        sampler = EpochShuffleSampler(len(dataset), seed) if shuffle else None  # type: ignore[arg-type]
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            drop_last=False,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),  # page-locked batches: asynchronous host-to-GPU copies
            persistent_workers=self.num_workers > 0,
            # Without its own generator, every pass over a loader draws a worker base seed from the
            # global RNG: scoring on search-valid would then change the augmentation of later training.
            generator=torch.Generator().manual_seed(seed % 2**63),
        )

    def shuffled_valid_dataloader(self) -> DataLoader:
        """search-valid as training data: train transform, random order, the training batch size.

        DARTS' architecture steps draw their batches from the held-out half exactly as the weight
        steps draw from the other half (the authors' code augments both); scoring architectures
        uses unaugmented search-valid images (`val_dataloader`, `random_valid_batches`).
        """
        self._require_setup()
        if self.valid_set is None or not isinstance(self.train_set, Subset):
            raise RuntimeError("the shuffled search-valid loader exists only in the search phase")
        augmented = Subset(self.train_set.dataset, self.valid_indices)  # same images, train transform
        return self._loader(augmented, self.batch_size, shuffle=True, stream=1)

    def random_valid_batches(
        self, num_batches: int, batch_size: int | None = None, generator: torch.Generator | None = None
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """`num_batches` batches of search-valid images drawn at random, as a weight-sharing score reads them.

        ENAS scores every sampled architecture on its own shuffled validation batch (melodyguan/enas
        micro_child.py `build_valid_rl`: `tf.train.shuffle_batch` of `batch_size`). The images are random
        indices of search-valid without replacement (distinct within one call while `num_batches *
        batch_size` fits in the split; beyond that a fresh permutation continues), served with the eval
        transform (no augmentation) and collated like the loaders' batches. `batch_size` None = the
        training batch size (ENAS: `batch_size`); a batch larger than the split is the whole split.
        `generator` alone decides the draw: the global RNG is left alone, so scoring cannot change training.
        """
        if num_batches < 1:
            raise ValueError(f"num_batches must be >= 1, got {num_batches}")
        self._require_setup()
        if self.valid_set is None:
            raise RuntimeError("search-valid batches exist only in the search phase")
        n = len(self.valid_set)  # type: ignore[arg-type]
        size = min(batch_size or self.batch_size, n)
        need = num_batches * size
        order = torch.cat([torch.randperm(n, generator=generator) for _ in range(-(-need // n))])
        cached = self._valid_tensors()
        if cached is not None:  # the same rows default_collate would stack, without transforming them again
            images, labels = cached
            return [(images[ids], labels[ids]) for ids in order[: num_batches * size].split(size)]
        ids = order.tolist()
        return [
            default_collate([self.valid_set[i] for i in ids[b * size : (b + 1) * size]]) for b in range(num_batches)
        ]

    def _valid_tensors(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """search-valid through the eval transform, as (images, labels) tensors, or None if it is too big.

        Weight-sharing searches score thousands of architectures on random search-valid batches (NAO-WS:
        1000 per generation on 500 images each); the eval transform has no randomness, so its images are
        transformed once and indexed after that. Splits over `VALID_CACHE_BYTES` (ImageNet) are served
        image by image as before.
        """
        if self._valid_cache is None:
            assert self.valid_set is not None
            first = self.valid_set[0][0]
            n = len(self.valid_set)  # type: ignore[arg-type]
            if not isinstance(first, torch.Tensor) or first.element_size() * first.numel() * n > VALID_CACHE_BYTES:
                self._valid_cache = False
            else:
                images, labels = default_collate([self.valid_set[i] for i in range(n)])
                self._valid_cache = (images, labels)
        return self._valid_cache or None

    def _require_setup(self) -> None:
        if self.train_set is None:
            self.setup()

    def train_dataloader(self) -> DataLoader:
        """search-train in the search phase, the whole (capped) train set in the final phase."""
        self._require_setup()
        assert self.train_set is not None
        return self._loader(self.train_set, self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader | Sequence[DataLoader]:
        """search-valid in the search phase; ``[]`` in the final phase (no validation there)."""
        self._require_setup()
        if self.phase == "final":
            return []
        assert self.valid_set is not None
        return self._loader(self.valid_set, self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        """The test set; refused in the search phase so it cannot leak into model selection."""
        if self.phase != "final":
            raise RuntimeError("test set is only for final training (phase='final')")
        self._require_setup()
        assert self.test_set is not None
        return self._loader(self.test_set, self.eval_batch_size, shuffle=False)

    def describe(self) -> dict[str, Any]:
        """Split sizes and the knobs that determine them, for experiment logs."""
        size = lambda ds: None if ds is None else len(ds)  # noqa: E731
        return {
            "dataset": self.name,
            "phase": self.phase,
            "num_classes": self.num_classes,
            "input_shape": tuple(self.input_shape),
            "split_seed": self.split_seed,
            "train": size(self.train_set),
            "search_valid": size(self.valid_set),
            "test": size(self.test_set),
        }
