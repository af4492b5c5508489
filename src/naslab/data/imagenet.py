"""ImageNet (ILSVRC2012) as two torchvision ImageFolders, for mobile-setting final training.

torchvision cannot download ImageNet (licence), so the datamodule only checks the layout and says
precisely what is wrong; a class-count check catches half-extracted or unsorted folders early,
before an epoch is wasted with misaligned labels.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import torchvision.transforms as T
from torchvision.datasets import ImageFolder

from naslab.data.base import ImageDataModule, MissingDataError
from naslab.data.transforms import build_pipeline

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
HOWTO = (
    "get ILSVRC2012 from https://image-net.org/download.php (torchvision cannot download it) "
    "and sort val into class folders"
)


def _class_dirs(path: str) -> list[str]:
    return sorted(e.name for e in os.scandir(path) if e.is_dir())


class ImageNetDataModule(ImageDataModule):
    """ImageNet from ``data_dir/imagenet/{train,val}/<wnid>/<image>.JPEG``.

    The official val set is the test set; search-valid is held out of train like everywhere else.

    Args:
        num_classes: expected number of class folders (1000; smaller for subsets and tests).
        **kwargs: ImageDataModule arguments (pass them by keyword).
    """

    name = "imagenet"
    num_classes = 1000
    input_shape = (3, 224, 224)

    def __init__(self, data_dir: str = "data", num_classes: int = 1000, **kwargs: Any) -> None:
        super().__init__(data_dir=data_dir, **kwargs)
        self.num_classes = num_classes

    @property
    def root(self) -> str:
        return os.path.join(self.data_dir, "imagenet")

    def check_files(self) -> None:
        layout = f"{self.root}/{{train,val}}/<wnid>/<image>.JPEG"
        classes: dict[str, list[str]] = {}
        for split in ("train", "val"):
            path = os.path.join(self.root, split)
            if not os.path.isdir(path):
                raise MissingDataError(
                    f"ImageNet not found: expected ImageFolder layout {layout} ({path} is missing); {HOWTO}"
                )
            classes[split] = _class_dirs(path)
            if not classes[split]:
                raise MissingDataError(
                    f"ImageNet {split} has no class folders in {path}; expected ImageFolder layout {layout}; {HOWTO}"
                )
            if len(classes[split]) != self.num_classes:
                raise ValueError(
                    f"ImageNet {split}: found {len(classes[split])} class folders in "
                    f"{path} but num_classes={self.num_classes}"
                )
        if classes["train"] != classes["val"]:
            only = sorted(set(classes["train"]) ^ set(classes["val"]))[:5]
            raise ValueError(f"ImageNet train and val class folders differ (e.g. {only}); labels would not line up")

    def _transforms(self) -> tuple[Callable, Callable]:
        center = [T.Resize(256), T.CenterCrop(224)]
        augment = [
            T.RandomResizedCrop(224),
            T.RandomHorizontalFlip(),
            T.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.2),
        ]
        train = build_pipeline(augment if self.augment else center, MEAN, STD, self.cutout)
        return train, build_pipeline(center, MEAN, STD)

    def _read_train(self) -> ImageFolder:
        return ImageFolder(os.path.join(self.root, "train"))

    def _read_test(self) -> ImageFolder:
        return ImageFolder(os.path.join(self.root, "val"))
