"""Resuming through train.py: an interrupted run continues where it stopped, or fails clearly."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from checkpoint_files import EXPECTED_WORDS, assert_same_metrics, write_bad_checkpoint
from conftest import ROOT, TINY

#: Deterministic on CPU: one thread, deterministic kernels; no scikit-learn baselines.
DETERMINISTIC = (
    "threads=1",
    "trainer.deterministic=true",
    "trainer.max_epochs=4",
    "baselines.enabled=false",
)
CRASH_IN_THIRD_EPOCH = (
    "+callbacks.crash._target_=tests.support.crash_callback.CrashInEpoch",
    "+callbacks.crash.epoch=2",
)
RUN_FILES = ("summary.json", "history.json", "REPORT.md", "config.yaml")


def train_from(directory: Path, data_cache: Path, *overrides: str) -> subprocess.CompletedProcess:
    """``train.py`` run from ``directory`` with no hydra.run.dir: the default layout."""
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *TINY, *overrides],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "SSVAE_CACHE_DIR": str(data_cache)},
    )


def callback_states(path: Path) -> dict[str, dict]:
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    return {key.split("{")[0]: state for key, state in checkpoint["callbacks"].items()}


def assert_same_optimizer_state(first: Path, second: Path) -> None:
    states = [
        torch.load(p, weights_only=True)["optimizer_states"][0]["state"] for p in (first, second)
    ]
    assert states[0].keys() == states[1].keys()
    for index, moments in states[0].items():
        for name, value in moments.items():
            torch.testing.assert_close(states[1][index][name], value, msg=f"{index}.{name}")


@pytest.mark.slow
def test_resumed_run_matches_an_uninterrupted_run(train_tiny, data_cache, tmp_path):
    full = train_tiny(*DETERMINISTIC, name="full")
    assert full.returncode == 0, full.output
    crashed = train_tiny(*DETERMINISTIC, *CRASH_IN_THIRD_EPOCH, name="crashed")
    assert crashed.returncode == 1, crashed.output
    assert crashed.summary()["status"] == "failed"
    assert crashed.summary()["training"]["epochs_completed"] == 2

    # The same overrides plus ckpt_path, and no hydra.run.dir: training continues in the
    # crashed run's own directory, so none appears under this working directory.
    workdir = tmp_path / "work"
    workdir.mkdir()
    last = crashed.run_dir / "checkpoints" / "last.ckpt"
    resumed = train_from(workdir, data_cache, *DETERMINISTIC, f"ckpt_path={last}")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert list(workdir.iterdir()) == []
    assert f"Report written to {crashed.run_dir / 'REPORT.md'}" in resumed.stdout
    # Hydra's record of the original start is kept; the resumed part gets its own.
    assert "ckpt_path" not in (crashed.run_dir / ".hydra" / "overrides.yaml").read_text()
    (record,) = (crashed.run_dir / ".hydra").glob("resumed_*/overrides.yaml")
    assert "ckpt_path" in record.read_text()

    expected, summary = full.summary(), crashed.summary()
    assert summary["status"] == "completed"
    assert summary["training"]["epochs_completed"] == 4
    assert_same_metrics(expected, summary)
    for key in ("loss", "recon_loss", "kl_z", "best_epoch", "best_val_loss", "global_step"):
        assert summary["training"][key] == pytest.approx(expected["training"][key], rel=1e-6)

    # History covers the whole run: loss curves and mixture evolution of all four epochs.
    history = json.loads((crashed.run_dir / "history.json").read_text())
    reference = json.loads((full.run_dir / "history.json").read_text())
    assert [row["epoch"] for row in history] == [0, 1, 2, 3]
    for row, reference_row in zip(history, reference):
        assert row["val/loss"] == pytest.approx(reference_row["val/loss"], rel=1e-6)
        assert row["pi"] == pytest.approx(reference_row["pi"], rel=1e-6)
    assert (crashed.run_dir / "figures" / "mixture_evolution.png").is_file()

    # Optimiser, early-stopping and best-checkpoint state carried over the interruption.
    full_last = full.run_dir / "checkpoints" / "last.ckpt"
    assert_same_optimizer_state(full_last, last)
    states, reference_states = callback_states(last), callback_states(full_last)
    for key in ("wait_count", "best_score", "stopped_epoch"):
        assert states["EarlyStopping"][key] == pytest.approx(
            reference_states["EarlyStopping"][key]
        )
    assert states["ModelCheckpoint"]["best_model_score"] == pytest.approx(
        reference_states["ModelCheckpoint"]["best_model_score"]
    )


def copy_of(run_dir: Path, destination: Path) -> Path:
    shutil.copytree(run_dir, destination)
    return destination


@pytest.mark.parametrize("kind", ["missing", "corrupt", "truncated"])
def test_bad_checkpoint_is_an_error_not_a_fresh_start(trained_run, data_cache, tmp_path, kind):
    run_dir = copy_of(trained_run, tmp_path / "run")
    marker = tmp_path / "code-was-run"
    good = trained_run / "checkpoints" / "last.ckpt"
    checkpoint = write_bad_checkpoint(kind, run_dir / "checkpoints" / "last.ckpt", good, marker)
    before = {name: (run_dir / name).read_bytes() for name in RUN_FILES}
    workdir = tmp_path / "work"
    workdir.mkdir()

    result = train_from(workdir, data_cache, f"ckpt_path={checkpoint}")
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    error_lines = [line for line in output.splitlines() if "invalid configuration" in line]
    assert len(error_lines) == 1, output
    assert f"ckpt_path: {checkpoint}" in error_lines[0]
    assert EXPECTED_WORDS[kind] in error_lines[0]
    assert "Epoch 0" not in output and "Traceback" not in output
    assert not marker.exists()
    # Nothing already written is lost, and no run was started anywhere.
    assert {name: (run_dir / name).read_bytes() for name in RUN_FILES} == before
    assert not list(workdir.rglob("*.ckpt"))
    assert not list(workdir.rglob("summary.json"))


def test_checkpoint_of_another_architecture_is_refused(trained_run, data_cache, tmp_path):
    run_dir = copy_of(trained_run, tmp_path / "run")
    before = {name: (run_dir / name).read_bytes() for name in RUN_FILES}
    result = train_from(
        tmp_path,
        data_cache,
        "model.hidden_dims=[16,8]",
        f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}",
    )
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "model.hidden_dims=[32, 16], this run has [16, 8]" in output
    assert {name: (run_dir / name).read_bytes() for name in RUN_FILES} == before
