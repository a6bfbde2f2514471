"""Small, learnable IDX datasets written by the tests themselves."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

#: IDX type codes of the numpy dtypes the tests write.
TYPE_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int16): 0x0B, np.dtype(np.float32): 0x0D}


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of ``array``: magic number, big-endian sizes, big-endian values."""
    type_code = TYPE_CODES[array.dtype]
    header = struct.pack(">BBBB", 0, 0, type_code, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray) -> Path:
    """Write ``array`` as IDX, gzipped when ``path`` ends in ``.gz``."""
    content = idx_bytes(array)
    path.write_bytes(gzip.compress(content) if path.suffix == ".gz" else content)
    return path


def make_images(
    num_per_class: int, num_classes: int = 10, side: int = 8, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(N, side, side) uint8 images and (N,) uint8 labels: noisy class prototypes.

    Each class has its own random binary prototype; samples flip 10% of its pixels
    and add grey-level noise, so every image is distinct and the classes separable.
    """
    rng = np.random.default_rng(seed)
    prototypes = rng.random((num_classes, side, side)) < 0.4
    labels = np.repeat(np.arange(num_classes), num_per_class)
    flips = rng.random((len(labels), side, side)) < 0.1
    images = prototypes[labels] ^ flips
    pixels = images * 200 + rng.integers(0, 56, images.shape)
    order = rng.permutation(len(labels))
    return pixels[order].astype(np.uint8), labels[order].astype(np.uint8)


def write_dataset(
    folder: Path,
    gz: bool = True,
    train_per_class: int = 30,
    test_per_class: int = 10,
    num_classes: int = 10,
) -> Path:
    """A folder with the four standard IDX files (``.gz`` or plain); returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    train_images, train_labels = make_images(train_per_class, num_classes, seed=1)
    test_images, test_labels = make_images(test_per_class, num_classes, seed=2)
    write_idx(folder / f"train-images-idx3-ubyte{suffix}", train_images)
    write_idx(folder / f"train-labels-idx1-ubyte{suffix}", train_labels)
    if test_per_class:
        write_idx(folder / f"t10k-images-idx3-ubyte{suffix}", test_images)
        write_idx(folder / f"t10k-labels-idx1-ubyte{suffix}", test_labels)
    return folder
