"""The final evaluation pass: one deterministic forward over a dataset, then every metric."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans

from ssvae import metrics
from ssvae.models import MixtureVAE


@dataclass
class Predictions:
    """Per-sample outputs of the evaluation pass (z = mu, no sampling)."""

    mu: torch.Tensor  # (N, d)
    class_probabilities: torch.Tensor  # (N, C)
    responsibilities: torch.Tensor | None  # (N, K), mixture prior only
    classification_loss: torch.Tensor  # (N,) cross-entropy against the true labels

    @property
    def predicted_classes(self) -> torch.Tensor:
        return self.class_probabilities.argmax(1)


@torch.no_grad()
def predict(
    model: MixtureVAE, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1024
) -> Predictions:
    """Run the model in evaluation mode over ``images`` in batches, on the model's device."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    mus, probabilities, responsibilities, losses = [], [], [], []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].to(device)
        output = model(batch)
        mus.append(output.mu.cpu())
        probabilities.append(torch.softmax(output.class_logits, 1).cpu())
        losses.append(
            F.cross_entropy(
                output.class_logits,
                labels[start : start + batch_size].to(device),
                reduction="none",
            ).cpu()
        )
        if output.component_logits is not None:
            responsibilities.append(torch.softmax(output.component_logits, 1).cpu())
    model.train(was_training)
    return Predictions(
        mu=torch.cat(mus),
        class_probabilities=torch.cat(probabilities),
        responsibilities=torch.cat(responsibilities) if responsibilities else None,
        classification_loss=torch.cat(losses),
    )


def component_label_map(
    responsibilities: torch.Tensor, labels: torch.Tensor, num_classes: int
) -> torch.Tensor:
    """Label of each component, from responsibility-weighted counts of *labelled* samples."""
    majority, _ = metrics.component_majority(responsibilities, labels, num_classes)
    return torch.tensor(majority)


def _accuracy_fields(
    predicted: torch.Tensor, labels: torch.Tensor, labeled: torch.Tensor, hidden: torch.Tensor
) -> dict[str, float | None]:
    return {
        "accuracy": metrics.accuracy(predicted, labels),
        "accuracy_unlabeled": metrics.accuracy(predicted[hidden], labels[hidden]),
        "accuracy_labeled": metrics.accuracy(predicted[labeled], labels[labeled]),
    }


def classification_summary(
    predictions: Predictions,
    labels: torch.Tensor,
    labeled: torch.Tensor,
    val: torch.Tensor,
    num_classes: int,
    accuracy_source: str = "classifier_head",
) -> dict:
    """Accuracy on the pool, its hidden part, its labelled part and val.

    ``accuracy_source`` says what ``accuracy`` (and its ``_unlabeled``, ``_labeled``,
    ``_val`` variants) classifies with: ``"classifier_head"`` or ``"components"``.
    For the mixture prior, ``accuracy_components*`` always classify through
    argmax_c q(c|x), mapping each component to a label estimated from the labelled
    samples only; with ``"components"`` the head's figures move to ``accuracy_head*``.
    """
    head = predictions.predicted_classes
    hidden = torch.ones(len(labels), dtype=torch.bool)
    hidden[labeled] = False
    through_components = None
    if predictions.responsibilities is not None and len(labeled) > 0:
        label_map = component_label_map(
            predictions.responsibilities[labeled], labels[labeled], num_classes
        )
        through_components = label_map[predictions.responsibilities.argmax(1)]
    if accuracy_source == "components" and through_components is None:
        raise ValueError("accuracy_source='components' needs a mixture prior and labelled samples")

    predicted = through_components if accuracy_source == "components" else head
    summary = {
        **_accuracy_fields(predicted, labels, labeled, hidden),
        "accuracy_val": metrics.accuracy(predicted[val], labels[val]),
        "classification_loss": float(predictions.classification_loss.mean()),
        "accuracy_source": accuracy_source,
    }
    if through_components is not None:
        summary["accuracy_components"] = metrics.accuracy(through_components, labels)
        summary["accuracy_components_unlabeled"] = metrics.accuracy(
            through_components[hidden], labels[hidden]
        )
    if accuracy_source == "components":
        summary["accuracy_head"] = metrics.accuracy(head, labels)
        summary["accuracy_head_unlabeled"] = metrics.accuracy(head[hidden], labels[hidden])
    return summary


MIXTURE_KEYS = (
    "K", "component_usage", "K_eff", "active_components", "component_entropy",
    "responsibility_confidence_mean", "pi_values", "pi_entropy", "pi_max", "pi_min",
    "pi_argmax", "component_majority_labels", "component_majority_confidence",
)  # fmt: skip


def cluster_assignments(
    predictions: Predictions, num_classes: int, seed: int = 0
) -> tuple[torch.Tensor, str]:
    """Hard cluster of each sample and where it comes from.

    The mixture prior clusters by argmax_c q(c|x). The standard prior has no
    components, so k-means with k = C on mu stands in, which keeps NMI/ARI
    comparable across the prior ablation.
    """
    if predictions.responsibilities is not None:
        return predictions.responsibilities.argmax(1), "argmax_responsibilities"
    kmeans = KMeans(n_clusters=num_classes, n_init=4, random_state=seed)
    return torch.from_numpy(kmeans.fit_predict(predictions.mu.numpy())), "kmeans_on_mu"


def structure_summary(
    predictions: Predictions, labels: torch.Tensor, pi: torch.Tensor | None, num_classes: int
) -> tuple[dict, dict]:
    """(mixture, clustering) sections; mixture values are None for the standard prior."""
    if predictions.responsibilities is None or pi is None:
        mixture = dict.fromkeys(MIXTURE_KEYS)
    else:
        mixture = metrics.mixture_diagnostics(
            predictions.responsibilities, pi, labels, num_classes
        )
    assignments, source = cluster_assignments(predictions, num_classes)
    clustering = {**metrics.clustering_scores(assignments, labels), "clustering_source": source}
    return mixture, clustering


def evaluate_test_split(
    predictions: Predictions,
    test_predictions: Predictions,
    labels: torch.Tensor,
    labeled: torch.Tensor,
    test_labels: torch.Tensor,
    num_classes: int,
    accuracy_source: str = "classifier_head",
) -> tuple[dict, dict]:
    """Test-split additions to the classification and clustering sections.

    ``accuracy_test`` classifies as ``accuracy`` does (``accuracy_source``); the
    component-to-label map comes from the *pool's* labelled samples, never from
    test labels. Clustering scores on the test split carry a ``_test`` suffix.

    Args:
        predictions: Evaluation pass over the training pool.
        test_predictions: Evaluation pass over the test split.
        labels: True labels of the pool, (N,).
        labeled: Positions of the labelled samples in the pool.
        test_labels: True labels of the test split, (N_test,).
        num_classes: Number of classes C.
        accuracy_source: ``"classifier_head"`` or ``"components"``.
    """
    head = test_predictions.predicted_classes
    classification = {"accuracy_test": metrics.accuracy(head, test_labels)}
    if test_predictions.responsibilities is not None and len(labeled) > 0:
        label_map = component_label_map(
            predictions.responsibilities[labeled], labels[labeled], num_classes
        )
        through_components = label_map[test_predictions.responsibilities.argmax(1)]
        classification["accuracy_components_test"] = metrics.accuracy(
            through_components, test_labels
        )
        if accuracy_source == "components":
            classification["accuracy_test"] = classification["accuracy_components_test"]
            classification["accuracy_head_test"] = metrics.accuracy(head, test_labels)
    assignments, _ = cluster_assignments(test_predictions, num_classes)
    scores = metrics.clustering_scores(assignments, test_labels)
    return classification, {f"{name}_test": value for name, value in scores.items()}
