"""Fashion-MNIST in torchvision's layout, optionally filled from Debian's dataset package.

Debian's ``dataset-fashion-mnist`` installs the four official ``*-ubyte.gz`` files under
``/usr/share/datasets/fashion-mnist``; decompressing them into ``data_dir`` gives exactly the files
torchvision would download, so machines without network can still use the real dataset.
"""

from __future__ import annotations

import gzip
import logging
import os
import shutil
import tempfile
from typing import Any, Callable

import torchvision
import torchvision.transforms as T
from torch.utils.data import Dataset

from naslab.data.base import ImageDataModule, MissingDataError
from naslab.data.transforms import build_pipeline

log = logging.getLogger(__name__)

RAW_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
DEBIAN_SOURCE = "/usr/share/datasets/fashion-mnist"
MEAN, STD = (0.2860,), (0.3530,)


class FashionMNISTDataModule(ImageDataModule):
    """Fashion-MNIST from ``data_dir/FashionMNIST/raw/`` (the four ``*-ubyte`` files).

    Args:
        source_dir: folder holding the four ``.gz`` files (Debian's location by default); used
            only to fill missing raw files in ``data_dir``. None disables it.
        **kwargs: ImageDataModule arguments (pass them by keyword).
    """

    name = "fashion_mnist"
    num_classes = 10
    input_shape = (1, 28, 28)

    def __init__(self, data_dir: str = "data", source_dir: str | None = DEBIAN_SOURCE, **kwargs: Any) -> None:
        super().__init__(data_dir=data_dir, **kwargs)
        self.source_dir = source_dir

    @property
    def raw_folder(self) -> str:
        return os.path.join(self.data_dir, "FashionMNIST", "raw")

    def _missing(self) -> list[str]:
        return [f for f in RAW_FILES if not os.path.isfile(os.path.join(self.raw_folder, f))]

    def _materialize(self) -> None:
        """Decompresses missing raw files from ``source_dir`` (atomically, safe across ranks)."""
        if self.source_dir is None:
            return
        for name in self._missing():
            src = os.path.join(self.source_dir, name + ".gz")
            if not os.path.isfile(src):
                continue
            os.makedirs(self.raw_folder, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.raw_folder, prefix=f".{name}.")
            try:
                with gzip.open(src, "rb") as fin, os.fdopen(fd, "wb") as fout:
                    shutil.copyfileobj(fin, fout)
                os.replace(tmp, os.path.join(self.raw_folder, name))
            finally:
                if os.path.exists(tmp):
                    os.remove(tmp)
            log.info("Fashion-MNIST: decompressed %s into %s", src, self.raw_folder)

    def check_files(self) -> None:
        missing = self._missing()
        if missing:
            source = f" (source_dir {self.source_dir} had no .gz copies)" if self.source_dir else ""
            raise MissingDataError(
                f"Fashion-MNIST not found: missing {', '.join(missing)} in {self.raw_folder}"
                f"{source}; run `apt-get install dataset-fashion-mnist` (installs the .gz files in "
                f"{DEBIAN_SOURCE}, used via source_dir) or set dataset.download=true"
            )

    def _download(self) -> None:
        if self._missing():
            torchvision.datasets.FashionMNIST(self.data_dir, train=True, download=True)

    def _transforms(self) -> tuple[Callable, Callable]:
        augment = [T.RandomCrop(28, padding=2), T.RandomHorizontalFlip()] if self.augment else []
        return build_pipeline(augment, MEAN, STD, self.cutout), build_pipeline([], MEAN, STD)

    def _read_train(self) -> Dataset:
        return self._read(train=True)

    def _read_test(self) -> Dataset:
        return self._read(train=False)

    def _read(self, train: bool) -> Dataset:
        return torchvision.datasets.FashionMNIST(self.data_dir, train=train, download=False)
