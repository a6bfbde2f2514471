"""Full MNIST (60k training / 10k test images) from OpenML through scikit-learn's fetch_openml.

:func:`prepare_mnist` downloads once and stores the pixels as ``mnist.npz`` in the
cache directory (scikit-learn keeps its own copy of the raw files under
``<cache>/openml``); :func:`load_mnist` only reads that file. Without network and
without a cache, both fail at once with a message naming the cache and the embedded
alternative ``data=mnist5k``.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ssvae.data.base import DataError, ImageData, default_cache_dir
from ssvae.io import atomic_write

log = logging.getLogger(__name__)

#: OpenML's ``mnist_784`` version 1; rows are ordered as the original distribution.
MNIST_OPENML_ID = 554
#: The last 10000 rows of ``mnist_784`` are MNIST's official test set.
MNIST_TEST_SIZE = 10_000
ARRAYS_NAME = "mnist.npz"


def mnist_cache(cache_dir: str | None = None) -> Path:
    """The cache directory: ``cache_dir``, else ``$SSVAE_CACHE_DIR``, else ``~/.cache/ssvae``."""
    return Path(cache_dir).expanduser() if cache_dir else default_cache_dir()


def _unavailable(cache: Path, reason: str) -> DataError:
    return DataError(
        f"full MNIST is not cached at {cache / ARRAYS_NAME} and could not be downloaded "
        f"from OpenML ({reason}); connect once to fill the cache (or set "
        "data.source_options.cache_dir), or train on the embedded subset with data=mnist5k"
    )


def _fetch_openml(cache: Path) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import fetch_openml

    # scikit-learn keeps the raw OpenML files under <cache>/openml/openml.org/.
    # liac-arff streams the dense ARFF into one array and needs no pandas; the pandas
    # parser also depends on how the installed pandas types the integer class column.
    images, labels = fetch_openml(
        data_id=MNIST_OPENML_ID,
        data_home=str(cache),
        as_frame=False,
        parser="liac-arff",
        return_X_y=True,
        n_retries=1,
        delay=1.0,
    )
    return np.asarray(images), np.asarray(labels)


def fetch_with_deadline(cache: Path, timeout_s: float) -> tuple[np.ndarray, np.ndarray]:
    """fetch_openml in a daemon thread, so that a stalled connection cannot hang the run.

    Raises:
        DataError: the fetch failed or did not finish within ``timeout_s`` seconds.
    """
    outcome: dict[str, Any] = {}

    def fetch() -> None:
        try:
            outcome["arrays"] = _fetch_openml(cache)
        except Exception as error:  # handed to the caller's thread below
            outcome["error"] = error

    thread = threading.Thread(target=fetch, name="fetch-openml-mnist", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise _unavailable(cache, f"no answer within download_timeout_s={timeout_s:g} s")
    if "error" in outcome:
        error = outcome["error"]
        raise _unavailable(cache, f"{type(error).__name__}: {error}") from error
    return outcome["arrays"]


def _as_pixels(images: np.ndarray, labels: np.ndarray, origin: str) -> tuple[np.ndarray, ...]:
    """(N, D) uint8 pixels and (N,) int64 labels, refusing values a byte cannot hold."""
    if images.ndim != 2 or len(images) != len(labels):
        raise DataError(f"{origin}: images {images.shape} and labels {labels.shape} disagree")
    if not np.all(np.isfinite(images)) or images.min() < 0 or images.max() > 255:
        raise DataError(f"{origin}: pixel values must lie in [0, 255]")
    try:
        labels = labels.astype(np.int64)
    except ValueError as error:
        raise DataError(f"{origin}: labels are not integers ({error})") from error
    return np.round(images).astype(np.uint8), labels


def prepare_mnist(
    cache_dir: str | None = None,
    test_size: int = MNIST_TEST_SIZE,
    download_timeout_s: float = 600.0,
) -> None:
    """Download full MNIST into the cache unless it is there already (may use the network).

    Args:
        cache_dir: Cache directory (default ``$SSVAE_CACHE_DIR`` or ``~/.cache/ssvae``).
        test_size: Unused here; :func:`load_mnist` splits at read time.
        download_timeout_s: Give up on the download after this many seconds.
    """
    cache = mnist_cache(cache_dir)
    target = cache / ARRAYS_NAME
    if target.is_file():
        return
    log.info("downloading MNIST from OpenML into %s (once)", cache)
    images, labels = fetch_with_deadline(cache, download_timeout_s)
    images, labels = _as_pixels(images, labels, f"OpenML dataset {MNIST_OPENML_ID}")
    atomic_write(target, lambda handle: np.savez(handle, images=images, labels=labels), "wb")
    log.info("cached %d MNIST images at %s", len(labels), target)


def load_mnist(
    cache_dir: str | None = None,
    test_size: int = MNIST_TEST_SIZE,
    download_timeout_s: float = 600.0,
) -> ImageData:
    """Full MNIST from the cache written by :func:`prepare_mnist`; never uses the network.

    Args:
        cache_dir: Cache directory (default ``$SSVAE_CACHE_DIR`` or ``~/.cache/ssvae``).
        test_size: The last ``test_size`` rows form the test split (MNIST: 10000).
        download_timeout_s: Unused here; see :func:`prepare_mnist`.
    """
    cache = mnist_cache(cache_dir)
    path = cache / ARRAYS_NAME
    if not path.is_file():
        raise _unavailable(cache, "the download step has not run")
    try:
        with np.load(path) as arrays:
            images, labels = _as_pixels(arrays["images"], arrays["labels"], str(path))
    except (OSError, KeyError, ValueError) as error:
        raise DataError(
            f"{path}: unreadable MNIST cache ({error}); delete it to refetch"
        ) from error
    if not 0 <= test_size < len(labels):
        raise DataError(
            f"data.source_options.test_size={test_size}: must be in [0, {len(labels)}) for {path}"
        )
    cut = len(labels) - test_size
    pixels = images.astype(np.float32) / 255.0
    return ImageData(
        train_images=pixels[:cut],
        train_labels=labels[:cut],
        test_images=pixels[cut:] if test_size else None,
        test_labels=labels[cut:] if test_size else None,
        train_origin=str(path),
        test_origin=str(path),
    )
