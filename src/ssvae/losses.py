"""Loss terms of the semi-supervised mixture VAE, as pure functions.

Every function takes tensors and returns tensors; nothing here knows about
Lightning. Per-sample terms return shape ``(B,)`` so callers choose how to
reduce them; batch-level terms return a scalar.

The total objective (all terms averaged over the batch) is::

    total = recon_weight     * L_recon
          + kl_weight        * KL_z
          + kl_c_weight      * anneal(epoch) * KL_c        (mixture prior only)
          + dirichlet_weight * R_dirichlet                 (mixture prior only)
          + usage_weight     * H(usage)                    (mixture prior only)
          + label_weight     * CE_labelled
          + component_label_weight * CE_components         (mixture prior, K = C only)

``kl_weight`` may be warmed up linearly over ``kl_warmup_epochs``. With
``label_weight_scaling="unlabeled_ratio"`` both label weights are multiplied by the
ratio of unlabelled to labelled training samples. CE_components
supervises the responsibilities q(c|x) of labelled samples with their class, so
that component c stands for class c (as q(y|x) does in Kingma et al.'s M2).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ssvae.augment import AffineJitter

#: Target value marking a sample whose label is hidden from the model.
UNLABELED = -1


def reconstruction_loss(
    x: torch.Tensor,
    logits: torch.Tensor,
    responsibilities: torch.Tensor | None = None,
    kind: str = "bce",
) -> torch.Tensor:
    """Per-sample reconstruction loss.

    Args:
        x: Inputs in [0, 1], shape ``(B, D)``.
        logits: Pixel logits, ``(B, D)`` for a single decoder or ``(B, K, D)``
            for one reconstruction per mixture component.
        responsibilities: q(c|x), shape ``(B, K)``; required with 3-D logits.
        kind: ``"bce"`` (Bernoulli likelihood, summed over pixels) or ``"mse"``
            (squared error of the sigmoid output, averaged over pixels).

    Returns:
        ``(B,)``: sum_c q(c|x) * loss(x, logits_c), or loss(x, logits).
    """
    target = x.unsqueeze(1).expand_as(logits) if logits.dim() == 3 else x  # (B, K, D) or (B, D)
    if kind == "bce":
        # From logits, never from clipped probabilities: stable for saturated pixels.
        per_pixel = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        per_recon = per_pixel.sum(-1)
    elif kind == "mse":
        per_recon = (torch.sigmoid(logits) - target).pow(2).mean(-1)
    else:
        raise ValueError(f"unknown reconstruction kind {kind!r}; expected 'bce' or 'mse'")

    if logits.dim() == 3:
        if responsibilities is None:
            raise ValueError("per-component logits need responsibilities to be weighted")
        return (responsibilities * per_recon).sum(-1)  # (B,)
    return per_recon


def kl_gaussian(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag(exp(logvar))) || N(0, I)) per sample, shape ``(B,)``."""
    return -0.5 * (1.0 + logvar - mu.pow(2) - logvar.exp()).sum(-1)


def kl_categorical(log_responsibilities: torch.Tensor, log_pi: torch.Tensor) -> torch.Tensor:
    """KL(q(c|x) || pi) = sum_c q(c|x) (log q(c|x) - log pi_c), shape ``(B,)``."""
    responsibilities = log_responsibilities.exp()
    return (responsibilities * (log_responsibilities - log_pi)).sum(-1)


def dirichlet_penalty(log_pi: torch.Tensor, alpha: float) -> torch.Tensor:
    """Negative log-density (up to a constant) of a symmetric Dirichlet(alpha) on pi.

    R = -(alpha - 1) * sum_c log pi_c. For alpha > 1 it pushes pi towards uniform.
    """
    return -(alpha - 1.0) * log_pi.sum()


def usage_entropy(responsibilities: torch.Tensor) -> torch.Tensor:
    """Entropy of the batch-mean responsibilities (how spread the batch is over components)."""
    usage = responsibilities.mean(0)  # (K,)
    return -(usage * torch.log(usage.clamp_min(1e-12))).sum()


def labelled_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the samples whose target is not :data:`UNLABELED`.

    Returns exactly zero (not NaN) when the batch holds no labelled sample, and
    keeps the result attached to the graph so the caller can always backpropagate.
    """
    labelled = targets != UNLABELED
    per_sample = F.cross_entropy(logits, targets.clamp_min(0), reduction="none")
    per_sample = per_sample * labelled
    # max(count, 1) avoids 0/0 without a host sync on the count.
    return per_sample.sum() / labelled.sum().clamp_min(1)


def consistency_loss(
    clean_logits: torch.Tensor, jittered_logits: torch.Tensor, threshold: float = 0.0
) -> torch.Tensor:
    """Disagreement between predictions on x and on x', a jittered view of x, batch mean.

    The clean prediction is the target and gets no gradient, so the term pulls the
    jittered view towards it and never flattens both. With ``threshold == 0`` it is
    KL(p(.|x) || p(.|x')) (as in the Pi-model); with ``threshold > 0`` it is the
    cross-entropy of x' against the argmax of p(.|x) for the samples whose top
    probability reaches ``threshold``, the others counting 0 (pseudo-labelling as in
    FixMatch).
    """
    target = F.softmax(clean_logits.detach(), dim=-1)  # (B, C)
    log_predicted = F.log_softmax(jittered_logits, dim=-1)
    if threshold <= 0:
        return F.kl_div(log_predicted, target, reduction="batchmean")
    confidence, pseudo_labels = target.max(-1)
    confident = (confidence >= threshold).to(log_predicted.dtype)
    per_sample = F.nll_loss(log_predicted, pseudo_labels, reduction="none")
    return (per_sample * confident).mean()


def kl_c_anneal(epoch: int, anneal_epochs: int) -> float:
    """Linear warm-up factor min(1, (epoch + 1) / anneal_epochs); 1 when anneal_epochs is 0.

    Used for KL_c (``kl_c_anneal_epochs``) and for KL_z (``kl_warmup_epochs``).
    """
    if anneal_epochs <= 0:
        return 1.0
    return min(1.0, (epoch + 1) / anneal_epochs)


@dataclass(frozen=True)
class LossWeights:
    """Weights of the terms of the objective; see the module docstring."""

    recon_weight: float = 1.0
    kl_weight: float = 1.0
    kl_c_weight: float = 1.0
    dirichlet_weight: float = 1.0
    usage_weight: float = 0.0
    label_weight: float = 1.0
    kl_c_anneal_epochs: int = 0
    dirichlet_alpha: float | None = None
    reconstruction: str = "bce"
    kl_warmup_epochs: int = 0
    component_label_weight: float = 0.0
    label_weight_scaling: str = "constant"
    unlabeled_ratio: float = 1.0
    consistency_weight: float = 0.0
    consistency_shift: float = 2.0
    consistency_rotation: float = 10.0
    consistency_scale: float = 0.1
    consistency_threshold: float = 0.0

    @property
    def jitter(self) -> AffineJitter:
        """Ranges of the random affine view used by the consistency term."""
        return AffineJitter(
            self.consistency_shift, self.consistency_rotation, self.consistency_scale
        )

    @property
    def label_scale(self) -> float:
        """Factor on both label terms: the unlabelled/labelled ratio of the training set
        under ``label_weight_scaling="unlabeled_ratio"``, else 1."""
        return self.unlabeled_ratio if self.label_weight_scaling == "unlabeled_ratio" else 1.0


def objective(
    x: torch.Tensor,
    targets: torch.Tensor,
    recon_logits: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    class_logits: torch.Tensor,
    weights: LossWeights,
    epoch: int,
    component_logits: torch.Tensor | None = None,
    log_pi: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """All loss terms of one batch, unweighted, plus the weighted ``loss``.

    Mixture-only terms (``kl_c``, ``dirichlet``, ``usage_entropy``) are present
    only when ``component_logits`` and ``log_pi`` are given. Weighted variants of
    annealed or signed terms are returned under ``*_weighted`` keys.
    """
    responsibilities = None
    terms: dict[str, torch.Tensor] = {}
    if component_logits is not None:
        log_responsibilities = F.log_softmax(component_logits, dim=-1)  # (B, K)
        responsibilities = log_responsibilities.exp()

    terms["recon_loss"] = reconstruction_loss(
        x, recon_logits, responsibilities, weights.reconstruction
    ).mean()
    terms["kl_z"] = kl_gaussian(mu, logvar).mean()
    terms["classification_loss"] = labelled_cross_entropy(class_logits, targets)
    kl_z_factor = weights.kl_weight * kl_c_anneal(epoch, weights.kl_warmup_epochs)
    terms["kl_z_weighted"] = kl_z_factor * terms["kl_z"]
    total = (
        weights.recon_weight * terms["recon_loss"]
        + terms["kl_z_weighted"]
        + weights.label_weight * weights.label_scale * terms["classification_loss"]
    )
    if component_logits is not None and weights.component_label_weight > 0:
        terms["component_classification_loss"] = labelled_cross_entropy(component_logits, targets)
        component_factor = weights.component_label_weight * weights.label_scale
        total = total + component_factor * terms["component_classification_loss"]

    if responsibilities is not None and log_pi is not None:
        terms["kl_c"] = kl_categorical(log_responsibilities, log_pi).mean()
        terms["usage_entropy"] = usage_entropy(responsibilities)
        kl_c_factor = weights.kl_c_weight * kl_c_anneal(epoch, weights.kl_c_anneal_epochs)
        terms["kl_c_weighted"] = kl_c_factor * terms["kl_c"]
        terms["usage_entropy_weighted"] = weights.usage_weight * terms["usage_entropy"]
        total = total + terms["kl_c_weighted"] + terms["usage_entropy_weighted"]
        if weights.dirichlet_alpha is not None:
            terms["dirichlet"] = dirichlet_penalty(log_pi, weights.dirichlet_alpha)
            total = total + weights.dirichlet_weight * terms["dirichlet"]

    terms["loss"] = total
    return terms
