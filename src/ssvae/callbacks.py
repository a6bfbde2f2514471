"""Lightning callbacks that record the run's history and write its report."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_only

from ssvae.evaluation import classification_summary, predict, structure_summary
from ssvae.io import write_json, write_text
from ssvae.report import figures
from ssvae.report.markdown import render_report

log = logging.getLogger(__name__)


@rank_zero_only
def write_run_files(
    run_dir: Path, summary: dict[str, Any], history: list[dict], figure_names: list[str] = ()
) -> Path:
    """Write summary.json, history.json and REPORT.md (each atomically); returns REPORT.md."""
    write_json(run_dir / "summary.json", summary)
    write_json(run_dir / "history.json", history)
    report = write_text(run_dir / "REPORT.md", render_report(summary, list(figure_names)))
    log.info("report written to %s", report)
    return report


class TrainingHistory(pl.Callback):
    """Per-epoch loss terms (train and val), mixture weights pi and validation usage.

    The history is part of the checkpoint, so a resumed run's curves cover the whole run.
    """

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.wall_time_sec = 0.0
        self._epoch_started = 0.0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_started = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.wall_time_sec += time.perf_counter() - self._epoch_started
        row: dict[str, Any] = {"epoch": trainer.current_epoch}
        for key, value in trainer.callback_metrics.items():
            if key.startswith("val/") or (key.startswith("train/") and key.endswith("_epoch")):
                row[key.removesuffix("_epoch")] = float(value)
        pi = pl_module.pi()
        row["pi"] = None if pi is None else pi.tolist()
        usage = getattr(pl_module, "val_usage", None)
        row["usage"] = None if usage is None else usage.tolist()
        self.rows.append(row)

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "wall_time_sec": self.wall_time_sec}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = list(state_dict["rows"])
        self.wall_time_sec = float(state_dict["wall_time_sec"])


class RunReport(pl.Callback):
    """After training: restore the best weights, evaluate once, write the report (rank zero).

    Args:
        run_dir: The run's output directory.
        experiment: ``name``, ``description``, ``tags``, ``seed``, ``config`` and the like,
            copied into ``summary.json`` and the report header.
        history: The run's :class:`TrainingHistory`.
        num_reconstructions: Images shown in the reconstructions figure.
    """

    def __init__(
        self,
        run_dir: str | Path,
        experiment: dict[str, Any],
        history: TrainingHistory,
        num_reconstructions: int = 10,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.experiment = experiment
        self.history = history
        self.num_reconstructions = num_reconstructions
        self.summary: dict[str, Any] | None = None

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore_best(trainer, pl_module)
        self.summary = self.evaluate(trainer, pl_module)
        self.write(self.summary, trainer, pl_module)

    def _restore_best(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        checkpoint = trainer.checkpoint_callback
        best_path = getattr(checkpoint, "best_model_path", "")
        if not best_path:
            log.warning("no best checkpoint recorded; evaluating the final weights")
            return
        state = torch.load(best_path, map_location=pl_module.device, weights_only=True)
        pl_module.load_state_dict(state["state_dict"])
        log.info("restored best weights from %s (epoch %s)", best_path, state.get("epoch"))

    def evaluate(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        """Every metric of the run from one evaluation pass over the whole pool."""
        datamodule = trainer.datamodule
        split, labels = datamodule.split, datamodule.evaluation_labels
        predictions = predict(pl_module.model, datamodule.images, labels)
        labeled, val = torch.as_tensor(split.labeled), torch.as_tensor(split.val)
        classification = classification_summary(
            predictions, labels, labeled, val, datamodule.num_classes
        )
        mixture, clustering = structure_summary(
            predictions, labels, pl_module.pi(), datamodule.num_classes
        )
        self._predictions = predictions
        return {
            "status": "completed",
            "experiment": self.experiment,
            "training": self._training_section(trainer),
            "classification": classification,
            "mixture": mixture,
            "clustering": clustering,
        }

    def _training_section(self, trainer: pl.Trainer) -> dict[str, Any]:
        last = self.history.rows[-1] if self.history.rows else {}
        checkpoint = trainer.checkpoint_callback
        best_score = getattr(checkpoint, "best_model_score", None)
        val_losses = [row.get("val/loss") for row in self.history.rows]
        stopper = trainer.early_stopping_callback
        return {
            "loss": last.get("train/loss"),
            "recon_loss": last.get("train/recon_loss"),
            "kl_z": last.get("train/kl_z"),
            "kl_c": last.get("train/kl_c"),
            "classification_loss": last.get("train/classification_loss"),
            "training_time_sec": self.history.wall_time_sec,
            "epochs_completed": len(self.history.rows),
            "best_epoch": val_losses.index(min(val_losses))
            if val_losses and None not in val_losses
            else None,
            "best_val_loss": None if best_score is None else float(best_score),
            "stopped_early": bool(stopper is not None and stopper.stopped_epoch > 0),
            "global_step": trainer.global_step,
        }

    @rank_zero_only
    def write(
        self, summary: dict[str, Any], trainer: pl.Trainer, pl_module: pl.LightningModule
    ) -> None:
        figure_names = (
            self._write_figures(trainer, pl_module) if summary["status"] == "completed" else []
        )
        write_run_files(self.run_dir, summary, self.history.rows, figure_names)

    def _write_figures(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> list[str]:
        directory = self.run_dir / "figures"
        directory.mkdir(parents=True, exist_ok=True)
        datamodule, predictions = trainer.datamodule, self._predictions
        labels = datamodule.evaluation_labels.numpy()
        mu = predictions.mu.numpy()
        if predictions.responsibilities is not None:
            components = predictions.responsibilities.argmax(1).numpy()
            confidence = predictions.responsibilities.max(1).values.numpy()
        else:
            components = predictions.predicted_classes.numpy()
            confidence = predictions.class_probabilities.max(1).values.numpy()
        drawn = {
            "loss_curves.png": figures.loss_curves(self.history.rows),
            "latent_by_class.png": figures.latent_scatter(
                mu, labels, "Latent means by class", datamodule.class_names
            ),
            "latent_by_component.png": figures.latent_scatter(
                mu,
                components,
                "Latent means by component"
                if predictions.responsibilities is not None
                else "Latent means by predicted class (standard prior)",
            ),
            "responsibility_confidence.png": figures.confidence_histogram(confidence),
            "reconstructions.png": self._reconstruction_figure(datamodule, pl_module),
            "mixture_evolution.png": figures.mixture_evolution(self.history.rows),
        }
        for name, figure in drawn.items():
            figures.save(figure, directory / name)
        return list(drawn)

    @torch.no_grad()
    def _reconstruction_figure(self, datamodule, pl_module: pl.LightningModule):
        originals = datamodule.images[: self.num_reconstructions]
        pl_module.eval()
        output = pl_module.model(originals.to(pl_module.device))
        probabilities = torch.sigmoid(output.recon_logits)
        if output.component_logits is not None:
            # Mixture mean: sum_c q(c|x) * sigmoid(logits_c).
            weights = torch.softmax(output.component_logits, -1).unsqueeze(-1)  # (B, K, 1)
            probabilities = (weights * probabilities).sum(1)
        return figures.reconstructions(originals.numpy(), probabilities.cpu().numpy())
