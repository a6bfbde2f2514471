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
from pytorch_lightning.utilities import rank_zero_only

from ssvae.baselines import BaselineOptions
from ssvae.callbacks import RunReport, TrainingHistory, write_run_files
from ssvae.checkpointing import AtomicCheckpointIO
from ssvae.checkpoints import CheckpointError, RunState, check_compatible, load_checkpoint
from ssvae.config import ConfigError, validate_config, validate_paths
from ssvae.data import SemiSupervisedDataModule
from ssvae.data.split import SplitError
from ssvae.distributed import per_process, relaunchable
from ssvae.guards import NonFiniteLossGuard
from ssvae.interrupts import catch_interrupts
from ssvae.io import OutputLocationError, check_output_location, write_text
from ssvae.module import SemiSupervisedVAE

log = logging.getLogger(__name__)


def build_datamodule(cfg: DictConfig) -> SemiSupervisedDataModule:
    data = OmegaConf.to_container(cfg.data, resolve=True)
    return SemiSupervisedDataModule(seed=cfg.seed, **data)


def build_module(
    cfg: DictConfig, input_dim: int, unlabeled_ratio: float = 1.0
) -> SemiSupervisedVAE:
    """The LightningModule of ``cfg``; ``unlabeled_ratio`` feeds ``loss.label_weight_scaling``."""
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
        "unlabeled_ratio": unlabeled_ratio,
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
    """Validate the config, fetch and read the data and draw the split, before any training.

    The download step runs on rank zero only; under Lightning's DDP launcher the
    other ranks start after it, so they find the files in place.
    """
    validate_config(cfg)
    datamodule = build_datamodule(cfg)
    if rank_zero_only.rank == 0:
        datamodule.prepare_data()
    try:
        datamodule.setup()
    except SplitError as error:
        raise ConfigError(str(error)) from error
    return datamodule


def failure_summary(
    experiment: dict[str, Any],
    error: BaseException,
    history: list[dict],
    last_checkpoint: str | None = None,
) -> dict:
    """summary.json of a run that did not complete: the error and what is known of training.

    An error with a ``details`` dict (e.g. a non-finite loss: epoch, step, terms) adds a
    ``failure`` section naming the last checkpoint written before it.
    """
    summary = {
        "status": "failed",
        "error": f"{type(error).__name__}: {error}",
        "experiment": experiment,
        "training": {"epochs_completed": len(history)},
        "classification": {},
        "mixture": {},
        "clustering": {},
    }
    details = getattr(error, "details", None)
    if isinstance(details, dict):
        summary["failure"] = {**details, "last_good_checkpoint": last_checkpoint}
    return summary


def check_output_dir(cfg: DictConfig) -> None:
    """Fail before any work when ``paths.output_dir`` cannot take the run's files."""
    validate_paths(cfg)
    run_dir = cfg.paths.output_dir
    try:
        check_output_location(run_dir, OmegaConf.select(cfg, "paths.min_free_mb", default=0))
    except OutputLocationError as error:
        raise ConfigError(f"paths.output_dir={run_dir}: {error}") from error


def train(cfg: DictConfig) -> Path:
    """Train one configuration and write its report; returns the path of REPORT.md.

    Whatever goes wrong, the run directory ends with a ``summary.json`` whose
    ``status`` is ``"failed"`` and which names the error; the error is then re-raised.
    On SIGINT or SIGTERM the status is ``"interrupted"``, the report covers the
    completed epochs, and ``SystemExit(128 + signal)`` is raised. An output directory
    that cannot be written fails first, with :class:`ConfigError` and no summary.
    """
    check_output_dir(cfg)
    run_dir = Path(cfg.paths.output_dir)
    experiment = experiment_info(cfg)
    history = TrainingHistory()
    report = build_report(cfg, run_dir, experiment, history)
    with catch_interrupts() as interruption:
        try:
            return _train(cfg, run_dir, history, report)
        except BaseException as error:
            # A resumed run continues in its own directory: until its history is restored
            # from the checkpoint, neither a failure nor an interrupt may replace the files
            # already there.
            resumed_in_place = cfg.ckpt_path is not None and not history.rows
            if interruption.received or isinstance(error, KeyboardInterrupt):
                if not resumed_in_place:
                    report.write_interrupted(interruption.signal_name or "SIGINT")
                raise SystemExit(interruption.exit_code) from error
            if isinstance(error, Exception) and not resumed_in_place:
                summary = failure_summary(experiment, error, history.rows, report.last_checkpoint)
                _write_failure(run_dir, summary, history.rows)
            raise


def build_report(
    cfg: DictConfig, run_dir: Path, experiment: dict[str, Any], history: TrainingHistory
) -> RunReport:
    """The callback that evaluates the trained model and writes the run's report."""
    return RunReport(
        run_dir,
        experiment,
        history,
        num_reconstructions=cfg.report.num_reconstructions,
        accuracy_source=cfg.evaluation.accuracy_source,
        baselines=BaselineOptions(**OmegaConf.to_container(cfg.baselines, resolve=True)),
    )


def resume_checkpoint(cfg: DictConfig) -> dict[str, Any] | None:
    """The checkpoint named by ``ckpt_path``, loaded safely; None for a fresh run."""
    if cfg.ckpt_path is None:
        return None
    try:
        return load_checkpoint(cfg.ckpt_path)
    except CheckpointError as error:
        raise ConfigError(f"ckpt_path: {error}") from error


def check_resumable(
    checkpoint: dict[str, Any] | None, module: pl.LightningModule, path: str
) -> None:
    """Refuse, before training, a checkpoint whose weights cannot load into ``module``."""
    if checkpoint is None:
        return
    try:
        check_compatible(checkpoint, module.hparams, path)
    except CheckpointError as error:
        raise ConfigError(f"ckpt_path: {error}") from error
    log.info("resuming %s after epoch %d", path, checkpoint["epoch"])


def check_world_size(cfg: DictConfig, world_size: int) -> None:
    """Per-step counts must split evenly among the data-parallel processes."""
    for key in ("data.batch_size", "data.labeled_per_batch"):
        try:
            per_process(OmegaConf.select(cfg, key), world_size, key)
        except ValueError as error:
            raise ConfigError(str(error)) from error


def _write_failure(run_dir: Path, summary: dict[str, Any], history: list[dict]) -> None:
    # Best effort: a full disk must not hide the error that brought us here.
    try:
        write_run_files(run_dir, summary, history)
    except OSError as error:
        log.error("could not write the failure summary to %s: %s", run_dir, error)


def _train(cfg: DictConfig, run_dir: Path, history: TrainingHistory, report: RunReport) -> Path:
    checkpoint = resume_checkpoint(cfg)
    datamodule = prepare_data(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    split = datamodule.split
    ratio = (len(split.train) - len(split.labeled)) / max(len(split.labeled), 1)
    module = build_module(cfg, datamodule.input_dim, unlabeled_ratio=ratio)
    check_resumable(checkpoint, module, cfg.ckpt_path)

    run_dir.mkdir(parents=True, exist_ok=True)
    if rank_zero_only.rank == 0:
        write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    callbacks = [instantiate(callback) for callback in cfg.callbacks.values()]
    loggers = [instantiate(logger) for logger in (cfg.logger or {}).values()]
    config = OmegaConf.to_container(cfg, resolve=True)
    trainer: pl.Trainer = instantiate(
        cfg.trainer,
        callbacks=[NonFiniteLossGuard(), *callbacks, history, report, RunState(config)],
        logger=loggers or False,
        plugins=[AtomicCheckpointIO()],
    )
    check_world_size(cfg, trainer.world_size)
    # Ranks that Lightning's DDP launcher starts rebuild this run from `config`.
    with relaunchable(config):
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
    return run_dir / "REPORT.md"
