"""Diagnostics on small hand-made inputs with known answers."""

import math

import pytest
import torch

from ssvae import metrics


def one_hot(indices, size):
    return torch.nn.functional.one_hot(torch.tensor(indices), size).float()


def test_collapse_onto_one_component():
    labels = torch.tensor([0, 0, 0, 1, 2])  # majority class holds 3 of 5
    responsibilities = one_hot([2] * 5, 4)
    usage = metrics.component_usage(responsibilities)
    assert usage.tolist() == [0.0, 0.0, 1.0, 0.0]
    assert metrics.effective_components(usage) == pytest.approx(1.0)
    assert metrics.active_components(usage) == 1
    assert metrics.cluster_accuracy(responsibilities.argmax(1), labels) == pytest.approx(3 / 5)
    diagnostics = metrics.mixture_diagnostics(responsibilities, torch.full((4,), 0.25), labels, 3)
    assert diagnostics["component_entropy"] == pytest.approx(0.0, abs=1e-6)
    assert diagnostics["responsibility_confidence_mean"] == 1.0
    assert diagnostics["component_majority_labels"][2] == 0
    assert diagnostics["component_majority_confidence"] == pytest.approx([0, 0, 0.6, 0])


def test_perfect_assignment_under_relabelling():
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    assignments = torch.tensor([5, 5, 3, 3, 4, 4])
    scores = metrics.clustering_scores(assignments, labels)
    assert scores["nmi"] == pytest.approx(1.0)
    assert scores["ari"] == pytest.approx(1.0)
    assert scores["cluster_accuracy"] == pytest.approx(1.0)


def test_uniform_usage_and_soft_responsibilities():
    responsibilities = torch.full((8, 4), 0.25)
    usage = metrics.component_usage(responsibilities)
    assert metrics.effective_components(usage) == pytest.approx(4.0)
    assert metrics.active_components(usage) == 4
    assert float(metrics.entropy(responsibilities).mean()) == pytest.approx(math.log(4))


def test_active_components_threshold_is_one_percent():
    usage = torch.tensor([0.985, 0.011, 0.004])
    assert metrics.active_components(usage) == 2


def test_pi_summary():
    summary = metrics.distribution_summary(torch.tensor([0.5, 0.25, 0.25]))
    assert summary["pi_argmax"] == 0
    assert summary["pi_max"] == 0.5 and summary["pi_min"] == 0.25
    assert summary["pi_entropy"] == pytest.approx(-(0.5 * math.log(0.5) + 0.5 * math.log(0.25)))


def test_majority_is_responsibility_weighted():
    responsibilities = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.2, 0.8]])
    labels = torch.tensor([1, 1, 0])
    majority, confidence = metrics.component_majority(responsibilities, labels, 2)
    assert majority == [1, 0]
    assert confidence[0] == pytest.approx(1.8 / 2.0)
    assert confidence[1] == pytest.approx(0.8 / 1.0)


def test_cluster_accuracy_with_more_clusters_than_classes():
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    assignments = torch.tensor([0, 0, 2, 1, 1, 1])  # cluster 2 cannot also map to class 0
    assert metrics.cluster_accuracy(assignments, labels) == pytest.approx(5 / 6)


def test_accuracy_of_empty_selection_is_none():
    assert metrics.accuracy(torch.tensor([]), torch.tensor([])) is None
    assert metrics.accuracy(torch.tensor([1, 2]), torch.tensor([1, 0])) == 0.5
