"""Data sets that ship inside a dependency (scikit-learn's digits, wine): held in memory, split once.

Both need the same machinery: load the whole set, cut a fixed stratified test split that does not
depend on `split_seed` (so the test accuracies of different seeds are comparable), and serve the
train and test rows as `TensorDataset`s to `ImageDataModule`'s samplers and loaders. Subclasses say
only how to load the data (`_load_data`) and how to transform it (`_transforms`).
"""

from __future__ import annotations

import abc

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch.utils.data import Dataset, TensorDataset

from naslab.data.base import ImageDataModule

TEST_FRACTION = 0.2
TEST_RANDOM_STATE = 0


class EmbeddedDataModule(ImageDataModule):
    """An in-memory data set with a fixed stratified 20% test split (``train_test_split(random_state=0)``);
    ``data_dir`` and ``download`` are unused."""

    # Lazily filled cache (a class-level default keeps the base class's __init__ signature).
    _arrays: tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray] | None = None

    @abc.abstractmethod
    def _load_data(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, integer labels) of the whole data set, one row per sample."""

    def check_files(self) -> None:
        """Nothing to check: the data is part of a dependency."""

    def _load_arrays(self) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray]:
        """(inputs, labels, train rows, test rows), loaded and split once."""
        if self._arrays is None:
            inputs, labels = self._load_data()
            train_idx, test_idx = train_test_split(
                np.arange(len(labels)),
                test_size=TEST_FRACTION,
                stratify=labels.numpy(),
                random_state=TEST_RANDOM_STATE,
            )
            self._arrays = (inputs, labels, np.sort(train_idx), np.sort(test_idx))
        return self._arrays

    def _subset(self, indices: np.ndarray) -> TensorDataset:
        inputs, labels, _, _ = self._load_arrays()
        idx = torch.from_numpy(indices)
        return TensorDataset(inputs[idx], labels[idx])

    def _read_train(self) -> Dataset:
        return self._subset(self._load_arrays()[2])

    def _read_test(self) -> Dataset:
        return self._subset(self._load_arrays()[3])

    @property
    def train_source_indices(self) -> np.ndarray:
        """Row numbers in the source data set of the train set (everything but the fixed test rows)."""
        return self._load_arrays()[2]

    @property
    def test_source_indices(self) -> np.ndarray:
        """Row numbers in the source data set of the fixed test set."""
        return self._load_arrays()[3]
