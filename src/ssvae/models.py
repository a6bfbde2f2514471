"""Networks of the semi-supervised mixture VAE (plain ``nn.Module`` parts).

Generative model (mixture prior), for a sample with component c and latent z::

    c ~ Categorical(pi),  pi = softmax(pi_logits)
    z ~ N(0, I)
    x ~ Bernoulli(sigmoid(decoder([z, e_c])))

Inference model::

    q(c|x) = softmax(component_head(h(x)))        "responsibilities"
    q(z|x) = N(mu(h(x)), diag(exp(logvar(h(x)))))  shared by all components

The standard prior drops c, pi and the embeddings: x ~ decoder(z), z ~ N(0, I).
A classifier head predicts the class from z (mu at evaluation).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

PRIOR_TYPES = ("mixture", "standard")

# exp(logvar) stays finite and well away from zero within this range.
LOGVAR_MIN, LOGVAR_MAX = -10.0, 10.0


def mlp(sizes: Sequence[int], dropout: float = 0.0) -> nn.Sequential:
    """Linear layers with LeakyReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for index, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(fan_in, fan_out))
        if index < len(sizes) - 2:
            layers.append(nn.LeakyReLU(0.2))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


ENCODER_TYPES = ("mlp", "conv")


def conv_encoder(input_dim: int, width: int) -> nn.Sequential:
    """Two stride-2 3x3 convolutions (32, 64 channels) and a linear map to ``width``.

    Takes flattened square images ``(B, D)`` and returns features ``(B, width)``.
    """
    side = math.isqrt(input_dim)
    if side * side != input_dim:
        raise ValueError(f"a conv encoder needs square images; {input_dim} pixels are not")
    reduced = (side + 3) // 4  # two stride-2 convolutions with padding 1
    return nn.Sequential(
        nn.Unflatten(1, (1, side, side)),
        nn.Conv2d(1, 32, kernel_size=3, stride=2, padding=1),  # (B, 32, side/2, side/2)
        nn.LeakyReLU(0.2),
        nn.Conv2d(32, 64, kernel_size=3, stride=2, padding=1),  # (B, 64, side/4, side/4)
        nn.LeakyReLU(0.2),
        nn.Flatten(),
        nn.Linear(64 * reduced * reduced, width),
        nn.LeakyReLU(0.2),
    )


@dataclass
class VAEOutput:
    """What one forward pass produces (shapes for batch B, K components, D pixels)."""

    mu: torch.Tensor  # (B, d)
    logvar: torch.Tensor  # (B, d)
    z: torch.Tensor  # (B, d): a sample in training, mu in evaluation
    recon_logits: torch.Tensor  # (B, K, D) mixture, (B, D) standard
    class_logits: torch.Tensor  # (B, C)
    component_logits: torch.Tensor | None = None  # (B, K), mixture only


class MixtureVAE(nn.Module):
    """VAE whose latent space is organised by a learnable mixture of components.

    Args:
        input_dim: Number of pixels D.
        num_classes: Number of label classes C.
        latent_dim: Size d of z.
        hidden_dims: Encoder hidden widths; the decoder mirrors them.
        prior: ``"mixture"`` or ``"standard"``.
        num_components: K, the number of mixture components (mixture prior only).
        embedding_dim: Size of each component embedding e_c; defaults to ``latent_dim``.
        classifier_dropout: Dropout inside the classifier head.
        encoder_type: ``"mlp"`` (hidden_dims) or ``"conv"`` (:func:`conv_encoder` to
            ``hidden_dims[-1]`` features, for square images); the decoder is an MLP either way.
    """

    def __init__(
        self,
        input_dim: int,
        num_classes: int,
        latent_dim: int = 2,
        hidden_dims: Sequence[int] = (256, 128, 64),
        prior: str = "mixture",
        num_components: int = 10,
        embedding_dim: int | None = None,
        classifier_dropout: float = 0.2,
        encoder_type: str = "mlp",
    ) -> None:
        super().__init__()
        if prior not in PRIOR_TYPES:
            raise ValueError(f"unknown prior {prior!r}; expected one of {PRIOR_TYPES}")
        if encoder_type not in ENCODER_TYPES:
            raise ValueError(f"unknown encoder {encoder_type!r}; expected one of {ENCODER_TYPES}")
        self.prior = prior
        self.input_dim = input_dim
        self.latent_dim = latent_dim
        self.num_components = num_components if prior == "mixture" else 1
        hidden_dims = list(hidden_dims)

        if encoder_type == "conv":
            self.encoder = conv_encoder(input_dim, hidden_dims[-1])
        else:
            self.encoder = mlp([input_dim, *hidden_dims])
            self.encoder.append(nn.LeakyReLU(0.2))
        self.mu_head = nn.Linear(hidden_dims[-1], latent_dim)
        self.logvar_head = nn.Linear(hidden_dims[-1], latent_dim)

        width = hidden_dims[-1]
        self.classifier = mlp([latent_dim, width, width, num_classes], dropout=classifier_dropout)

        decoder_input = latent_dim
        if prior == "mixture":
            embedding_dim = embedding_dim or latent_dim
            self.component_head = nn.Linear(hidden_dims[-1], num_components)
            self.component_embeddings = nn.Parameter(
                0.02 * torch.randn(num_components, embedding_dim)
            )
            self.pi_logits = nn.Parameter(torch.zeros(num_components))
            decoder_input += embedding_dim
        self.decoder = mlp([decoder_input, *reversed(hidden_dims), input_dim])

    @property
    def is_mixture(self) -> bool:
        return self.prior == "mixture"

    def log_pi(self) -> torch.Tensor | None:
        """log of the mixture weights, shape ``(K,)``; None for the standard prior."""
        return torch.log_softmax(self.pi_logits, dim=0) if self.is_mixture else None

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Pixel logits: ``(B, K, D)`` for the mixture prior, ``(B, D)`` otherwise."""
        if not self.is_mixture:
            return self.decoder(z)
        batch, num_components = z.shape[0], self.num_components
        z_per_component = z.unsqueeze(1).expand(batch, num_components, -1)  # (B, K, d)
        embeddings = self.component_embeddings.unsqueeze(0).expand(batch, -1, -1)  # (B, K, d_e)
        return self.decoder(torch.cat([z_per_component, embeddings], dim=-1))  # (B, K, D)

    def heads(self, x: torch.Tensor) -> VAEOutput:
        """Encoder and classification heads only (no decoding): ``recon_logits`` is empty."""
        hidden = self.encoder(x)
        mu = self.mu_head(hidden)
        logvar = self.logvar_head(hidden).clamp(LOGVAR_MIN, LOGVAR_MAX)
        # Reparameterised sample in training; the mean at evaluation.
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        return VAEOutput(
            mu=mu,
            logvar=logvar,
            z=z,
            recon_logits=z.new_empty(0),
            class_logits=self.classifier(z),
            component_logits=self.component_head(hidden) if self.is_mixture else None,
        )

    def forward(self, x: torch.Tensor) -> VAEOutput:
        output = self.heads(x)
        output.recon_logits = self.decode(output.z)
        return output
