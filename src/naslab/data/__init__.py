"""Image datamodules with search-train / search-valid / test splits for NAS experiments."""

from naslab.data.base import ImageDataModule, MissingDataError
from naslab.data.cifar import CIFAR10DataModule, CIFAR100DataModule
from naslab.data.digits import DigitsDataModule
from naslab.data.fashion_mnist import FashionMNISTDataModule
from naslab.data.imagenet import ImageNetDataModule
from naslab.data.transforms import Cutout

__all__ = [
    "CIFAR10DataModule",
    "CIFAR100DataModule",
    "Cutout",
    "DigitsDataModule",
    "FashionMNISTDataModule",
    "ImageDataModule",
    "ImageNetDataModule",
    "MissingDataError",
]
