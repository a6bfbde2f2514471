"""Each loss term against an independent computation."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Bernoulli, Categorical, Dirichlet, Normal, kl_divergence

from ssvae.losses import (
    UNLABELED,
    LossWeights,
    dirichlet_penalty,
    kl_c_anneal,
    kl_categorical,
    kl_gaussian,
    labelled_cross_entropy,
    objective,
    reconstruction_loss,
    usage_entropy,
)


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def test_kl_gaussian_matches_torch_distributions(generator):
    mu = torch.randn(6, 3, generator=generator)
    logvar = torch.randn(6, 3, generator=generator)
    posterior = Normal(mu, torch.exp(0.5 * logvar))
    prior = Normal(torch.zeros_like(mu), torch.ones_like(mu))
    expected = kl_divergence(posterior, prior).sum(-1)
    torch.testing.assert_close(kl_gaussian(mu, logvar), expected)


def test_kl_categorical_matches_torch_distributions(generator):
    log_q = torch.log_softmax(torch.randn(5, 4, generator=generator), -1)
    log_pi = torch.log_softmax(torch.randn(4, generator=generator), -1)
    expected = kl_divergence(Categorical(logits=log_q), Categorical(logits=log_pi.expand(5, 4)))
    torch.testing.assert_close(kl_categorical(log_q, log_pi), expected)


def test_mixture_reconstruction_equals_explicit_loop_over_components(generator):
    x = torch.rand(4, 7, generator=generator)
    logits = torch.randn(4, 3, 7, generator=generator)
    responsibilities = torch.softmax(torch.randn(4, 3, generator=generator), -1)
    expected = torch.zeros(4)
    for component in range(3):
        distribution = Bernoulli(logits=logits[:, component], validate_args=False)
        log_likelihood = distribution.log_prob(x).sum(-1)  # grey pixels: BCE, not a pmf
        expected += responsibilities[:, component] * -log_likelihood
    torch.testing.assert_close(reconstruction_loss(x, logits, responsibilities), expected)


def test_bce_is_stable_for_saturated_logits():
    x = torch.tensor([[0.0, 1.0]])
    logits = torch.tensor([[-200.0, 200.0]])
    assert reconstruction_loss(x, logits).item() == pytest.approx(0.0, abs=1e-6)
    assert torch.isfinite(reconstruction_loss(1 - x, logits)).all()


def test_mse_is_the_pixel_mean_of_squared_error(generator):
    x = torch.rand(3, 5, generator=generator)
    logits = torch.randn(3, 5, generator=generator)
    expected = ((torch.sigmoid(logits) - x) ** 2).mean(-1)
    torch.testing.assert_close(reconstruction_loss(x, logits, kind="mse"), expected)


def test_unknown_reconstruction_kind_is_rejected():
    with pytest.raises(ValueError, match="unknown reconstruction kind 'l1'"):
        reconstruction_loss(torch.zeros(1, 2), torch.zeros(1, 2), kind="l1")


def test_dirichlet_penalty_is_the_negative_log_density_up_to_a_constant(generator):
    alpha = 5.0
    first = torch.softmax(torch.randn(4, generator=generator), 0)
    second = torch.softmax(torch.randn(4, generator=generator), 0)
    dirichlet = Dirichlet(torch.full((4,), alpha))
    # Differences cancel the normalising constant: R(a) - R(b) = log p(b) - log p(a).
    expected = dirichlet.log_prob(second) - dirichlet.log_prob(first)
    actual = dirichlet_penalty(first.log(), alpha) - dirichlet_penalty(second.log(), alpha)
    torch.testing.assert_close(actual, expected)
    assert dirichlet_penalty(first.log(), 1.0).item() == 0.0


def test_usage_entropy_is_entropy_of_the_batch_mean():
    responsibilities = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert usage_entropy(responsibilities).item() == pytest.approx(math.log(2))
    collapsed = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert usage_entropy(collapsed).item() == pytest.approx(0.0, abs=1e-6)


def test_labelled_cross_entropy_uses_only_labelled_samples(generator):
    logits = torch.randn(4, 3, generator=generator)
    targets = torch.tensor([2, UNLABELED, 0, UNLABELED])
    expected = F.cross_entropy(logits[[0, 2]], targets[[0, 2]])
    torch.testing.assert_close(labelled_cross_entropy(logits, targets), expected)


def test_labelled_cross_entropy_is_zero_not_nan_without_labels(generator):
    logits = torch.randn(3, 4, generator=generator, requires_grad=True)
    loss = labelled_cross_entropy(logits, torch.full((3,), UNLABELED))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


@pytest.mark.parametrize(
    ("epoch", "epochs", "expected"), [(0, 0, 1.0), (0, 4, 0.25), (3, 4, 1.0), (9, 4, 1.0)]
)
def test_kl_c_anneal(epoch, epochs, expected):
    assert kl_c_anneal(epoch, epochs) == expected


def test_objective_sums_the_weighted_terms(generator):
    batch, components, pixels, latent = 4, 3, 6, 2
    x = torch.rand(batch, pixels, generator=generator)
    recon = torch.randn(batch, components, pixels, generator=generator)
    mu, logvar = torch.randn(2, batch, latent, generator=generator)
    class_logits = torch.randn(batch, 10, generator=generator)
    component_logits = torch.randn(batch, components, generator=generator)
    log_pi = torch.log_softmax(torch.randn(components, generator=generator), 0)
    targets = torch.tensor([1, UNLABELED, UNLABELED, 7])
    weights = LossWeights(
        recon_weight=0.9, kl_weight=0.5, kl_c_weight=0.1, dirichlet_weight=2.0,
        usage_weight=-0.05, label_weight=3.0, kl_c_anneal_epochs=4, dirichlet_alpha=5.0,
    )  # fmt: skip
    terms = objective(x, targets, recon, mu, logvar, class_logits, weights, epoch=1,
                      component_logits=component_logits, log_pi=log_pi)  # fmt: skip
    expected = (
        0.9 * terms["recon_loss"] + 0.5 * terms["kl_z"] + 0.1 * 0.5 * terms["kl_c"]
        + 2.0 * terms["dirichlet"] - 0.05 * terms["usage_entropy"]
        + 3.0 * terms["classification_loss"]
    )  # fmt: skip
    torch.testing.assert_close(terms["loss"], expected)
    torch.testing.assert_close(terms["kl_c_weighted"], 0.05 * terms["kl_c"])


def test_standard_prior_objective_has_no_mixture_terms(generator):
    x = torch.rand(2, 5, generator=generator)
    terms = objective(
        x, torch.tensor([UNLABELED, UNLABELED]), torch.randn(2, 5, generator=generator),
        torch.zeros(2, 2), torch.zeros(2, 2), torch.randn(2, 10, generator=generator),
        LossWeights(dirichlet_alpha=5.0), epoch=0,
    )  # fmt: skip
    assert set(terms) == {"recon_loss", "kl_z", "kl_z_weighted", "classification_loss", "loss"}
    assert terms["kl_z"].item() == 0.0
    torch.testing.assert_close(terms["loss"], terms["recon_loss"])
