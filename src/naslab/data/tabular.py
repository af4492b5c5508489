"""Tabular classification data: feature vectors instead of images (for space=mlp, MLPNAS in the NAS overview).

The splits are the image datamodules' (`data.base`): a fixed stratified test split, search-train /
search-valid drawn from the rest by `split_seed`, the test set only in the final phase. Features are
standardised with the mean and standard deviation of the training split of the phase (search-train
in the search phase, the whole capped train set in the final one), never of search-valid or test.
`kind = "tabular"` tells the pipeline's `Task` that these are not images, so cell spaces refuse them.
"""

from __future__ import annotations

import abc
from typing import Any, Callable

import numpy as np
import torch
from sklearn.datasets import load_wine

from naslab.data.embedded import EmbeddedDataModule


class Standardise:
    """x -> (x - mean) / std per feature; the statistics are fitted on the training split in `setup`."""

    def __init__(self) -> None:
        self.mean: torch.Tensor | None = None
        self.std: torch.Tensor | None = None

    def fit(self, features: torch.Tensor) -> "Standardise":
        self.mean = features.mean(dim=0)
        std = features.std(dim=0, unbiased=False)
        self.std = torch.where(std > 0, std, torch.ones_like(std))  # a constant feature stays at 0
        return self

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.mean is None or self.std is None:
            raise RuntimeError("the standardisation is fitted on the training split in setup(); call setup() first")
        return (x - self.mean) / self.std


class TabularDataModule(EmbeddedDataModule):
    """Search/final datamodule of a table of numeric features; subclasses say how to load it.

    Reuses `EmbeddedDataModule`'s fixed test split and `ImageDataModule`'s splits, samplers and loaders
    (a row plays the part of an image). ``augment`` is ignored (no
    augmentation of feature vectors) and ``cutout`` must be 0.
    """

    kind = "tabular"
    input_shape: tuple[int, ...]  # (num_features,)

    _arrays: tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.cutout:
            raise ValueError(f"cutout={self.cutout} is an image augmentation; {self.name} has feature vectors: use 0")
        self.standardise = Standardise()

    @abc.abstractmethod
    def _load_table(self) -> tuple[np.ndarray, np.ndarray]:
        """(features (n, num_features), integer labels (n,)) of the whole data set."""

    def _load_data(self) -> tuple[torch.Tensor, torch.Tensor]:
        features, labels = self._load_table()
        return torch.as_tensor(features, dtype=torch.float32), torch.as_tensor(labels, dtype=torch.long)

    def _transforms(self) -> tuple[Callable, Callable]:
        return self.standardise, self.standardise  # no augmentation; statistics fitted in setup()

    def setup(self, stage: str | None = None) -> None:
        """The base class's splits, then the standardisation fitted on the training split only."""
        super().setup(stage)
        if self.standardise.mean is None:
            train_features = self._read_train().tensors[0]  # type: ignore[attr-defined]
            self.standardise.fit(train_features[torch.as_tensor(self.train_indices, dtype=torch.long)])

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "kind": self.kind}


class WineDataModule(TabularDataModule):
    """scikit-learn's embedded wine recognition data: 178 wines, 13 chemical features, 3 cultivars.

    Offline (part of scikit-learn). The test split is a fixed stratified 20 % (36 rows,
    ``train_test_split(random_state=0)``) that does not depend on ``split_seed``. Not the UCI
    Wine-Quality data MLPNAS used (Minutoli et al.'s NAS overview, Table 6), which scikit-learn does not ship.
    """

    name = "wine"
    num_classes = 3
    input_shape = (13,)

    def _load_table(self) -> tuple[np.ndarray, np.ndarray]:
        wine = load_wine()
        return wine.data, wine.target
