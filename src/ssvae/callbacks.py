"""Lightning callbacks that record the run's history and write its report."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_only

from ssvae.baselines import BaselineOptions, run_baselines
from ssvae.evaluation import (
    classification_summary,
    evaluate_test_split,
    predict,
    structure_summary,
)
from ssvae.io import write_json, write_text
from ssvae.report import figures
from ssvae.report.markdown import render_report

log = logging.getLogger(__name__)


def last_checkpoint(trainer: pl.Trainer | None) -> str | None:
    """The end-of-epoch checkpoint a resumed run starts from, if one was written."""
    checkpoint = None if trainer is None else trainer.checkpoint_callback
    path = getattr(checkpoint, "last_model_path", "") or ""
    return path if path and Path(path).is_file() else None


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


def training_section(
    history: TrainingHistory,
    best_val_loss: float | torch.Tensor | None,
    stopped_early: bool,
    global_step: int,
) -> dict[str, Any]:
    """The ``training`` section of summary.json: last epoch's train losses and bookkeeping."""
    last = history.rows[-1] if history.rows else {}
    val_losses = [row.get("val/loss") for row in history.rows]
    return {
        "loss": last.get("train/loss"),
        "recon_loss": last.get("train/recon_loss"),
        "kl_z": last.get("train/kl_z"),
        "kl_c": last.get("train/kl_c"),
        # Contributions to the loss (weight x term): what the seed report's KL rows show.
        "kl_z_weighted": last.get("train/kl_z_weighted"),
        "kl_c_weighted": last.get("train/kl_c_weighted"),
        "classification_loss": last.get("train/classification_loss"),
        "training_time_sec": history.wall_time_sec,
        "epochs_completed": len(history.rows),
        "best_epoch": val_losses.index(min(val_losses))
        if val_losses and None not in val_losses
        else None,
        "best_val_loss": None if best_val_loss is None else float(best_val_loss),
        "stopped_early": stopped_early,
        "global_step": global_step,
    }


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
        accuracy_source: str = "classifier_head",
        baselines: BaselineOptions | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.experiment = experiment
        self.history = history
        self.num_reconstructions = num_reconstructions
        self.accuracy_source = accuracy_source
        self.baselines = baselines or BaselineOptions(enabled=False)
        self.summary: dict[str, Any] | None = None
        self._predictions = None
        self._trainer: pl.Trainer | None = None
        self._module: pl.LightningModule | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # Kept for write_interrupted, which runs after Lightning has let go of the fit.
        self._trainer, self._module = trainer, pl_module

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Under DDP, rank zero evaluates the whole pool on its own, so every metric covers
        # the full dataset and the files are written once; the other ranks wait for it.
        if trainer.is_global_zero:
            self._restore_best(trainer, pl_module)
            self.summary = self.evaluate(trainer, pl_module)
            self.write(self.summary, trainer, pl_module)
        trainer.strategy.barrier("run_report")

    @property
    def last_checkpoint(self) -> str | None:
        """Path of the newest end-of-epoch checkpoint of this fit, or None."""
        return last_checkpoint(self._trainer)

    def write_interrupted(self, signal_name: str | None) -> None:
        """Report of a run stopped by a signal, from its last completed epoch.

        What is known is written at once, so a SIGKILL during the evaluation still leaves
        an "interrupted" summary. Then, given a completed epoch, the metrics of the best
        weights among the completed epochs are added, as for a completed run.
        ``interruption.resume_from`` names the checkpoint to resume from.
        """
        trainer, module = self._trainer, self._module
        interruption = {"signal": signal_name, "resume_from": self.last_checkpoint}
        self.summary = {
            "status": "interrupted",
            **self._partial_summary(trainer),
            "interruption": interruption,
        }
        write_run_files(self.run_dir, self.summary, self.history.rows)
        if trainer is None or not self.history.rows:
            return
        try:
            self._restore_best(trainer, module)
            summary = self.evaluate(trainer, module)
        except Exception:
            log.exception("could not evaluate the interrupted run; its summary has no metrics")
            return
        self.summary = {**summary, "status": "interrupted", "interruption": interruption}
        self.write(self.summary, trainer, module)

    def _partial_summary(self, trainer: pl.Trainer | None) -> dict[str, Any]:
        training = (
            self._training_section(trainer)
            if trainer is not None
            else {"epochs_completed": len(self.history.rows)}
        )
        return {
            "experiment": self.experiment,
            "training": training,
            "classification": {},
            "mixture": {},
            "clustering": {},
        }

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
        return self.summarise(pl_module, trainer.datamodule, self._training_section(trainer))

    def summarise(
        self, pl_module: pl.LightningModule, datamodule: Any, training: dict[str, Any]
    ) -> dict[str, Any]:
        """The completed summary: ``training`` as given, every other metric evaluated now."""
        split, labels = datamodule.split, datamodule.evaluation_labels
        predictions = predict(pl_module.model, datamodule.images, labels)
        labeled, val = torch.as_tensor(split.labeled), torch.as_tensor(split.val)
        classification = classification_summary(
            predictions, labels, labeled, val, datamodule.num_classes, self.accuracy_source
        )
        mixture, clustering = structure_summary(
            predictions, labels, pl_module.pi(), datamodule.num_classes
        )
        if mixture.get("component_majority_labels") is not None:
            names = datamodule.class_names
            mixture["component_majority_classes"] = [
                names[label] for label in mixture["component_majority_labels"]
            ]
        if getattr(datamodule, "test_labels", None) is not None:
            test_classification, test_clustering = self._test_split(
                pl_module, datamodule, predictions, labeled
            )
            classification.update(test_classification)
            clustering.update(test_clustering)
        self._predictions = predictions
        return {
            "status": "completed",
            "experiment": self.experiment,
            "training": training,
            "classification": classification,
            "mixture": mixture,
            "clustering": clustering,
            "baselines": self._baselines(datamodule),
        }

    def _test_split(
        self, pl_module: pl.LightningModule, datamodule: Any, predictions, labeled: torch.Tensor
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """``accuracy_test`` and the ``*_test`` clustering scores on the dataset's test split."""
        test_predictions = predict(pl_module.model, datamodule.test_images, datamodule.test_labels)
        return evaluate_test_split(
            predictions,
            test_predictions,
            datamodule.evaluation_labels,
            labeled,
            datamodule.test_labels,
            datamodule.num_classes,
            self.accuracy_source,
        )

    def _baselines(self, datamodule: Any) -> dict[str, Any]:
        """scikit-learn references on the same split and samples; {} when disabled."""
        if not self.baselines.enabled:
            return {}
        data = getattr(datamodule, "data", None)
        test_images = getattr(data, "test_images", None)
        test = None if test_images is None else (test_images, data.test_labels)
        return run_baselines(
            datamodule.images.numpy(),
            datamodule.evaluation_labels.numpy(),
            np.asarray(datamodule.split.labeled),
            np.asarray(datamodule.split.val),
            self.baselines,
            seed=int(self.experiment.get("seed", 0)),
            test=test,
        )

    def _training_section(self, trainer: pl.Trainer) -> dict[str, Any]:
        stopper = trainer.early_stopping_callback
        return training_section(
            self.history,
            best_val_loss=getattr(trainer.checkpoint_callback, "best_model_score", None),
            stopped_early=bool(stopper is not None and stopper.stopped_epoch > 0),
            global_step=trainer.global_step,
        )

    @rank_zero_only
    def write(
        self,
        summary: dict[str, Any],
        trainer: pl.Trainer | None,
        pl_module: pl.LightningModule | None,
        datamodule: Any = None,
    ) -> None:
        """Figures (when evaluated), summary.json, history.json and REPORT.md.

        ``datamodule`` defaults to the trainer's; pass it when there is no trainer.
        """
        evaluated = self._predictions is not None and summary["status"] != "failed"
        if datamodule is None and trainer is not None:
            datamodule = trainer.datamodule
        figure_names = self._write_figures(datamodule, pl_module) if evaluated else []
        write_run_files(self.run_dir, summary, self.history.rows, figure_names)

    def _write_figures(self, datamodule: Any, pl_module: pl.LightningModule) -> list[str]:
        directory = self.run_dir / "figures"
        directory.mkdir(parents=True, exist_ok=True)
        predictions = self._predictions
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
        return figures.reconstructions(
            originals.numpy(),
            probabilities.cpu().numpy(),
            image_side=datamodule.image_shape[0],
        )
