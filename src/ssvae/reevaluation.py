"""Evaluating a trained checkpoint again: every metric and a fresh report, in one process.

The checkpoint carries the resolved configuration of the run that wrote it, so
the same data, split and model are rebuilt from the file alone; the weights are
evaluated as stored (``best.ckpt`` reproduces the run's own report).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from ssvae.callbacks import TrainingHistory, training_section
from ssvae.checkpoints import CheckpointError, callback_state, load_checkpoint, run_config
from ssvae.config import ConfigError
from ssvae.module import SemiSupervisedVAE
from ssvae.pipeline import build_report, experiment_info, prepare_data

log = logging.getLogger(__name__)


def _checkpoint_path(cfg: DictConfig) -> str:
    path = OmegaConf.select(cfg, "ckpt_path", throw_on_missing=False)
    if not path:
        raise ConfigError(
            "ckpt_path: required, e.g. ckpt_path=outputs/runs/<run>/checkpoints/best.ckpt"
        )
    return str(path)


def restore_module(checkpoint: dict[str, Any], path: str) -> SemiSupervisedVAE:
    """The LightningModule the checkpoint was trained as, holding its weights.

    Raises:
        CheckpointError: The stored hyperparameters or weights do not fit the model.
    """
    try:
        module = SemiSupervisedVAE(**checkpoint.get("hyper_parameters", {}))
        module.load_state_dict(checkpoint["state_dict"])
    except (TypeError, KeyError, RuntimeError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise CheckpointError(
            f"{path}: its weights do not fit this version of the model "
            f"({type(error).__name__}: {first_line})"
        ) from error
    return module.eval()


def checkpoint_training(checkpoint: dict[str, Any], history: TrainingHistory) -> dict[str, Any]:
    """The ``training`` section of summary.json, from what the checkpoint recorded."""
    best = callback_state(checkpoint, "ModelCheckpoint") or {}
    stopper = callback_state(checkpoint, "EarlyStopping") or {}
    section = training_section(
        history,
        best_val_loss=best.get("best_model_score"),
        stopped_early=bool(stopper.get("stopped_epoch", 0) > 0),
        global_step=int(checkpoint["global_step"]),
    )
    return {**section, "checkpoint_epoch": int(checkpoint["epoch"])}


def evaluate_checkpoint(cfg: DictConfig) -> Path:
    """Recompute every metric of ``cfg.ckpt_path`` and write a report to ``paths.output_dir``.

    Returns:
        The path of the new REPORT.md.

    Raises:
        ConfigError: ``ckpt_path`` is missing, unreadable, unsafe or not a checkpoint of
            this package; nothing is written then.
    """
    path = _checkpoint_path(cfg)
    try:
        checkpoint = load_checkpoint(path)
        run_cfg = OmegaConf.create(run_config(checkpoint, path))
        module = restore_module(checkpoint, path)
    except CheckpointError as error:
        raise ConfigError(f"ckpt_path: {error}") from error
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    datamodule = prepare_data(run_cfg)

    history = TrainingHistory()
    state = callback_state(checkpoint, TrainingHistory.__qualname__)
    if state is not None:
        history.load_state_dict(state)
    out_dir = Path(cfg.paths.output_dir)
    experiment = {
        **experiment_info(run_cfg),
        "run_dir": str(out_dir),
        "trained_in": str(run_cfg.paths.output_dir),
        "evaluated_checkpoint": str(Path(path).resolve()),
    }
    report = build_report(run_cfg, out_dir, experiment, history)
    summary = report.summarise(module, datamodule, checkpoint_training(checkpoint, history))
    report.write(summary, None, module, datamodule=datamodule)
    log.info("evaluated %s (epoch %d)", path, checkpoint["epoch"])
    return out_dir / "REPORT.md"
