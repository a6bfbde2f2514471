"""What every data source returns, and the error it raises when its data is unusable."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np


def default_cache_dir() -> Path:
    """``$SSVAE_CACHE_DIR``, else ``~/.cache/ssvae``."""
    return Path(os.environ.get("SSVAE_CACHE_DIR", Path.home() / ".cache" / "ssvae")).expanduser()


class DataError(RuntimeError):
    """A data source is missing, unreadable or malformed; the message names the file."""


@dataclass
class ImageData:
    """A training pool and an optional test split, pixels flattened to (N, D) in [0, 1].

    ``train_origin`` and ``test_origin`` say where the labels were read from (a file,
    a cache), so that a bad label is reported against its file.
    ``image_shape`` gives (height, width) for figures.
    """

    train_images: np.ndarray  # (N, D) float32
    train_labels: np.ndarray  # (N,) int64
    test_images: np.ndarray | None = None  # (N_test, D) float32
    test_labels: np.ndarray | None = None  # (N_test,) int64
    train_origin: str = ""
    test_origin: str = ""
    image_shape: tuple[int, int] | None = None  # (height, width); None: square

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) of one image, assuming a square where ``image_shape`` is None."""
        if self.image_shape is not None:
            return self.image_shape
        side = int(round(self.input_dim**0.5))
        return (side, side) if side * side == self.input_dim else (1, self.input_dim)

    @property
    def input_dim(self) -> int:
        return int(self.train_images.shape[1])

    @property
    def num_test(self) -> int:
        return 0 if self.test_labels is None else len(self.test_labels)

    def check_labels(self, num_classes: int) -> None:
        """Raise :class:`DataError` naming the origin when a label is outside [0, C)."""
        splits = [("training", self.train_labels, self.train_origin)]
        if self.test_labels is not None:
            splits.append(("test", self.test_labels, self.test_origin))
        for name, labels, origin in splits:
            outside = (labels < 0) | (labels >= num_classes)
            if outside.any():
                raise DataError(
                    f"{origin or name + ' labels'}: {int(outside.sum())} {name} label(s) outside "
                    f"[0, num_classes={num_classes}), e.g. {int(labels[outside][0])}"
                )
