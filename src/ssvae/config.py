"""Validation of a composed run configuration, before anything is trained.

Every check names the offending key and the allowed range in one line, so a bad
value in a sweep fails its own job at once instead of after an hour of training.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from omegaconf import DictConfig, ListConfig, OmegaConf

from ssvae.data.split import LABEL_SAMPLING
from ssvae.models import ENCODER_TYPES, PRIOR_TYPES

RECONSTRUCTION_TYPES = ("bce", "mse")
LABEL_WEIGHT_SCALINGS = ("constant", "unlabeled_ratio")
ACCURACY_SOURCES = ("classifier_head", "components")


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


def _check_sample_counts(cfg: DictConfig) -> None:
    """``num_samples`` (an integer or ``all``) and ``num_labeled``; the data bounds come later."""
    num_samples = OmegaConf.select(cfg, "num_samples")
    if num_samples == "all":
        _check(cfg, "num_labeled", lambda v: v >= 0, ">= 0", integer=True)
        return
    if isinstance(num_samples, str):
        raise ConfigError(f"num_samples={num_samples!r}: must be an integer >= 1 or 'all'")
    _check(cfg, "num_samples", lambda v: v >= 1, ">= 1 (or 'all')", integer=True)
    _check(
        cfg,
        "num_labeled",
        lambda v: 0 <= v <= num_samples,
        f"in [0, num_samples={num_samples}]",
        integer=True,
    )


def _check_data_source(cfg: DictConfig) -> None:
    """A folder for file-based sources, and one class name per class."""
    if OmegaConf.select(cfg, "data.source") == "idx" and not OmegaConf.select(
        cfg, "data.path", throw_on_missing=False
    ):
        raise ConfigError("data.path: a value is required (the folder holding the IDX files)")
    _check(cfg, "data.num_classes", lambda v: v >= 2, ">= 2", integer=True)
    names = OmegaConf.select(cfg, "data.class_names")
    if names is not None and len(names) != cfg.data.num_classes:
        raise ConfigError(
            f"data.class_names: {len(names)} names for data.num_classes={cfg.data.num_classes}"
        )


def validate_config(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` for the first invalid value of a composed config."""
    _check_sample_counts(cfg)
    _check_data_source(cfg)
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
    _choice(cfg, "model.encoder_type", ENCODER_TYPES)

    _choice(cfg, "loss.reconstruction", RECONSTRUCTION_TYPES)
    for key in NON_NEGATIVE_WEIGHTS:
        _check(cfg, key, lambda v: v >= 0, ">= 0")
    _number(cfg, "loss.usage_weight")  # either sign: negative rewards spreading over components
    _check(cfg, "loss.kl_c_anneal_epochs", lambda v: v >= 0, ">= 0", integer=True)

    _check(cfg, "optimizer.lr", lambda v: v > 0, "> 0")
    _check(cfg, "optimizer.weight_decay", lambda v: v >= 0, ">= 0")
    _check(cfg, "trainer.max_epochs", lambda v: v >= 1, ">= 1", integer=True)
    _check_identity(cfg)
    _check_run_settings(cfg)
    _check_accuracy_options(cfg)
    _check_baselines(cfg)
    validate_paths(cfg)


def _check_identity(cfg: DictConfig) -> None:
    """``name`` and ``description`` are scalars, ``tags`` a list of scalars (never a string)."""
    for key in ("name", "description"):
        value = OmegaConf.select(cfg, key)
        if isinstance(value, (DictConfig, ListConfig)):
            raise ConfigError(f"{key}={value}: must be a single string")
    tags = OmegaConf.select(cfg, "tags")
    if tags is not None and not isinstance(tags, ListConfig):
        raise ConfigError(f"tags={tags!r}: must be a list, e.g. tags=[{tags}]")
    if tags is not None and any(isinstance(tag, (DictConfig, ListConfig)) for tag in tags):
        raise ConfigError(f"tags={tags}: every tag must be a single string")


def _check_run_settings(cfg: DictConfig) -> None:
    """Numbers handed to Lightning and to the report, which would fail late or oddly."""
    _check(cfg, "trainer.gradient_clip_val", lambda v: v >= 0, ">= 0 (or null)", optional=True)
    _check(cfg, "trainer.log_every_n_steps", lambda v: v >= 1, ">= 1", integer=True, optional=True)
    _check(
        cfg,
        "callbacks.early_stopping.patience",
        lambda v: v >= 0,
        ">= 0",
        integer=True,
        optional=True,
    )
    _check(cfg, "report.num_reconstructions", lambda v: v >= 1, ">= 1", integer=True)


def validate_paths(cfg: DictConfig) -> None:
    """``paths.min_free_mb``: the free space an output location needs before a run starts."""
    _check(cfg, "paths.min_free_mb", lambda v: v >= 0, ">= 0", optional=True)


def _check_accuracy_options(cfg: DictConfig) -> None:
    """Options that raise classification accuracy, and what ``accuracy`` is computed from."""
    _check(cfg, "loss.kl_warmup_epochs", lambda v: v >= 0, ">= 0", integer=True)
    _choice(cfg, "loss.label_weight_scaling", LABEL_WEIGHT_SCALINGS)
    _check(cfg, "loss.component_label_weight", lambda v: v >= 0, ">= 0")
    mixture = cfg.prior.type == "mixture"
    num_components, num_classes = cfg.prior.num_components, cfg.data.num_classes
    if cfg.loss.component_label_weight > 0 and not (mixture and num_components == num_classes):
        raise ConfigError(
            f"loss.component_label_weight={cfg.loss.component_label_weight}: supervising the "
            f"components needs prior=mixture with prior.num_components == data.num_classes "
            f"({num_classes}), got prior.type={cfg.prior.type}, num_components={num_components}"
        )
    _check(cfg, "loss.consistency_weight", lambda v: v >= 0, ">= 0")
    _check(cfg, "loss.consistency_shift", lambda v: v >= 0, ">= 0")
    _check(cfg, "loss.consistency_rotation", lambda v: 0 <= v <= 180, "in [0, 180]")
    _check(cfg, "loss.consistency_scale", lambda v: 0 <= v < 1, "in [0, 1)")
    _check(cfg, "loss.consistency_threshold", lambda v: 0 <= v < 1, "in [0, 1)")
    _choice(cfg, "evaluation.accuracy_source", ACCURACY_SOURCES)
    if cfg.evaluation.accuracy_source == "components" and not mixture:
        raise ConfigError("evaluation.accuracy_source=components: needs prior=mixture")


def _check_baselines(cfg: DictConfig) -> None:
    """The scikit-learn reference classifiers of the report."""
    enabled = OmegaConf.select(cfg, "baselines.enabled")
    if not isinstance(enabled, bool):
        raise ConfigError(f"baselines.enabled={enabled!r}: must be true or false")
    _check(
        cfg,
        "baselines.max_samples",
        lambda v: v >= 2,
        ">= 2 (or null for the whole pool)",
        integer=True,
        optional=True,
    )
    _check(cfg, "baselines.n_neighbors", lambda v: v >= 1, ">= 1", integer=True)
    _check(cfg, "baselines.spreading_alpha", lambda v: 0 < v < 1, "in (0, 1)")
    _check(cfg, "baselines.logistic_c", lambda v: v > 0, "> 0")
