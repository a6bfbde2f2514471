"""The semi-supervised split: which samples are used, labelled, and held out for validation.

All positions below index into the *pool* of ``num_samples`` drawn samples, except
``pool`` itself, which indexes into the source's training set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LABEL_SAMPLING = ("balanced", "random")


class SplitError(ValueError):
    """The requested split cannot be drawn from the data; names the offending key."""


@dataclass(frozen=True)
class Split:
    """Indices of one semi-supervised split."""

    pool: np.ndarray  # (num_samples,) indices into the source's training set
    labeled: np.ndarray  # positions in the pool whose label the model may see
    train: np.ndarray  # positions used for training: labelled + unlabelled
    val: np.ndarray  # unlabelled positions held out for validation

    @property
    def unlabeled(self) -> np.ndarray:
        """Positions in the pool whose label is hidden (training and validation)."""
        return np.setdiff1d(np.arange(len(self.pool)), self.labeled)


def _draw_labeled(
    pool_labels: np.ndarray,
    num_labeled: int,
    sampling: str,
    num_classes: int,
    rng: np.random.Generator,
) -> np.ndarray:
    if sampling == "random":
        return np.sort(rng.choice(len(pool_labels), size=num_labeled, replace=False))
    if num_labeled % num_classes:
        raise SplitError(
            f"num_labeled={num_labeled}: balanced label_sampling needs a multiple of "
            f"num_classes={num_classes}"
        )
    per_class = num_labeled // num_classes
    chosen = []
    for label in range(num_classes):
        candidates = np.flatnonzero(pool_labels == label)
        if len(candidates) < per_class:
            raise SplitError(
                f"num_labeled={num_labeled}: balanced label_sampling needs {per_class} samples "
                f"of class {label}, the drawn pool holds {len(candidates)}"
            )
        chosen.append(rng.choice(candidates, size=per_class, replace=False))
    return np.sort(np.concatenate(chosen))


def make_split(
    labels: np.ndarray,
    num_samples: int,
    num_labeled: int,
    label_sampling: str = "balanced",
    val_fraction: float = 0.1,
    seed: int = 42,
    num_classes: int = 10,
) -> Split:
    """Draw the pool, the labelled subset and the validation hold-out with one seed.

    Args:
        labels: Labels of the source's whole training set.
        num_samples: Size of the pool drawn from the training set.
        num_labeled: How many pool samples keep their label.
        label_sampling: ``"balanced"`` (equal count per class) or ``"random"``.
        val_fraction: Share of the *unlabelled* pool held out for validation.
        seed: Seed of the draw; the same seed gives the same split.
        num_classes: Number of classes C.

    Raises:
        SplitError: when the numbers cannot be met by the data.
    """
    if not 0 < num_samples <= len(labels):
        raise SplitError(f"num_samples={num_samples}: must be in [1, {len(labels)}] for this data")
    if not 0 <= num_labeled <= num_samples:
        raise SplitError(f"num_labeled={num_labeled}: must be in [0, num_samples={num_samples}]")
    if label_sampling not in LABEL_SAMPLING:
        raise SplitError(f"label_sampling={label_sampling!r}: must be one of {LABEL_SAMPLING}")
    if not 0 < val_fraction < 1:
        raise SplitError(f"val_fraction={val_fraction}: must be in (0, 1)")

    rng = np.random.default_rng(seed)
    pool = np.sort(rng.choice(len(labels), size=num_samples, replace=False))
    labeled = _draw_labeled(labels[pool], num_labeled, label_sampling, num_classes, rng)

    unlabeled = rng.permutation(np.setdiff1d(np.arange(num_samples), labeled))
    num_val = int(round(val_fraction * len(unlabeled)))
    if num_val == 0 or num_val == len(unlabeled):
        raise SplitError(
            f"val_fraction={val_fraction}: leaves {num_val} of {len(unlabeled)} unlabelled "
            "samples for validation; both training and validation need at least one"
        )
    val = np.sort(unlabeled[:num_val])
    train = np.sort(np.concatenate([labeled, unlabeled[num_val:]]))
    return Split(pool=pool, labeled=labeled, train=train, val=val)
