"""Datamodules for NAS experiments: images (search-train / search-valid / test) and word-level text streams."""

from naslab.data.base import ImageDataModule, MissingDataError
from naslab.data.cifar import CIFAR10DataModule, CIFAR100DataModule
from naslab.data.digits import DigitsDataModule
from naslab.data.fashion_mnist import FashionMNISTDataModule
from naslab.data.imagenet import ImageNetDataModule
from naslab.data.tabular import TabularDataModule, WineDataModule
from naslab.data.text import PTBDataModule, TextDataModule, WikiText2DataModule
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
    "PTBDataModule",
    "TabularDataModule",
    "TextDataModule",
    "WikiText2DataModule",
    "WineDataModule",
]
