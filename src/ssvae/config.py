"""Validation of a composed run configuration, before anything is trained.

Every check names the offending key and the allowed range in one line, so a bad
value in a sweep fails its own job at once instead of after an hour of training.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from omegaconf import DictConfig, OmegaConf

from ssvae.data.split import LABEL_SAMPLING
from ssvae.models import PRIOR_TYPES

RECONSTRUCTION_TYPES = ("bce", "mse")


class ConfigError(ValueError):
    """A configuration value is missing, of the wrong type or out of range."""


def _number(cfg: DictConfig, key: str, integer: bool = False, optional: bool = False):
    value = OmegaConf.select(cfg, key, throw_on_missing=False)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{key}: a value is required")
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{key}={value!r}: must be {kind}, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ConfigError(f"{key}={value}: must be finite")
    return value


def _check(cfg: DictConfig, key: str, test: Callable[[float], bool], allowed: str, **kind) -> None:
    value = _number(cfg, key, **kind)
    if value is not None and not test(value):
        raise ConfigError(f"{key}={value}: must be {allowed}")


def _choice(cfg: DictConfig, key: str, choices: tuple[str, ...]) -> None:
    value = OmegaConf.select(cfg, key)
    if value not in choices:
        raise ConfigError(f"{key}={value!r}: must be one of {', '.join(choices)}")


NON_NEGATIVE_WEIGHTS = (
    "loss.recon_weight", "loss.kl_weight", "loss.kl_c_weight",
    "loss.dirichlet_weight", "loss.label_weight",
)  # fmt: skip


def validate_config(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` for the first invalid value of a composed config."""
    _check(cfg, "num_samples", lambda v: v >= 1, ">= 1", integer=True)
    num_samples = cfg.num_samples
    _check(
        cfg,
        "num_labeled",
        lambda v: 0 <= v <= num_samples,
        f"in [0, num_samples={num_samples}]",
        integer=True,
    )
    _check(cfg, "seed", lambda v: v >= 0, ">= 0", integer=True)
    _check(
        cfg,
        "threads",
        lambda v: v >= 1,
        ">= 1 (or null for torch's default)",
        integer=True,
        optional=True,
    )
    _check(cfg, "data.val_fraction", lambda v: 0 < v < 1, "in (0, 1)")
    _check(cfg, "data.batch_size", lambda v: v >= 1, ">= 1", integer=True)
    batch_size = cfg.data.batch_size
    _check(
        cfg,
        "data.labeled_per_batch",
        lambda v: 0 <= v < batch_size,
        f"in [0, batch_size={batch_size})",
        integer=True,
    )
    _choice(cfg, "data.label_sampling", LABEL_SAMPLING)

    _choice(cfg, "prior.type", PRIOR_TYPES)
    _check(cfg, "prior.num_components", lambda v: v >= 1, ">= 1", integer=True)
    _check(
        cfg,
        "prior.dirichlet_alpha",
        lambda v: v > 0,
        "> 0 (or null to drop the term)",
        optional=True,
    )
    _check(
        cfg,
        "prior.embedding_dim",
        lambda v: v >= 1,
        ">= 1 (or null for latent_dim)",
        integer=True,
        optional=True,
    )

    _check(cfg, "model.latent_dim", lambda v: v >= 1, ">= 1", integer=True)
    hidden = OmegaConf.select(cfg, "model.hidden_dims")
    if not hidden or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden):
        raise ConfigError(f"model.hidden_dims={hidden}: must be a non-empty list of integers >= 1")
    _check(cfg, "model.classifier_dropout", lambda v: 0 <= v < 1, "in [0, 1)")

    _choice(cfg, "loss.reconstruction", RECONSTRUCTION_TYPES)
    for key in NON_NEGATIVE_WEIGHTS:
        _check(cfg, key, lambda v: v >= 0, ">= 0")
    _number(cfg, "loss.usage_weight")  # either sign: negative rewards spreading over components
    _check(cfg, "loss.kl_c_anneal_epochs", lambda v: v >= 0, ">= 0", integer=True)

    _check(cfg, "optimizer.lr", lambda v: v > 0, "> 0")
    _check(cfg, "optimizer.weight_decay", lambda v: v >= 0, ">= 0")
    _check(cfg, "trainer.max_epochs", lambda v: v >= 1, ">= 1", integer=True)
