"""One run through the real train.py: Hydra composition, Lightning Trainer, report files."""

import csv
import json

import pytest

from ssvae.report.markdown import SECTIONS

SEED_REPORT_ROWS = (
    "Loss", "Recon Loss", "KL Z", "KL C", "Training Time Sec", "Epochs Completed", "Accuracy",
    "Classification Loss", "K", "Component Entropy", "Pi Entropy", "K Eff", "Active Components",
    "Responsibility Confidence Mean", "Component Majority Labels", "Component Majority Confidence",
    "Pi Max", "Pi Min", "Pi Argmax", "NMI", "ARI",
)  # fmt: skip

CONTRACT_KEYS = {
    "classification": {"accuracy", "accuracy_unlabeled", "accuracy_val"},
    "mixture": {
        "component_usage", "K_eff", "active_components", "component_entropy",
        "responsibility_confidence_mean", "pi_values", "pi_entropy", "pi_max", "pi_min",
        "pi_argmax", "component_majority_labels", "component_majority_confidence",
    },
    "clustering": {"nmi", "ari", "cluster_accuracy"},
}  # fmt: skip

FIGURES = (
    "loss_curves.png", "latent_by_class.png", "latent_by_component.png",
    "responsibility_confidence.png", "reconstructions.png", "mixture_evolution.png",
)  # fmt: skip


@pytest.mark.parametrize("prior", ["mixture", "standard"])
def test_train_writes_the_full_report(train_tiny, prior):
    result = train_tiny(f"prior={prior}", "name=tiny-run", "tags=[a,b]")
    assert result.returncode == 0, result.output
    run_dir = result.run_dir
    assert f"Report written to {run_dir / 'REPORT.md'}" in result.stdout

    for name in ("REPORT.md", "summary.json", "config.yaml", "history.json", "logs/metrics.csv"):
        assert (run_dir / name).is_file(), name
    for name in ("best.ckpt", "last.ckpt"):
        assert (run_dir / "checkpoints" / name).is_file(), name
    for name in FIGURES:
        assert (run_dir / "figures" / name).stat().st_size > 1000, name

    summary = result.summary()
    assert summary["status"] == "completed"
    assert summary["experiment"]["name"] == "tiny-run"
    assert summary["experiment"]["tags"] == ["a", "b"]
    assert summary["training"]["epochs_completed"] == 2
    for section, keys in CONTRACT_KEYS.items():
        assert keys <= set(summary[section]), section
    if prior == "mixture":
        assert summary["mixture"]["K"] == 10
        assert len(summary["mixture"]["pi_values"]) == 10
        assert abs(sum(summary["mixture"]["component_usage"]) - 1) < 1e-4
    else:
        assert summary["mixture"]["K_eff"] is None
        assert summary["clustering"]["clustering_source"] == "kmeans_on_mu"
    assert 0 <= summary["clustering"]["nmi"] <= 1

    report = (run_dir / "REPORT.md").read_text()
    rows = {line.split("|")[2].strip() for line in report.splitlines() if line.startswith("| ")}
    expected = set(SEED_REPORT_ROWS) if prior == "mixture" else set(SEED_REPORT_ROWS) - {"KL C"}
    assert expected <= rows
    for figure in FIGURES:
        assert f"(figures/{figure})" in report

    history = json.loads((run_dir / "history.json").read_text())
    assert [row["epoch"] for row in history] == [0, 1]
    assert {"train/loss", "val/loss", "train/recon_loss", "val/kl_z"} <= set(history[0])
    assert set(SECTIONS) == {"Training", "Classification", "Mixture", "Clustering"}


def test_metrics_log_has_every_loss_term_for_train_and_val(train_tiny):
    result = train_tiny("trainer.log_every_n_steps=2")
    assert result.returncode == 0, result.output
    with open(result.run_dir / "logs" / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    header = set(rows[0])

    # Step values every log_every_n_steps optimiser steps; one mean per epoch for each stage.
    steps = result.summary()["training"]["global_step"]
    logged_steps = [int(row["step"]) for row in rows if row["train/loss_step"]]
    assert logged_steps == list(range(1, steps, 2))
    assert [row["epoch"] for row in rows if row["train/loss_epoch"]] == ["0", "1"]
    assert [row["epoch"] for row in rows if row["val/loss"]] == ["0", "1"]
    for term in (
        "loss",
        "recon_loss",
        "kl_z",
        "kl_c",
        "dirichlet",
        "usage_entropy",
        "classification_loss",
    ):
        assert f"train/{term}_step" in header, term
        assert f"train/{term}_epoch" in header, term
        assert f"val/{term}" in header, term
