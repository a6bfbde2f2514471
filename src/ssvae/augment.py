"""Small random affine perturbations of flattened square images, for consistency training.

A digit shifted by a pixel or two, turned by a few degrees or scaled by a few
percent keeps its class; asking the classifier (and q(c|x)) to give the same
answer for both views propagates the few labels along these directions of the
unlabelled data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AffineJitter:
    """Ranges of the random affine map; each sample draws its own.

    Args:
        max_shift: Largest translation in pixels, per axis.
        max_rotation: Largest rotation in degrees, either direction.
        max_scale: Largest relative change of size (0.1: between 0.9 and 1.1).
    """

    max_shift: float = 2.0
    max_rotation: float = 10.0
    max_scale: float = 0.1


def image_side(input_dim: int) -> int:
    """Side of a square image of ``input_dim`` pixels; ValueError if it is not square."""
    side = math.isqrt(input_dim)
    if side * side != input_dim:
        raise ValueError(f"{input_dim} pixels do not form a square image; jitter needs one")
    return side


def random_affine(images: torch.Tensor, jitter: AffineJitter) -> torch.Tensor:
    """Each image of ``(B, D)`` under its own random affine map; returns ``(B, D)``.

    Pixels moved in from outside the frame are 0 (background of MNIST-like data).
    """
    batch, side = images.shape[0], image_side(images.shape[1])

    def uniform(limit: float) -> torch.Tensor:
        return (torch.rand(batch, device=images.device) * 2 - 1) * limit

    angle = uniform(math.radians(jitter.max_rotation))
    scale = 1 + uniform(jitter.max_scale)
    # affine_grid works in [-1, 1] coordinates: one pixel is 2 / side.
    shift = torch.stack([uniform(jitter.max_shift), uniform(jitter.max_shift)], 1) * 2 / side
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    )  # (B, 2, 3)
    grid = F.affine_grid(theta, (batch, 1, side, side), align_corners=False)
    moved = F.grid_sample(
        images.view(batch, 1, side, side), grid, padding_mode="zeros", align_corners=False
    )
    return moved.view(batch, -1)
