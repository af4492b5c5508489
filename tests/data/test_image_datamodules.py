"""Tests of the image datamodules on tiny fixtures written in each dataset's real on-disk format.

No network and no system data: CIFAR pickles, Fashion-MNIST idx files and an ImageFolder are
generated into tmp_path, so the readers are tested against the format, not against a mock.
"""

from __future__ import annotations

import os

import lightning as L
import numpy as np
import pytest
import torch

from naslab.data import (
    CIFAR10DataModule,
    CIFAR100DataModule,
    Cutout,
    DigitsDataModule,
    FashionMNISTDataModule,
    ImageNetDataModule,
    MissingDataError,
)
from naslab.data.fashion_mnist import MEAN as FMNIST_MEAN
from naslab.data.fashion_mnist import RAW_FILES
from naslab.data.fashion_mnist import STD as FMNIST_STD
from naslab.data.transforms import cutout_mask
from tests.fake_data import cifar_pixels, write_cifar10, write_cifar100, write_idx_gz, write_imagefolder
from tests.real_data import needs_real_data, real_source


def unnormalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    return x * torch.tensor(std).view(-1, 1, 1) + torch.tensor(mean).view(-1, 1, 1)


# ----------------------------------------------------------------------------------------- digits
def test_digits_split_sizes_and_disjointness():
    dm = DigitsDataModule(search_valid_size=0.1, batch_size=32)
    assert dm.input_shape == (1, 8, 8) and dm.num_classes == 10  # available before setup
    dm.setup()
    train, valid = set(dm.train_indices), set(dm.valid_indices)
    assert len(train) + len(valid) == 1437 and not train & valid
    assert train | valid == set(range(1437))
    assert len(dm.test_source_indices) == 360
    assert not set(dm.test_source_indices) & set(dm.train_source_indices)
    info = dm.describe()
    assert (info["train"], info["search_valid"], info["test"]) == (1293, 144, None)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (32, 1, 8, 8) and x.dtype == torch.float32
    assert y.min() >= 0 and y.max() < 10
    xv, _ = next(iter(dm.val_dataloader()))
    assert xv.shape[1:] == (1, 8, 8)


def test_digits_split_seed_controls_valid_but_not_test():
    a, b, c = (DigitsDataModule(split_seed=s, phase="final", search_valid_size=100) for s in (0, 0, 1))
    sa, sb, sc = (DigitsDataModule(split_seed=s, search_valid_size=100) for s in (0, 0, 1))
    for dm in (a, b, c, sa, sb, sc):
        dm.setup()
    assert sa.valid_indices == sb.valid_indices
    assert sa.valid_indices != sc.valid_indices
    assert np.array_equal(a.test_source_indices, c.test_source_indices)
    xa, ya = next(iter(a.test_dataloader()))
    xc, yc = next(iter(c.test_dataloader()))
    assert torch.equal(xa, xc) and torch.equal(ya, yc)


def test_phase_handling_and_caps():
    search = DigitsDataModule()
    search.setup()
    with pytest.raises(RuntimeError, match="only for final training"):
        search.test_dataloader()
    final = DigitsDataModule(phase="final")
    final.setup()
    final.setup("test")  # idempotent
    assert len(final.train_set) == 1437 and final.val_dataloader() == []
    assert len(final.test_dataloader().dataset) == 360
    capped = DigitsDataModule(phase="final", max_train_samples=50, max_test_samples=20)
    capped.setup()
    assert len(capped.train_set) == 50 and len(capped.test_set) == 20
    with pytest.raises(ValueError, match="phase"):
        DigitsDataModule(phase="test")
    with pytest.raises(ValueError, match="search_valid_size"):
        DigitsDataModule(search_valid_size=5000).setup()


def test_train_shuffle_follows_seed_everything():
    dm = DigitsDataModule(augment=False)
    orders = []
    for _ in range(2):
        L.seed_everything(123, verbose=False)
        orders.append(next(iter(dm.train_dataloader()))[1])
    assert torch.equal(orders[0], orders[1])


# Lightning warns that the (deliberately) empty val loader list has length zero.
@pytest.mark.filterwarnings("ignore:Total length of .* is zero")
def test_final_phase_fits_with_lightning_without_validation():
    class Tiny(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))

        def training_step(self, batch, _):
            x, y = batch
            return torch.nn.functional.cross_entropy(self.net(x), y)

        def validation_step(self, batch, _):  # present, but must not run in the final phase
            raise AssertionError("final phase has no validation")

        def test_step(self, batch, _):
            x, y = batch
            self.log("acc", (self.net(x).argmax(1) == y).float().mean())

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    trainer = L.Trainer(
        max_epochs=1,
        limit_train_batches=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    dm = DigitsDataModule(phase="final", max_test_samples=64)
    trainer.fit(Tiny(), datamodule=dm)
    assert "acc" in trainer.test(trainer.lightning_module, datamodule=dm, verbose=False)[0]


# ------------------------------------------------------------------------------------------ CIFAR
@pytest.mark.parametrize(
    "cls, writer, n_train", [(CIFAR10DataModule, write_cifar10, 100), (CIFAR100DataModule, write_cifar100, 100)]
)
def test_cifar_reads_real_format(tmp_path, cls, writer, n_train):
    writer(tmp_path)
    assert cls(data_dir=str(tmp_path)).search_valid_size == 5000
    dm = cls(data_dir=str(tmp_path), search_valid_size=10, batch_size=8, augment=False)
    dm.prepare_data()
    dm.setup()
    assert (len(dm.train_set), len(dm.valid_set)) == (n_train - 10, 10)
    x, y = next(iter(dm.val_dataloader()))
    assert x.shape == (8, 3, 32, 32)
    for k, i in enumerate(dm.valid_indices[:8]):
        pixels = unnormalize(x[k], dm.mean, dm.std) * 255
        assert torch.allclose(pixels, torch.from_numpy(cifar_pixels(i)).float(), atol=1e-3)
        assert y[k] == i % dm.num_classes
    xt, _ = next(iter(dm.train_dataloader()))
    assert xt.shape == (8, 3, 32, 32)

    final = cls(data_dir=str(tmp_path), phase="final", augment=True, cutout=8, batch_size=4)
    final.setup()
    assert len(final.train_set) == n_train and len(final.test_set) == 20
    xt, yt = next(iter(final.test_dataloader()))
    assert xt.shape == (4, 3, 32, 32)
    assert yt.tolist() == [(n_train + i) % final.num_classes for i in range(4)]
    assert next(iter(final.train_dataloader()))[0].shape == (4, 3, 32, 32)


# ------------------------------------------------------------------------------------ Fashion-MNIST
def test_fashion_mnist_decompresses_idx_files_from_source_dir(tmp_path):
    source, data = tmp_path / "source", tmp_path / "data"
    source.mkdir()
    rng = np.random.default_rng(0)
    train_x = rng.integers(0, 256, (30, 28, 28), dtype=np.uint8)
    train_y = np.arange(30) % 10
    test_x = rng.integers(0, 256, (10, 28, 28), dtype=np.uint8)
    test_y = (np.arange(10) * 3) % 10
    write_idx_gz(source, "train", train_x, train_y)
    write_idx_gz(source, "t10k", test_x, test_y)

    dm = FashionMNISTDataModule(data_dir=str(data), source_dir=str(source), phase="final", augment=False, batch_size=10)
    dm.prepare_data()
    for name in RAW_FILES:
        assert (data / "FashionMNIST" / "raw" / name).is_file()
    dm.setup()
    assert len(dm.train_set) == 30
    x, y = next(iter(dm.test_dataloader()))
    assert x.shape == (10, 1, 28, 28) and y.tolist() == test_y.tolist()
    pixels = unnormalize(x, FMNIST_MEAN, FMNIST_STD).squeeze(1) * 255
    assert torch.allclose(pixels, torch.from_numpy(test_x).float(), atol=1e-3)

    search = FashionMNISTDataModule(data_dir=str(data), source_dir=None, search_valid_size=5, cutout=6, batch_size=25)
    search.setup()
    xb, yb = next(iter(search.train_dataloader()))
    assert xb.shape == (25, 1, 28, 28) and len(search.valid_set) == 5
    assert sorted(yb.tolist()) == sorted(train_y[search.train_indices].tolist())


@needs_real_data("fashion-mnist")
def test_fashion_mnist_from_its_real_files(tmp_path):
    source = str(real_source("fashion-mnist"))
    dm = FashionMNISTDataModule(data_dir=str(tmp_path), source_dir=source, phase="final", batch_size=16)
    dm.setup()
    assert (len(dm.train_set), len(dm.test_set)) == (60000, 10000)
    x, y = next(iter(dm.test_dataloader()))
    assert x.shape == (16, 1, 28, 28) and 0 <= y.min() and y.max() < 10


# --------------------------------------------------------------------------------------- ImageNet
def test_imagenet_imagefolder(tmp_path):
    write_imagefolder(tmp_path)
    dm = ImageNetDataModule(data_dir=str(tmp_path), num_classes=3, search_valid_size=3, batch_size=4)
    assert dm.num_classes == 3 and dm.input_shape == (3, 224, 224)
    dm.setup()
    assert (len(dm.train_set), len(dm.valid_set)) == (9, 3)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 224, 224) and y.max() < 3
    assert next(iter(dm.val_dataloader()))[0].shape == (3, 3, 224, 224)
    final = ImageNetDataModule(data_dir=str(tmp_path), num_classes=3, phase="final", batch_size=6, augment=False)
    final.setup()
    x, y = next(iter(final.test_dataloader()))
    assert x.shape == (6, 3, 224, 224) and y.tolist() == [0, 0, 1, 1, 2, 2]


def test_imagenet_wrong_num_classes_and_unsorted_val(tmp_path):
    write_imagefolder(tmp_path)
    with pytest.raises(ValueError, match="found 3 class folders .* num_classes=1000"):
        ImageNetDataModule(data_dir=str(tmp_path)).setup()
    val = tmp_path / "imagenet" / "val"
    for d in list(val.iterdir()):
        for f in d.iterdir():
            f.rename(val / f"{d.name}_{f.name}")
        d.rmdir()
    with pytest.raises(MissingDataError, match="sort val into class folders"):
        ImageNetDataModule(data_dir=str(tmp_path), num_classes=3).setup()


# ----------------------------------------------------------------------------------- missing data
@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda d: CIFAR10DataModule(data_dir=d), "cifar-10-batches-py"),
        (lambda d: CIFAR100DataModule(data_dir=d), "cifar-100-python"),
        (lambda d: FashionMNISTDataModule(data_dir=d, source_dir=None), "FashionMNIST/raw"),
        (lambda d: FashionMNISTDataModule(data_dir=d, source_dir=os.path.join(d, "empty")), "FashionMNIST/raw"),
        (lambda d: ImageNetDataModule(data_dir=d), "imagenet"),
    ],
)
def test_missing_data_is_one_clear_line(tmp_path, make, expected):
    (tmp_path / "empty").mkdir()
    dm = make(str(tmp_path))
    for call in (dm.prepare_data, dm.setup):
        with pytest.raises(MissingDataError) as info:
            call()
        message = str(info.value)
        assert "\n" not in message and os.path.join(str(tmp_path), expected) in message
        assert "download" in message or "image-net.org" in message
    assert not any(p.name != "empty" for p in tmp_path.iterdir())  # nothing downloaded/created


def test_fashion_mnist_error_names_files_and_package(tmp_path):
    with pytest.raises(MissingDataError) as info:
        FashionMNISTDataModule(data_dir=str(tmp_path), source_dir=str(tmp_path)).setup()
    message = str(info.value)
    assert all(name in message for name in RAW_FILES)
    assert "apt-get install dataset-fashion-mnist" in message and "dataset.download=true" in message


def test_cifar_error_names_missing_file(tmp_path):
    write_cifar10(tmp_path)
    os.remove(tmp_path / "cifar-10-batches-py" / "data_batch_3")
    with pytest.raises(MissingDataError, match="data_batch_3"):
        CIFAR10DataModule(data_dir=str(tmp_path)).setup()


# ----------------------------------------------------------------------------------------- Cutout
def test_cutout_zeroes_one_clipped_square():
    torch.manual_seed(0)
    for _ in range(20):
        out = Cutout(8)(torch.ones(3, 32, 32))
        zeros = out[0] == 0
        assert 0 < zeros.sum() <= 64
        # the same square in every channel
        assert torch.equal(out[0], out[1]) and torch.equal(out[0], out[2])
        rows, cols = zeros.any(1).nonzero(), zeros.any(0).nonzero()
        assert zeros.sum() == len(rows) * len(cols)  # a (clipped) rectangle
    assert (cutout_mask(32, 32, 4, 10, 10) == 0).sum() == 16
    assert (cutout_mask(32, 32, 4, 0, 0) == 0).sum() == 4  # clipped at the corner
    torch.manual_seed(1)
    a = Cutout(8)(torch.ones(1, 16, 16))
    torch.manual_seed(1)
    assert torch.equal(a, Cutout(8)(torch.ones(1, 16, 16)))


def test_epoch_shuffle_depends_only_on_seed_and_epoch() -> None:
    """What makes a resumed training loop draw the batches the uninterrupted one drew."""
    from naslab.data.base import EpochShuffleSampler

    sampler = EpochShuffleSampler(50, seed=2**64 - 1)  # any 64-bit torch seed, no overflow
    first = list(sampler)
    assert sorted(first) == list(range(50))
    sampler.set_epoch(1)
    second = list(sampler)
    assert second != first and sorted(second) == list(range(50))
    fresh = EpochShuffleSampler(50, seed=2**64 - 1)  # a new process resuming at epoch 1
    fresh.set_epoch(1)
    assert list(fresh) == second
    assert list(EpochShuffleSampler(50, seed=3)) != first


def test_scoring_on_search_valid_leaves_the_global_rng_alone() -> None:
    """A pass over an unaugmented loader must not move the RNG that training's augmentation draws from."""
    dm = DigitsDataModule(batch_size=64, search_valid_size=0.2)
    dm.setup()
    state = torch.get_rng_state()
    for _ in range(2):
        for _ in dm.val_dataloader():
            pass
    assert torch.equal(torch.get_rng_state(), state)


def test_random_valid_batches_are_seeded_unaugmented_search_valid_images(tmp_path) -> None:
    """What a weight-sharing score reads: random search-valid images, no repeats, eval transform, collated."""
    write_cifar10(tmp_path)
    dm = CIFAR10DataModule(data_dir=str(tmp_path), search_valid_size=30, batch_size=8, augment=True, cutout=8)
    dm.setup()
    state = torch.get_rng_state()
    batches = dm.random_valid_batches(3, 6, torch.Generator().manual_seed(5))
    assert torch.equal(torch.get_rng_state(), state)  # only the generator decides: training's RNG is untouched
    assert len(batches) == 3 and all(x.shape == (6, 3, 32, 32) and y.shape == (6,) for x, y in batches)
    source = []
    for x, y in batches:
        for image, label in zip(x, y):
            pixels = (unnormalize(image, dm.mean, dm.std) * 255).round().to(torch.uint8)
            index = int(pixels[0, 0, 0]) * 183 % 256  # cifar_pixels(i)[0, 0, 0] = 7 i mod 256; 183 = 7^-1 mod 256
            assert torch.equal(pixels, torch.from_numpy(cifar_pixels(index)))  # whole, unaugmented image
            assert int(label) == index % 10
            source.append(index)
    assert len(set(source)) == 18 and set(source) <= set(dm.valid_indices)  # without replacement, search-valid only
    again = dm.random_valid_batches(3, 6, torch.Generator().manual_seed(5))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again))  # a function of the generator's seed
    other = dm.random_valid_batches(3, 6, torch.Generator().manual_seed(6))
    assert not torch.equal(torch.cat([x for x, _ in other]), torch.cat([x for x, _ in batches]))
    assert dm.random_valid_batches(1)[0][0].shape[0] == 8  # batch_size None = the training batch size (ENAS)
    assert dm.random_valid_batches(1, 100)[0][0].shape[0] == 30  # at most the whole split
    final = CIFAR10DataModule(data_dir=str(tmp_path), phase="final")
    with pytest.raises(RuntimeError, match="only in the search phase"):
        final.random_valid_batches(1)


def test_random_valid_batches_from_the_transformed_cache_equal_the_image_by_image_ones(tmp_path, monkeypatch) -> None:
    """The search-valid split is transformed once and indexed (a weight-sharing search scores thousands of
    architectures on it); a split too big for the cache is served image by image: the same tensors."""
    import naslab.data.base as base

    write_cifar10(tmp_path)
    cached = CIFAR10DataModule(data_dir=str(tmp_path), search_valid_size=30, batch_size=8)
    monkeypatch.setattr(base, "VALID_CACHE_BYTES", 0)
    uncached = CIFAR10DataModule(data_dir=str(tmp_path), search_valid_size=30, batch_size=8)
    for seed, (num, size) in enumerate([(3, 6), (2, 25), (1, 100)]):
        a = uncached.random_valid_batches(num, size, torch.Generator().manual_seed(seed))
        monkeypatch.setattr(base, "VALID_CACHE_BYTES", 1 << 30)
        b = cached.random_valid_batches(num, size, torch.Generator().manual_seed(seed))
        monkeypatch.setattr(base, "VALID_CACHE_BYTES", 0)
        assert len(a) == len(b) == num
        for (xa, ya), (xb, yb) in zip(a, b):
            assert torch.equal(xa, xb) and torch.equal(ya, yb) and xa.dtype == xb.dtype and ya.dtype == yb.dtype
    assert cached._valid_cache not in (None, False) and uncached._valid_cache is False
