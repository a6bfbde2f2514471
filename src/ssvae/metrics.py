"""Diagnostics of a trained mixture VAE, as pure functions of predictions and labels.

Names follow the output contract: ``component_usage``, ``K_eff``,
``active_components``, ``component_entropy``, ``responsibility_confidence_mean``,
the ``pi_*`` statistics, ``component_majority_*``, ``nmi``, ``ari`` and
``cluster_accuracy``.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import confusion_matrix
from torchmetrics.functional.clustering import adjusted_rand_score, normalized_mutual_info_score

#: A component counts as active when it carries more than this share of the data.
ACTIVE_USAGE_THRESHOLD = 0.01


def entropy(probabilities: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Shannon entropy in nats along ``dim``; zero-probability entries contribute 0."""
    return -(probabilities * torch.log(probabilities.clamp_min(1e-12))).sum(dim)


def component_usage(responsibilities: torch.Tensor) -> torch.Tensor:
    """Mean responsibility of each component over the samples, shape ``(K,)``."""
    return responsibilities.mean(0)


def effective_components(usage: torch.Tensor) -> float:
    """K_eff = exp(entropy of the normalised usage): 1 for collapse, K when uniform."""
    normalised = usage / usage.sum()
    return float(torch.exp(entropy(normalised)))


def active_components(usage: torch.Tensor, threshold: float = ACTIVE_USAGE_THRESHOLD) -> int:
    """Number of components whose usage exceeds ``threshold``."""
    return int((usage > threshold).sum())


def distribution_summary(pi: torch.Tensor) -> dict:
    """``pi_values``, ``pi_entropy``, ``pi_max``, ``pi_min``, ``pi_argmax`` of mixture weights."""
    return {
        "pi_values": pi.tolist(),
        "pi_entropy": float(entropy(pi)),
        "pi_max": float(pi.max()),
        "pi_min": float(pi.min()),
        "pi_argmax": int(pi.argmax()),
    }


def component_majority(
    responsibilities: torch.Tensor, labels: torch.Tensor, num_classes: int
) -> tuple[list[int], list[float]]:
    """Majority label of each component from responsibility-weighted label counts.

    Returns, per component, the label with the largest weighted count and that
    label's share of the component's total weight (0 for an unused component).
    """
    one_hot = torch.nn.functional.one_hot(labels.long(), num_classes).to(responsibilities.dtype)
    weighted_counts = responsibilities.T @ one_hot  # (K, C)
    totals = weighted_counts.sum(1)
    shares = weighted_counts / totals.clamp_min(1e-12).unsqueeze(1)
    confidence, majority = shares.max(1)
    confidence = torch.where(totals > 0, confidence, torch.zeros_like(confidence))
    return majority.tolist(), confidence.tolist()


def cluster_accuracy(assignments: torch.Tensor, labels: torch.Tensor) -> float:
    """Accuracy under the best one-to-one matching of clusters to labels (Hungarian)."""
    assignments_np, labels_np = assignments.cpu().numpy(), labels.cpu().numpy()
    clusters, classes = np.unique(assignments_np), np.unique(labels_np)
    counts = confusion_matrix(labels_np, assignments_np, labels=np.union1d(clusters, classes))
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return float(counts[rows, cols].sum() / len(labels_np))


def clustering_scores(assignments: torch.Tensor, labels: torch.Tensor) -> dict:
    """``nmi``, ``ari`` and ``cluster_accuracy`` of hard assignments against labels."""
    return {
        "nmi": float(normalized_mutual_info_score(assignments, labels)),
        "ari": float(adjusted_rand_score(assignments, labels)),
        "cluster_accuracy": cluster_accuracy(assignments, labels),
    }


def mixture_diagnostics(
    responsibilities: torch.Tensor, pi: torch.Tensor, labels: torch.Tensor, num_classes: int
) -> dict:
    """Every mixture statistic of the output contract from q(c|x) and pi."""
    usage = component_usage(responsibilities)
    majority, majority_confidence = component_majority(responsibilities, labels, num_classes)
    return {
        "K": int(responsibilities.shape[1]),
        "component_usage": usage.tolist(),
        "K_eff": effective_components(usage),
        "active_components": active_components(usage),
        "component_entropy": float(entropy(responsibilities).mean()),
        "responsibility_confidence_mean": float(responsibilities.max(1).values.mean()),
        **distribution_summary(pi),
        "component_majority_labels": majority,
        "component_majority_confidence": majority_confidence,
    }


def accuracy(predictions: torch.Tensor, labels: torch.Tensor) -> float | None:
    """Share of correct predictions; None for an empty selection."""
    if len(labels) == 0:
        return None
    return float((predictions == labels).float().mean())
