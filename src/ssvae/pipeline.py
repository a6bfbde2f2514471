"""From a composed Hydra config to a trained model and its report."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ssvae.callbacks import RunReport, TrainingHistory, write_run_files
from ssvae.config import ConfigError, validate_config
from ssvae.data import SemiSupervisedDataModule
from ssvae.data.split import SplitError
from ssvae.io import write_text
from ssvae.module import SemiSupervisedVAE

log = logging.getLogger(__name__)


def build_datamodule(cfg: DictConfig) -> SemiSupervisedDataModule:
    data = OmegaConf.to_container(cfg.data, resolve=True)
    return SemiSupervisedDataModule(seed=cfg.seed, **data)


def build_module(cfg: DictConfig, input_dim: int) -> SemiSupervisedVAE:
    prior = cfg.prior
    model = {
        **OmegaConf.to_container(cfg.model, resolve=True),
        "prior": prior.type,
        "num_components": prior.num_components,
        "embedding_dim": prior.embedding_dim,
    }
    loss = {
        **OmegaConf.to_container(cfg.loss, resolve=True),
        "dirichlet_alpha": prior.dirichlet_alpha,
    }
    return SemiSupervisedVAE(
        input_dim=input_dim,
        num_classes=cfg.data.num_classes,
        model=model,
        loss=loss,
        optimizer=OmegaConf.to_container(cfg.optimizer, resolve=True),
    )


def experiment_info(cfg: DictConfig) -> dict[str, Any]:
    """The ``experiment`` section of summary.json: identity of the run and its full config."""
    return {
        "name": cfg.name,
        "description": cfg.description,
        "tags": list(cfg.tags or []),
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seed": cfg.seed,
        "num_samples": cfg.num_samples,
        "num_labeled": cfg.num_labeled,
        "prior": cfg.prior.type,
        "run_dir": str(cfg.paths.output_dir),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }


def prepare_data(cfg: DictConfig) -> SemiSupervisedDataModule:
    """Validate the config and draw the split, so bad input fails before any training."""
    validate_config(cfg)
    datamodule = build_datamodule(cfg)
    try:
        datamodule.setup()
    except SplitError as error:
        raise ConfigError(str(error)) from error
    return datamodule


def failure_summary(experiment: dict[str, Any], error: BaseException, history: list[dict]) -> dict:
    """summary.json of a run that did not complete: the error and what is known of training."""
    return {
        "status": "failed",
        "error": f"{type(error).__name__}: {error}",
        "experiment": experiment,
        "training": {"epochs_completed": len(history)},
        "classification": {},
        "mixture": {},
        "clustering": {},
    }


def train(cfg: DictConfig) -> Path:
    """Train one configuration and write its report; returns the path of REPORT.md.

    Whatever goes wrong, the run directory ends with a ``summary.json`` whose
    ``status`` is ``"failed"`` and which names the error; the error is then re-raised.
    """
    run_dir = Path(cfg.paths.output_dir)
    experiment = experiment_info(cfg)
    history = TrainingHistory()
    try:
        return _train(cfg, run_dir, experiment, history)
    except Exception as error:
        write_run_files(run_dir, failure_summary(experiment, error, history.rows), history.rows)
        raise


def _train(
    cfg: DictConfig, run_dir: Path, experiment: dict[str, Any], history: TrainingHistory
) -> Path:
    datamodule = prepare_data(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    module = build_module(cfg, datamodule.input_dim)
    report = RunReport(
        run_dir, experiment, history, num_reconstructions=cfg.report.num_reconstructions
    )
    callbacks = [instantiate(callback) for callback in cfg.callbacks.values()]
    loggers = [instantiate(logger) for logger in (cfg.logger or {}).values()]
    trainer: pl.Trainer = instantiate(
        cfg.trainer, callbacks=[*callbacks, history, report], logger=loggers or False
    )
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
    return run_dir / "REPORT.md"
