"""Data-parallel training: sharding, trainer configs, and 2-process runs through train.py."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from checkpoint_files import assert_same_metrics
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from ssvae.data.datamodule import EpochBatches
from ssvae.distributed import (
    WORKER_CONFIG_ENV,
    per_process,
    relaunchable,
    relaunched_config,
)

ROOT = Path(__file__).resolve().parents[1]
TINY = (
    "num_samples=300",
    "num_labeled=20",
    "data.batch_size=64",
    "model.hidden_dims=[32,16]",
    "trainer.enable_progress_bar=false",
    "report.num_reconstructions=4",
    "baselines.enabled=false",
)


def run_in(
    directory: Path, data_cache: Path, script: str, *args: str
) -> subprocess.CompletedProcess:
    """Run a root-level script from ``directory``, so anything it creates lands there."""
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "SSVAE_CACHE_DIR": str(data_cache)},
    )


@pytest.mark.parametrize("world_size", [2, 3])
@pytest.mark.parametrize("epoch", [0, 3])
def test_ranks_split_each_global_batch_of_one_process(world_size, epoch):
    positions = np.arange(100, 200)  # 100 samples: 3 ranks need 2 padding samples
    batch_size = 12
    single = EpochBatches(positions, batch_size, shuffle=True, seed=5)
    single.set_epoch(epoch)
    expected = list(single)
    ranks = []
    for rank in range(world_size):
        sampler = EpochBatches(
            positions,
            batch_size // world_size,
            shuffle=True,
            seed=5,
            rank=rank,
            world_size=world_size,
        )
        sampler.set_epoch(epoch)
        ranks.append(list(sampler))
        assert len(ranks[-1]) == len(sampler) == len(expected)

    padding = (-len(positions)) % world_size
    for step, batch in enumerate(expected):
        together = Counter(index for shard in ranks for index in shard[step])
        extra = together - Counter(batch)
        assert not Counter(batch) - together, f"step {step} dropped samples"
        # Only the last step may carry padding, which repeats samples of the epoch's head.
        assert sum(extra.values()) == (padding if step == len(expected) - 1 else 0)
        assert set(extra) <= set(expected[0] + expected[1])
    seen = Counter(index for shard in ranks for batch in shard for index in batch)
    assert set(seen) == set(positions.tolist())
    assert sum(seen.values()) == len(positions) + padding


def test_labelled_samples_per_batch_are_split_among_ranks():
    positions, labeled = np.arange(60), np.array([0, 10, 20, 30])
    shards = [
        list(EpochBatches(positions, 8, True, 1, rank, 2, labeled=labeled, labeled_per_batch=2))
        for rank in range(2)
    ]
    for shard in shards:
        assert all(sum(index in labeled for index in batch) == 2 for batch in shard)
    unlabelled = Counter(i for shard in shards for b in shard for i in b if i not in labeled)
    assert set(unlabelled) == set(positions.tolist()) - set(labeled.tolist())


def test_per_process_share_must_divide_evenly():
    assert per_process(128, 4, "data.batch_size") == 32
    with pytest.raises(ValueError, match=r"data.batch_size=10: must be divisible by the 3"):
        per_process(10, 3, "data.batch_size")


def test_relaunched_ranks_read_the_run_config_only_during_its_fit(monkeypatch):
    for key in (WORKER_CONFIG_ENV, "LOCAL_RANK", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    config = {"seed": 7, "paths": {"output_dir": "/runs/a"}}
    with relaunchable(config):
        assert relaunched_config() is None  # the launching process itself
        # What Lightning's launcher sets here, and (LOCAL_RANK=1) for rank 1.
        os.environ["MASTER_PORT"] = "12910"
        os.environ["LOCAL_RANK"] = "1"
        assert relaunched_config() == config
        os.environ["LOCAL_RANK"] = "0"
        assert relaunched_config() is None
    # Restored: the next run of a sequential sweep launches its own ranks again.
    assert WORKER_CONFIG_ENV not in os.environ
    assert "LOCAL_RANK" not in os.environ and "MASTER_PORT" not in os.environ


@pytest.mark.parametrize(
    "name, accelerator, devices, backend",
    [
        ("cpu", "cpu", 1, None),
        ("gpu", "gpu", 1, None),
        ("ddp", "gpu", -1, "nccl"),
        ("ddp_cpu", "cpu", 2, "gloo"),
    ],
)
def test_trainer_configs_compose(name, accelerator, devices, backend):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"trainer={name}"])
    trainer = cfg.trainer
    assert (trainer.accelerator, trainer.devices) == (accelerator, devices)
    assert trainer.use_distributed_sampler is False
    strategy = trainer.get("strategy")
    if backend is None:
        assert strategy is None
    else:
        assert strategy._target_ == "pytorch_lightning.strategies.DDPStrategy"
        assert strategy.process_group_backend == backend


def test_ddp_cpu_trainer_has_two_gloo_processes(tmp_path):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["trainer=ddp_cpu"])
    trainer = instantiate(cfg.trainer, default_root_dir=str(tmp_path), logger=False)
    assert trainer.world_size == 2
    assert trainer.strategy.process_group_backend == "gloo"


def test_batch_size_that_does_not_split_among_ranks_fails_before_training(tmp_path, data_cache):
    result = run_in(
        tmp_path, data_cache, "train.py", "hydra.run.dir=run", *TINY, "trainer=ddp_cpu",
        "data.batch_size=63",
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "data.batch_size=63: must be divisible by the 2" in output
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.slow
def test_ddp_cpu_run_writes_one_directory_and_matches_single_process_evaluation(
    tmp_path, data_cache
):
    workdir = tmp_path / "work"
    workdir.mkdir()
    result = run_in(
        workdir, data_cache, "train.py", *TINY, "trainer=ddp_cpu", "trainer.max_epochs=2"
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Starting with 2 processes" in output

    # Default layout, no explicit hydra.run.dir: a rank that composed its own config
    # would add a directory (or a sweep) here.
    assert [path.name for path in workdir.iterdir()] == ["outputs"]
    runs = list((workdir / "outputs" / "runs").iterdir())
    assert len(runs) == 1, runs
    run_dir = runs[0]
    assert output.count("report written to") == 1
    assert not list(run_dir.glob("*ddp_process*"))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed"
    # Global batch 64 = 2 x 32: the same 5 steps per epoch (272 samples) as one process.
    assert summary["training"]["global_step"] == 2 * math.ceil(272 / 64)
    assert summary["training"]["epochs_completed"] == 2
    history = json.loads((run_dir / "history.json").read_text())
    assert [row["epoch"] for row in history] == [0, 1]

    evaluation = run_in(
        workdir, data_cache, "evaluate.py", f"ckpt_path={run_dir / 'checkpoints' / 'best.ckpt'}",
        f"hydra.run.dir={tmp_path / 'evaluation'}",
    )  # fmt: skip
    assert evaluation.returncode == 0, evaluation.stdout + evaluation.stderr
    evaluated = json.loads((tmp_path / "evaluation" / "summary.json").read_text())
    assert_same_metrics(summary, evaluated)


@pytest.mark.slow
def test_ddp_cpu_multirun_gives_one_directory_per_job(tmp_path, data_cache):
    result = run_in(
        tmp_path, data_cache, "train.py", "-m", "hydra.sweep.dir=sweep", *TINY,
        "trainer=ddp_cpu", "trainer.max_epochs=1", "num_labeled=20,30",
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert output.count("Starting with 2 processes") == 2

    assert [path.name for path in tmp_path.iterdir()] == ["sweep"]
    jobs = sorted(path.name for path in (tmp_path / "sweep").iterdir() if path.is_dir())
    assert jobs == ["0", "1"]
    for job, num_labeled in zip(jobs, (20, 30)):
        summary = json.loads((tmp_path / "sweep" / job / "summary.json").read_text())
        assert summary["status"] == "completed"
        assert summary["experiment"]["num_labeled"] == num_labeled
