"""CIFAR-10 / CIFAR-100 in torchvision's on-disk layout, with the DARTS augmentation recipe.

The python-pickle batches are read here instead of through ``torchvision.datasets.CIFAR10``
because torchvision insists on the md5 of the official files; reading them ourselves (torchvision's
pixel layout, pickle ``encoding="bytes"``) accepts any file in the real format, e.g. the small
fixtures of the tests or a re-packed subset. torchvision is still used to download when asked.
"""

from __future__ import annotations

import os
import pickle
from typing import Any, Callable, ClassVar

import numpy as np
import torchvision
import torchvision.transforms as T
from PIL import Image
from torch.utils.data import Dataset

from naslab.data.base import ImageDataModule, MissingDataError
from naslab.data.transforms import build_pipeline

CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"


def _str_keys(entry: dict) -> dict[str, Any]:
    """Python-2 pickles load with bytes keys under ``encoding="bytes"``; normalise to str."""
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}


def read_cifar_batch(path: str) -> tuple[np.ndarray, list[int]]:
    """Reads one batch: ``data`` (N, 3072) uint8 as 3 CHW planes -> (N, 32, 32, 3) HWC images."""
    with open(path, "rb") as f:
        entry = _str_keys(pickle.load(f, encoding="bytes"))
    labels = entry["labels"] if "labels" in entry else entry["fine_labels"]
    data = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(data), [int(y) for y in labels]


def read_label_names(path: str, key: str) -> list[str]:
    with open(path, "rb") as f:
        names = _str_keys(pickle.load(f, encoding="bytes")).get(key, [])
    return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names]


class CIFARArrays(Dataset):
    """In-memory CIFAR images returned as PIL images, exactly like torchvision's CIFAR10."""

    def __init__(self, data: np.ndarray, targets: list[int], classes: list[str]) -> None:
        self.data, self.targets, self.classes = data, targets, classes

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        return Image.fromarray(self.data[index]), self.targets[index]


class _CIFARDataModule(ImageDataModule):
    """Shared CIFAR logic; subclasses only name their folder, files and statistics.

    ``search_valid_size`` defaults to 5,000 images, the held-out size used by NAO; all other
    arguments are the ImageDataModule ones (pass them by keyword).
    """

    input_shape = (3, 32, 32)
    base_folder: ClassVar[str]
    train_files: ClassVar[list[str]]
    test_files: ClassVar[list[str]]
    meta_file: ClassVar[str]
    meta_key: ClassVar[str]
    archive: ClassVar[str]
    mean: ClassVar[tuple[float, float, float]]
    std: ClassVar[tuple[float, float, float]]
    torchvision_class: ClassVar[type]

    def __init__(self, data_dir: str = "data", search_valid_size: int | float = 5000, **kwargs: Any) -> None:
        super().__init__(data_dir=data_dir, search_valid_size=search_valid_size, **kwargs)

    @property
    def folder(self) -> str:
        return os.path.join(self.data_dir, self.base_folder)

    def _missing(self) -> list[str]:
        names = self.train_files + self.test_files + [self.meta_file]
        return [n for n in names if not os.path.isfile(os.path.join(self.folder, n))]

    def check_files(self) -> None:
        missing = self._missing()
        if missing:
            raise MissingDataError(
                f"{self.name} not found: missing {', '.join(missing)} in {self.folder}; download "
                f"{self.archive} from {CIFAR_URL} and extract it into {self.data_dir}, "
                f"or set dataset.download=true"
            )

    def _download(self) -> None:
        if self._missing():
            # torchvision verifies the archive md5 and extracts it into data_dir/base_folder.
            self.torchvision_class(self.data_dir, train=True, download=True)

    def _transforms(self) -> tuple[Callable, Callable]:
        augment = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()] if self.augment else []
        train = build_pipeline(augment, self.mean, self.std, self.cutout)
        evaluation = build_pipeline([], self.mean, self.std)
        return train, evaluation

    def _read_train(self) -> CIFARArrays:
        return self._read(self.train_files)

    def _read_test(self) -> CIFARArrays:
        return self._read(self.test_files)

    def _read(self, files: list[str]) -> CIFARArrays:
        batches = [read_cifar_batch(os.path.join(self.folder, f)) for f in files]
        data = np.concatenate([b[0] for b in batches])
        targets = [y for b in batches for y in b[1]]
        classes = read_label_names(os.path.join(self.folder, self.meta_file), self.meta_key)
        return CIFARArrays(data, targets, classes)


class CIFAR10DataModule(_CIFARDataModule):
    """CIFAR-10 from ``data_dir/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}``."""

    name = "cifar10"
    num_classes = 10
    base_folder = "cifar-10-batches-py"
    train_files = [f"data_batch_{i}" for i in range(1, 6)]
    test_files = ["test_batch"]
    meta_file, meta_key = "batches.meta", "label_names"
    archive = "cifar-10-python.tar.gz"
    # DARTS' statistics, so accuracies are comparable with the published numbers.
    mean = (0.49139968, 0.48215827, 0.44653124)
    std = (0.24703233, 0.24348505, 0.26158768)
    torchvision_class = torchvision.datasets.CIFAR10


class CIFAR100DataModule(_CIFARDataModule):
    """CIFAR-100 (fine labels) from ``data_dir/cifar-100-python/{train,test,meta}``."""

    name = "cifar100"
    num_classes = 100
    base_folder = "cifar-100-python"
    train_files = ["train"]
    test_files = ["test"]
    meta_file, meta_key = "meta", "fine_label_names"
    archive = "cifar-100-python.tar.gz"
    mean = (0.5071, 0.4865, 0.4409)
    std = (0.2673, 0.2564, 0.2762)
    torchvision_class = torchvision.datasets.CIFAR100
