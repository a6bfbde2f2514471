"""evaluate.py: every metric of a checkpoint recomputed, and a safe, strict checkpoint loader."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from checkpoint_files import BAD_KINDS, EXPECTED_WORDS, assert_same_metrics, write_bad_checkpoint

from ssvae.checkpoints import (
    CheckpointError,
    capture_rng,
    check_compatible,
    hyperparameter_differences,
    load_checkpoint,
    restore_rng,
    resume_run_dir,
    run_config,
)

FIGURES = (
    "loss_curves.png", "latent_by_class.png", "latent_by_component.png",
    "responsibility_confidence.png", "reconstructions.png", "mixture_evolution.png",
)  # fmt: skip


def test_evaluate_reproduces_the_metrics_of_the_run(run_script, trained_run, tmp_path):
    before = sorted(path.relative_to(trained_run) for path in trained_run.rglob("*"))
    checkpoint = trained_run / "checkpoints" / "best.ckpt"
    result = run_script("evaluate.py", f"ckpt_path={checkpoint}", run_dir=tmp_path / "eval")
    assert result.returncode == 0, result.output
    assert f"Report written to {tmp_path / 'eval' / 'REPORT.md'}" in result.stdout

    run_summary = json.loads((trained_run / "summary.json").read_text())
    evaluated = result.summary()
    assert evaluated["status"] == "completed"
    assert_same_metrics(run_summary, evaluated)
    assert evaluated["training"]["epochs_completed"] == run_summary["training"]["epochs_completed"]
    assert evaluated["training"]["checkpoint_epoch"] == 0
    assert evaluated["experiment"]["evaluated_checkpoint"] == str(checkpoint.resolve())
    assert evaluated["experiment"]["config"]["num_labeled"] == 20
    for name in FIGURES:
        assert (tmp_path / "eval" / "figures" / name).stat().st_size > 1000, name
    assert "Accuracy" in (tmp_path / "eval" / "REPORT.md").read_text()
    # The trained run is only read.
    assert sorted(path.relative_to(trained_run) for path in trained_run.rglob("*")) == before


# Every kind goes through the loader below; here, two through the whole command.
@pytest.mark.parametrize("kind", ["truncated", "unsafe"])
def test_evaluate_refuses_a_bad_checkpoint(run_script, trained_run, tmp_path, kind):
    marker = tmp_path / "code-was-run"
    good = trained_run / "checkpoints" / "best.ckpt"
    checkpoint = write_bad_checkpoint(kind, tmp_path / "bad" / "model.ckpt", good, marker)
    result = run_script("evaluate.py", f"ckpt_path={checkpoint}", run_dir=tmp_path / "eval")
    assert result.returncode == 2, result.output
    error_lines = [line for line in result.output.splitlines() if "cannot evaluate" in line]
    assert len(error_lines) == 1, result.output
    assert f"ckpt_path: {checkpoint}" in error_lines[0]
    assert EXPECTED_WORDS[kind] in error_lines[0]
    assert "Traceback" not in result.output
    assert not marker.exists()
    assert not (tmp_path / "eval" / "summary.json").exists()


def test_evaluate_requires_a_checkpoint(run_script, tmp_path):
    result = run_script("evaluate.py", run_dir=tmp_path / "eval")
    assert result.returncode == 2, result.output
    assert "ckpt_path: required" in result.output


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_loader_raises_a_clear_error(trained_run, tmp_path, kind):
    marker = tmp_path / "code-was-run"
    good = trained_run / "checkpoints" / "last.ckpt"
    checkpoint = write_bad_checkpoint(kind, tmp_path / "last.ckpt", good, marker)
    with pytest.raises(CheckpointError, match=EXPECTED_WORDS[kind]) as error:
        load_checkpoint(checkpoint)
    assert str(error.value).startswith(str(checkpoint))
    assert not marker.exists()


def test_loader_reads_a_training_checkpoint_with_its_run_config(trained_run):
    checkpoint = load_checkpoint(trained_run / "checkpoints" / "last.ckpt")
    assert checkpoint["epoch"] == 0
    config = checkpoint["callbacks"]["RunState"]["config"]
    assert config["num_samples"] == 300
    assert config["paths"]["output_dir"] == str(trained_run)


def test_run_config_falls_back_to_the_run_directory(trained_run, tmp_path):
    checkpoint = torch.load(trained_run / "checkpoints" / "last.ckpt", weights_only=True)
    del checkpoint["callbacks"]["RunState"]
    run_dir = tmp_path / "older-run"
    (run_dir / "checkpoints").mkdir(parents=True)
    path = run_dir / "checkpoints" / "last.ckpt"
    with pytest.raises(CheckpointError, match="holds no run configuration"):
        run_config(checkpoint, path)
    shutil.copy(trained_run / "config.yaml", run_dir / "config.yaml")
    assert run_config(checkpoint, path)["num_samples"] == 300


def test_resume_directory_is_the_checkpoint_run_directory(trained_run, tmp_path):
    last = trained_run / "checkpoints" / "last.ckpt"
    assert resume_run_dir(str(last), "fresh") == str(trained_run)
    assert resume_run_dir(None, "fresh") == "fresh"
    assert resume_run_dir(str(tmp_path / "missing.ckpt"), "fresh") == "fresh"
    elsewhere = tmp_path / "last.ckpt"
    shutil.copy(last, elsewhere)
    assert resume_run_dir(str(elsewhere), "fresh") == "fresh"


def test_random_state_round_trips_through_a_safe_load(tmp_path):
    torch.manual_seed(3)
    np.random.seed(3)
    state = capture_rng()
    expected = (torch.rand(4), np.random.rand(4))
    torch.save(state, tmp_path / "rng.pt")
    restore_rng(torch.load(tmp_path / "rng.pt", weights_only=True))
    torch.testing.assert_close(torch.rand(4), expected[0])
    np.testing.assert_array_equal(np.random.rand(4), expected[1])


def test_hyperparameter_differences_are_listed_by_dotted_key():
    saved = {"input_dim": 784, "model": {"hidden_dims": [32, 16], "latent_dim": 2}}
    current = {"input_dim": 784, "model": {"hidden_dims": [16], "latent_dim": 2}}
    assert hyperparameter_differences(saved, current) == {"model.hidden_dims": ([32, 16], [16])}


def test_resume_refuses_another_architecture_but_accepts_newer_options(caplog):
    checkpoint = {"hyper_parameters": {"input_dim": 784, "model": {"latent_dim": 2}}}
    newer = {"input_dim": 784, "model": {"latent_dim": 2, "added_option": "x"}}
    check_compatible(checkpoint, newer, "last.ckpt")
    assert "model.added_option='x'" in caplog.text
    with pytest.raises(CheckpointError, match=r"model.latent_dim=2, this run has 3"):
        check_compatible(checkpoint, {"input_dim": 784, "model": {"latent_dim": 3}}, "last.ckpt")
