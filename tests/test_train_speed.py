"""The cheap logging path reports the same numbers, and the speed benchmark runs end to end."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from ssvae.data.datamodule import EpochBatches, TensorBatches
from ssvae.losses import UNLABELED, objective
from ssvae.module import SemiSupervisedVAE

ROOT = Path(__file__).resolve().parents[1]
BENCHMARK = ROOT / "benchmarks" / "train_speed.py"
NUM_CLASSES = 3
BATCH_SIZE = 16


def loaders(num_train: int = 160, num_val: int = 40) -> tuple[DataLoader, DataLoader]:
    """Random 4x4 images (a fifth labelled) served by the real index-batch path."""
    generator = torch.Generator().manual_seed(0)
    num_samples = num_train + num_val
    images = torch.rand(num_samples, 16, generator=generator)
    targets = torch.randint(NUM_CLASSES, (num_samples,), generator=generator)
    targets[torch.arange(num_samples) % 5 != 0] = UNLABELED
    dataset = TensorBatches(images, targets)
    train, val = np.arange(num_train), np.arange(num_train, num_samples)
    return tuple(
        DataLoader(
            dataset,
            batch_sampler=EpochBatches(positions, BATCH_SIZE, shuffle=shuffle, seed=0),
            collate_fn=lambda batch: batch,
        )
        for positions, shuffle in ((train, True), (val, False))
    )


def tiny_module() -> SemiSupervisedVAE:
    torch.manual_seed(0)
    return SemiSupervisedVAE(
        input_dim=16,
        num_classes=NUM_CLASSES,
        model={"latent_dim": 2, "hidden_dims": [8], "num_components": NUM_CLASSES},
        loss={"kl_weight": 0.5, "kl_c_weight": 0.001, "usage_weight": -0.05},
        optimizer={"lr": 1e-3, "weight_decay": 0.0},
    )


def tiny_trainer(callbacks: list[pl.Callback], **options) -> pl.Trainer:
    options = {"max_epochs": 2, **options}
    return pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=callbacks,
        **options,
    )


class StepRecorder(pl.Callback):
    """Keeps every training step's terms, and compares the epoch means that a callback sees."""

    def __init__(self) -> None:
        self.steps: list[tuple[int, dict[str, torch.Tensor]]] = []
        self.epoch_means: list[dict[str, tuple[float, float]]] = []

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.steps = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.steps.append((len(batch[0]), outputs["terms"]))

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Runs where TrainingHistory reads the epoch values: they must be this epoch's.
        total = sum(size for size, _ in self.steps)
        means = {}
        for name in self.steps[0][1]:
            expected = sum(size * float(terms[name]) for size, terms in self.steps) / total
            means[name] = (float(trainer.callback_metrics[f"train/{name}_epoch"]), expected)
        self.epoch_means.append(means)


def test_epoch_means_are_the_sample_weighted_means_of_the_steps():
    train, val = loaders()
    recorder = StepRecorder()
    module = tiny_module()
    trainer = tiny_trainer([recorder])
    trainer.fit(module, train, val)

    assert len(recorder.epoch_means) == 2
    for means in recorder.epoch_means:
        assert {"loss", "recon_loss", "kl_z", "kl_c", "usage_entropy"} <= set(means)
        for name, (logged, expected) in means.items():
            assert logged == pytest.approx(expected, rel=1e-5), name

    module.eval()
    with torch.no_grad():
        sums, count = {}, 0
        for images, targets in val:
            output = module.model(images)
            terms = objective(
                images,
                targets,
                recon_logits=output.recon_logits,
                mu=output.mu,
                logvar=output.logvar,
                class_logits=output.class_logits,
                weights=module.loss_weights,
                epoch=trainer.current_epoch,
                component_logits=output.component_logits,
                log_pi=module.model.log_pi(),
            )
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + float(value) * len(images)
            count += len(images)
    validated = trainer.validate(module, val, verbose=False)[0]
    for name, total in sums.items():
        assert validated[f"val/{name}"] == pytest.approx(total / count, rel=1e-5), name


def test_log_calls_per_epoch_do_not_grow_with_the_number_of_steps():
    train, val = loaders(num_train=50 * BATCH_SIZE)
    module = tiny_module()
    calls = []
    original = module.log

    def counting_log(name, *args, **kwargs):
        calls.append(name)
        return original(name, *args, **kwargs)

    module.log = counting_log
    tiny_trainer([], log_every_n_steps=20, max_epochs=1).fit(module, train, val)

    epoch_means = [name for name in calls if name.endswith("_epoch")]
    num_terms = len(epoch_means)
    assert num_terms >= 5
    # Step values at steps 20 and 40 of 50, then one train and one validation mean per term.
    assert len([name for name in calls if name.endswith("_step")]) == 2 * num_terms
    assert len([name for name in calls if name.startswith("val/")]) == num_terms
    assert len(calls) == 4 * num_terms


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--device", "cuda"], "--device cuda, but CUDA is not available"),
        (["num_samples=0", "--no-scaling"], "invalid configuration: num_samples=0"),
    ],
)
def test_benchmark_rejects_bad_input_in_one_line(arguments, message, tmp_path: Path):
    if "cuda" in arguments and torch.cuda.is_available():
        pytest.skip("checks the message when CUDA is absent")
    output = tmp_path / "speed.json"
    result = subprocess.run(
        [sys.executable, str(BENCHMARK), *arguments, f"--json={output}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not output.exists()


@pytest.mark.slow
def test_benchmark_writes_every_figure(tmp_path: Path, data_cache: Path):
    output = tmp_path / "speed.json"
    command = [
        sys.executable,
        str(BENCHMARK),
        "--warmup=1",
        "--epochs=1",
        "--repeats=1",
        "--scaling-epochs=1",
        "--scaling-components=10,12",
        "--scaling-samples=300,6000",  # beyond the 5000 images of mnist5k: tiled
        f"--json={output}",
        "num_samples=300",
        "num_labeled=20",
        "model.hidden_dims=[16]",
        "data.batch_size=256",
        "baselines.enabled=false",
        "trainer.enable_progress_bar=false",
    ]
    environment = {**os.environ, "SSVAE_CACHE_DIR": str(data_cache)}
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, env=environment)
    assert result.returncode == 0, result.stdout + result.stderr

    figures = json.loads(output.read_text())
    for key in ("lightning_s_per_epoch", "raw_s_per_epoch", "peak_rss_mb", "samples_per_s"):
        assert figures[key] > 0, key
    ratio = figures["lightning_s_per_epoch"] / figures["raw_s_per_epoch"]
    assert figures["overhead_ratio"] == pytest.approx(ratio)
    settings = [(row["num_components"], row["num_samples"]) for row in figures["scaling"]]
    assert settings == [(10, 300), (12, 300), (10, 6000)]
    large = figures["scaling"][2]
    assert large["train_samples"] > 5000
    assert large["size_ratio"] == 20
    assert math.isfinite(large["time_ratio"]) and math.isfinite(large["cpu_time_ratio"])
    assert "| 10 | 6000 |" in result.stdout
