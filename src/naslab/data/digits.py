"""scikit-learn's 8x8 digits: a dataset that ships inside a dependency.

It needs no files and no network, so the whole search/final pipeline can be exercised end to end
on a laptop or in CI in seconds.
"""

from __future__ import annotations

from typing import Callable

import torch
import torchvision.transforms as T
from sklearn.datasets import load_digits

from naslab.data.embedded import EmbeddedDataModule
from naslab.data.transforms import build_pipeline

# Mean/std of all 1,797 images after scaling 0..16 to [0, 1].
DIGITS_MEAN = (0.3053,)
DIGITS_STD = (0.3760,)


class DigitsDataModule(EmbeddedDataModule):
    """1,797 8x8 grey digits, 10 classes; ``data_dir`` and ``download`` are unused (embedded).

    The test split is a fixed stratified 20% (``train_test_split(random_state=0)``) that does not
    depend on ``split_seed``, so final test accuracies of different seeds are comparable.
    """

    name = "digits"
    num_classes = 10
    input_shape = (1, 8, 8)

    def _load_data(self) -> tuple[torch.Tensor, torch.Tensor]:
        digits = load_digits()
        images = torch.from_numpy(digits.images / 16.0).float().unsqueeze(1)
        return images, torch.from_numpy(digits.target).long()

    def _transforms(self) -> tuple[Callable, Callable]:
        # A 1-pixel shift is the only augmentation that is cheap and sensible at 8x8.
        augment = [T.RandomCrop(8, padding=1)] if self.augment else []
        train = build_pipeline(augment, DIGITS_MEAN, DIGITS_STD, self.cutout, to_tensor=False)
        evaluation = build_pipeline([], DIGITS_MEAN, DIGITS_STD, 0, to_tensor=False)
        return train, evaluation
