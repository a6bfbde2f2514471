"""Reference classifiers on the run's exact split, for the report's Baselines table.

Two scikit-learn models a researcher would try before a semi-supervised VAE:

- ``logistic_regression``: multinomial logistic regression on the raw pixels of
  the labelled samples only (supervised, ignores the unlabelled pool);
- ``label_spreading``: graph-based transduction over a k-nearest-neighbour graph
  of the pool's pixels, seeded with the labelled samples only.

Both see exactly the labels the VAE sees: every other sample enters the fit with
the label ``-1`` (scikit-learn's "unlabelled" marker), and the true labels of the
pool are used only to score the predictions, with the same accuracy fields and
the same samples as the model's ``classification`` section.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.semi_supervised import LabelSpreading

log = logging.getLogger(__name__)

BASELINE_NAMES = ("logistic_regression", "label_spreading")


@dataclass(frozen=True)
class BaselineOptions:
    """How the baselines run.

    Args:
        enabled: Compute the baselines at all.
        max_samples: Largest number of pool samples the label-spreading graph is built
            on. A larger pool spreads over the labelled samples plus a random subset of
            the unlabelled ones, then predicts the rest through the same graph kernel,
            so the accuracy fields still cover every sample. Null: never subsample.
        n_neighbors: Neighbours per node of the label-spreading graph.
        spreading_alpha: Clamping factor of label spreading (0 keeps the initial labels).
        logistic_c: Inverse L2 strength of the logistic regression.
    """

    enabled: bool = True
    max_samples: int | None = 10000
    n_neighbors: int = 10
    spreading_alpha: float = 0.2
    logistic_c: float = 1.0


def accuracy_fields(
    predicted: np.ndarray,
    labels: np.ndarray,
    labeled: np.ndarray,
    val: np.ndarray,
) -> dict[str, float | None]:
    """``accuracy``, ``accuracy_unlabeled``, ``accuracy_labeled``, ``accuracy_val`` of a pool."""
    hidden = np.ones(len(labels), dtype=bool)
    hidden[labeled] = False

    def share(mask: np.ndarray) -> float | None:
        return float(np.mean(predicted[mask] == labels[mask])) if np.any(mask) else None

    everything = np.ones(len(labels), dtype=bool)
    return {
        "accuracy": share(everything),
        "accuracy_unlabeled": share(hidden),
        "accuracy_labeled": share(np.isin(np.arange(len(labels)), labeled)),
        "accuracy_val": share(np.isin(np.arange(len(labels)), val)),
    }


def visible_targets(num_samples: int, labels: np.ndarray, labeled: np.ndarray) -> np.ndarray:
    """Targets a baseline may fit on: the label at ``labeled`` positions, -1 everywhere else."""
    targets = np.full(num_samples, -1, dtype=np.int64)
    targets[labeled] = labels[labeled]
    return targets


def logistic_regression(
    images: np.ndarray, targets: np.ndarray, options: BaselineOptions, seed: int
) -> LogisticRegression:
    """Fit on the samples whose target is not -1 (the labelled ones) only."""
    visible = targets >= 0
    model = LogisticRegression(C=options.logistic_c, max_iter=1000, random_state=seed)
    return model.fit(images[visible], targets[visible])


def label_spreading(
    images: np.ndarray, targets: np.ndarray, options: BaselineOptions, seed: int
) -> tuple[np.ndarray, LabelSpreading]:
    """Labels of every pool sample, ``(N,)``, from spreading over a kNN graph, and the model."""
    graph_nodes = _graph_nodes(targets, options.max_samples, seed)
    model = LabelSpreading(
        kernel="knn",
        n_neighbors=min(options.n_neighbors, len(graph_nodes) - 1),
        alpha=options.spreading_alpha,
        max_iter=1000,
    )
    model.fit(images[graph_nodes], targets[graph_nodes])

    predicted = np.empty(len(targets), dtype=np.int64)
    predicted[graph_nodes] = model.transduction_
    outside = np.setdiff1d(np.arange(len(targets)), graph_nodes)
    if len(outside):
        predicted[outside] = model.predict(images[outside])
    return predicted, model


def _graph_nodes(targets: np.ndarray, max_samples: int | None, seed: int) -> np.ndarray:
    """All positions, or the labelled ones plus a seeded draw of unlabelled ones."""
    everything = np.arange(len(targets))
    if max_samples is None or len(targets) <= max_samples:
        return everything
    labelled = np.flatnonzero(targets >= 0)
    unlabelled = np.flatnonzero(targets < 0)
    room = max(max_samples - len(labelled), 0)
    drawn = np.random.default_rng(seed).choice(unlabelled, size=room, replace=False)
    log.info("label spreading on %d of %d pool samples", len(labelled) + room, len(targets))
    return np.sort(np.concatenate([labelled, drawn]))


def run_baselines(
    images: np.ndarray,
    labels: np.ndarray,
    labeled: np.ndarray,
    val: np.ndarray,
    options: BaselineOptions,
    seed: int,
    test: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, dict[str, Any]]:
    """Fit both baselines on the run's split and score them like the model.

    Args:
        images: Pool pixels, ``(N, D)``.
        labels: True labels of the pool, ``(N,)``; only ``labels[labeled]`` enter a fit.
        labeled: Positions whose label the model sees.
        val: Validation positions (unlabelled).
        options: See :class:`BaselineOptions`.
        seed: Seed of the solvers and of any subsample.
        test: ``(images, labels)`` of a test split, scored as ``accuracy_test``.

    Returns:
        ``{name: {accuracy fields..., "fit_time_sec": ...}}`` for each of
        :data:`BASELINE_NAMES`; empty when the labelled samples cover fewer than two classes.
    """
    targets = visible_targets(len(labels), labels, labeled)
    if len(np.unique(targets[labeled])) < 2:
        log.warning("baselines skipped: they need labelled samples of at least two classes")
        return {}
    results: dict[str, dict[str, Any]] = {}

    started = time.perf_counter()
    logistic = logistic_regression(images, targets, options, seed)
    results["logistic_regression"] = {
        **accuracy_fields(logistic.predict(images), labels, labeled, val),
        **_test_accuracy(logistic.predict, test),
        "fit_time_sec": time.perf_counter() - started,
    }

    started = time.perf_counter()
    spread, spreading = label_spreading(images, targets, options, seed)
    results["label_spreading"] = {
        **accuracy_fields(spread, labels, labeled, val),
        **_test_accuracy(spreading.predict, test),
        "fit_time_sec": time.perf_counter() - started,
    }
    log.info(
        "baselines: logistic regression %.4f, label spreading %.4f (accuracy_unlabeled)",
        results["logistic_regression"]["accuracy_unlabeled"] or float("nan"),
        results["label_spreading"]["accuracy_unlabeled"] or float("nan"),
    )
    return results


def _test_accuracy(predict, test: tuple[np.ndarray, np.ndarray] | None) -> dict[str, float]:
    if test is None:
        return {}
    images, labels = test
    return {"accuracy_test": float(np.mean(predict(images) == labels))}
