"""Tiny data sets written in the real on-disk formats (CIFAR pickles, idx files, ImageFolder).

Shared by the data tests and the end-to-end tests, so every loader is tested against the
format it reads in production, never against a mock; nothing here needs a download.
"""

from __future__ import annotations

import gzip
import pickle
import struct

import numpy as np
from PIL import Image


def cifar_pixels(index: int) -> np.ndarray:
    """Known (3, 32, 32) uint8 pattern of image ``index`` (distinct per image, channel, pixel)."""
    c, h, w = np.meshgrid(np.arange(3), np.arange(32), np.arange(32), indexing="ij")
    return ((index * 7 + c * 50 + h * 3 + w) % 256).astype(np.uint8)


def write_pickle(path, obj) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar10(root, per_batch: int = 20, test: int = 20) -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    start = 0
    for b, (name, n) in enumerate([(f"data_batch_{i}", per_batch) for i in range(1, 6)] + [("test_batch", test)]):
        idx = range(start, start + n)
        write_pickle(
            folder / name,
            {
                b"batch_label": f"batch {b}".encode(),
                b"labels": [i % 10 for i in idx],
                b"data": np.stack([cifar_pixels(i).reshape(-1) for i in idx]),
                b"filenames": [f"img_{i}.png".encode() for i in idx],
            },
        )
        start += n
    write_pickle(
        folder / "batches.meta",
        {
            b"label_names": [f"class{i}".encode() for i in range(10)],
            b"num_cases_per_batch": per_batch,
            b"num_vis": 3072,
        },
    )


def write_cifar100(root, train: int = 100, test: int = 20) -> None:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, idx in (("train", range(train)), ("test", range(train, train + test))):
        write_pickle(
            folder / name,
            {
                b"batch_label": name.encode(),
                b"fine_labels": [i % 100 for i in idx],
                b"coarse_labels": [i % 20 for i in idx],
                b"data": np.stack([cifar_pixels(i).reshape(-1) for i in idx]),
                b"filenames": [f"img_{i}.png".encode() for i in idx],
            },
        )
    write_pickle(
        folder / "meta",
        {
            b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
            b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)],
        },
    )


def write_idx_gz(folder, prefix: str, images: np.ndarray, labels: np.ndarray) -> None:
    with gzip.open(folder / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">IIII", 2051, *images.shape) + images.astype(np.uint8).tobytes())
    with gzip.open(folder / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">II", 2049, len(labels)) + labels.astype(np.uint8).tobytes())


def write_imagefolder(root, classes: int = 3, train: int = 4, val: int = 2) -> None:
    rng = np.random.default_rng(0)
    for split, n in (("train", train), ("val", val)):
        for c in range(classes):
            d = root / "imagenet" / split / f"n{c:08d}"
            d.mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (20 + i, 24, 3), dtype=np.uint8)
                ext = "JPEG" if i % 2 == 0 else "png"
                Image.fromarray(pixels).save(d / f"img_{i}.{ext}")


def write_fashion_mnist_raw(data_dir, train: int = 64, test: int = 32) -> None:
    """Uncompressed idx files in torchvision's layout data_dir/FashionMNIST/raw."""
    import tempfile
    from pathlib import Path

    raw = Path(data_dir) / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        for prefix, n in (("train", train), ("t10k", test)):
            write_idx_gz(Path(tmp), prefix, rng.integers(0, 256, (n, 28, 28)), np.arange(n) % 10)
        for gz in Path(tmp).iterdir():
            (raw / gz.name[: -len(".gz")]).write_bytes(gzip.decompress(gz.read_bytes()))


def text_lines(num_lines: int, seed: int, vocab: int = 40) -> list[str]:
    """Word-level lines over a small vocabulary, with some structure (word i tends to follow i - 1)."""
    rng = np.random.default_rng(seed)
    lines = []
    for _ in range(num_lines):
        start = int(rng.integers(vocab))
        words = [f"w{(start + k + int(rng.integers(2))) % vocab}" for k in range(int(rng.integers(5, 15)))]
        lines.append(" " + " ".join(words) + " ")
    return lines


def write_text_corpus(root, dataset: str = "ptb", train_lines: int = 300) -> None:
    """A tiny corpus where the real one lives: ptb/ptb.{split}.txt or wikitext-2/wiki.{split}.tokens.

    Valid and test reuse the train vocabulary (both real corpora are closed-vocabulary).
    """
    layout = {"ptb": ("ptb", "ptb.{}.txt"), "wikitext2": ("wikitext-2", "wiki.{}.tokens")}
    folder_name, pattern = layout[dataset]
    folder = root / folder_name
    folder.mkdir(parents=True, exist_ok=True)
    vocabulary = " " + " ".join(f"w{i}" for i in range(40)) + " "
    sizes = {"train": train_lines, "valid": train_lines // 5, "test": train_lines // 5}
    for seed, (split, n) in enumerate(sizes.items()):
        lines = text_lines(n, seed) + ([vocabulary] if split == "train" else [])
        (folder / pattern.format(split)).write_text("\n".join(lines) + "\n")
