"""scikit-learn's 8x8 digits: a dataset that ships inside a dependency.

It needs no files and no network, so the whole search/final pipeline can be exercised end to end
on a laptop or in CI in seconds.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torchvision.transforms as T
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import Dataset, TensorDataset

from naslab.data.base import ImageDataModule
from naslab.data.transforms import build_pipeline

# Mean/std of all 1,797 images after scaling 0..16 to [0, 1].
DIGITS_MEAN = (0.3053,)
DIGITS_STD = (0.3760,)
TEST_FRACTION = 0.2
TEST_RANDOM_STATE = 0


class DigitsDataModule(ImageDataModule):
    """1,797 8x8 grey digits, 10 classes; ``data_dir`` and ``download`` are unused (embedded).

    The test split is a fixed stratified 20% (``train_test_split(random_state=0)``) that does not
    depend on ``split_seed``, so final test accuracies of different seeds are comparable.
    """

    name = "digits"
    num_classes = 10
    input_shape = (1, 8, 8)

    # Lazily filled caches (class-level defaults keep the base class's __init__ signature).
    _arrays: tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray] | None = None

    def check_files(self) -> None:
        """Nothing to check: the data is part of scikit-learn."""

    def _load_arrays(self) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray]:
        if self._arrays is None:
            digits = load_digits()
            images = torch.from_numpy(digits.images / 16.0).float().unsqueeze(1)
            labels = torch.from_numpy(digits.target).long()
            train_idx, test_idx = train_test_split(
                np.arange(len(labels)),
                test_size=TEST_FRACTION,
                stratify=digits.target,
                random_state=TEST_RANDOM_STATE,
            )
            self._arrays = (images, labels, np.sort(train_idx), np.sort(test_idx))
        return self._arrays

    def _subset(self, indices: np.ndarray) -> TensorDataset:
        images, labels, _, _ = self._load_arrays()
        idx = torch.from_numpy(indices)
        return TensorDataset(images[idx], labels[idx])

    def _transforms(self) -> tuple[Callable, Callable]:
        # A 1-pixel shift is the only augmentation that is cheap and sensible at 8x8.
        augment = [T.RandomCrop(8, padding=1)] if self.augment else []
        train = build_pipeline(augment, DIGITS_MEAN, DIGITS_STD, self.cutout, to_tensor=False)
        evaluation = build_pipeline([], DIGITS_MEAN, DIGITS_STD, 0, to_tensor=False)
        return train, evaluation

    def _read_train(self) -> Dataset:
        return self._subset(self._load_arrays()[2])

    def _read_test(self) -> Dataset:
        return self._subset(self._load_arrays()[3])

    @property
    def train_source_indices(self) -> np.ndarray:
        """Row numbers in ``load_digits()`` of the train set (to check the fixed test split)."""
        return self._load_arrays()[2]

    @property
    def test_source_indices(self) -> np.ndarray:
        """Row numbers in ``load_digits()`` of the fixed test set."""
        return self._load_arrays()[3]
