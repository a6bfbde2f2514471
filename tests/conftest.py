"""Shared fixtures: run the real ``train.py`` entry point on tiny configurations."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Small enough for seconds per run, large enough for every code path (10 classes, val split).
TINY = (
    "num_samples=300",
    "num_labeled=20",
    "data.batch_size=64",
    "model.hidden_dims=[32,16]",
    "trainer.max_epochs=2",
    "trainer.enable_progress_bar=false",
    "report.num_reconstructions=4",
)


@dataclass
class Completed:
    """A finished ``train.py`` process and the directory it wrote."""

    returncode: int
    stdout: str
    stderr: str
    run_dir: Path

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def summary(self) -> dict:
        return json.loads((self.run_dir / "summary.json").read_text())


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache of the parsed MNIST-5k subset for the whole test session."""
    shared = os.environ.get("SSVAE_CACHE_DIR")
    return Path(shared) if shared else tmp_path_factory.mktemp("ssvae-cache")


@pytest.fixture
def run_script(data_cache: Path):
    """Run a root-level script (``train.py``, ...) with overrides, as a user would."""

    def run(
        script: str, *overrides: str, run_dir: Path, timeout: float = 600, env: dict | None = None
    ) -> Completed:
        command = [sys.executable, str(ROOT / script), f"hydra.run.dir={run_dir}", *overrides]
        environment = {**os.environ, "SSVAE_CACHE_DIR": str(data_cache), **(env or {})}
        process = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=environment
        )
        return Completed(process.returncode, process.stdout, process.stderr, run_dir)

    return run


@pytest.fixture
def train_tiny(run_script, tmp_path: Path):
    """``train.py`` on the tiny configuration plus ``overrides``, in a fresh run directory."""

    def run(*overrides: str, name: str = "run", **kwargs) -> Completed:
        return run_script("train.py", *TINY, *overrides, run_dir=tmp_path / name, **kwargs)

    return run


@pytest.fixture(scope="session")
def trained_run(data_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory of one finished tiny run (1 epoch), shared by tests that only read it.

    Tests that change files copy it first.
    """
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    command = [
        sys.executable,
        str(ROOT / "train.py"),
        f"hydra.run.dir={run_dir}",
        *TINY,
        "trainer.max_epochs=1",
    ]
    environment = {**os.environ, "SSVAE_CACHE_DIR": str(data_cache)}
    process = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=600, env=environment
    )
    assert process.returncode == 0, process.stdout + process.stderr
    return run_dir
