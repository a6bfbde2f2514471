"""Failure modes, through the real train.py: what a user finds after each one.

Faults are injected as extra Lightning callbacks from ``tests/faults.py`` through Hydra
overrides, so the package itself carries no test hooks.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import ROOT, TINY
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from ssvae.config import ConfigError, validate_config
from ssvae.pipeline import prepare_data

FAULT = "+callbacks.fault._target_=tests.faults."
SLOW_BATCHES = (f"{FAULT}SlowBatches", "+callbacks.fault.seconds=0.5")


def start_training(run_dir: Path, data_cache: Path, *overrides: str) -> subprocess.Popen:
    """train.py in the background, as a scheduler would start it."""
    command = [sys.executable, str(ROOT / "train.py"), f"hydra.run.dir={run_dir}", *overrides]
    environment = {**os.environ, "SSVAE_CACHE_DIR": str(data_cache)}
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            pytest.fail(f"train.py ended before {path.name} appeared:\n{process.stdout.read()}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"{path} did not appear within {timeout} s")
        time.sleep(0.1)


def checkpoint_is_finite(path: Path) -> bool:
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    return all(torch.isfinite(tensor).all() for tensor in state.values())


# --- Non-finite loss -----------------------------------------------------------------------


def test_non_finite_loss_stops_at_its_step_and_keeps_the_last_good_checkpoint(train_tiny):
    # 300 samples, 28 held out, 20 labelled, 4 labelled per batch: 5 steps per epoch,
    # so step 7 is batch 2 of epoch 1, after epoch 0's checkpoint.
    result = train_tiny(
        "trainer.max_epochs=3",
        "data.labeled_per_batch=4",
        f"{FAULT}PoisonClassifier",
        "+callbacks.fault.at_step=7",
    )
    assert result.returncode == 1, result.output
    last = result.run_dir / "checkpoints" / "last.ckpt"
    summary = result.summary()
    assert summary["status"] == "failed"
    assert summary["failure"] == {
        "kind": "non_finite_loss",
        "epoch": 1,
        "step": 7,
        "batch": 2,
        # Only the classifier was poisoned: the other terms stay finite and are not named.
        "non_finite_terms": ["classification_loss", "loss"],
        "last_good_checkpoint": str(last),
    }
    assert summary["training"]["epochs_completed"] == 1

    checkpoint = torch.load(last, map_location="cpu", weights_only=True)
    assert checkpoint["epoch"] == 0 and checkpoint_is_finite(last)
    assert [row["epoch"] for row in json.loads((result.run_dir / "history.json").read_text())] == [
        0
    ]
    report = (result.run_dir / "REPORT.md").read_text()
    assert "**Status:** failed" in report and "Last good checkpoint" in report
    assert "training stopped: non-finite loss at epoch 1, step 7" in result.output


def test_diverging_run_fails_in_its_first_epoch_without_a_checkpoint(train_tiny):
    result = train_tiny("optimizer.lr=1e30", "trainer.max_epochs=3")
    assert result.returncode == 1, result.output
    summary = result.summary()
    assert summary["status"] == "failed"
    failure = summary["failure"]
    assert failure["epoch"] == 0 and "loss" in failure["non_finite_terms"]
    assert failure["last_good_checkpoint"] is None
    assert not list((result.run_dir / "checkpoints").glob("*.ckpt"))


# --- Interrupts ------------------------------------------------------------------------------


@pytest.mark.slow
def test_sigterm_writes_an_interrupted_report_and_the_run_resumes(
    tmp_path, data_cache, run_script
):
    run_dir = tmp_path / "run"
    overrides = (*TINY, "trainer.max_epochs=4")
    process = start_training(run_dir, data_cache, *overrides, *SLOW_BATCHES)
    last = run_dir / "checkpoints" / "last.ckpt"
    wait_for(last, process)
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=600)[0]

    assert process.returncode == 128 + signal.SIGTERM, output
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    assert summary["interruption"] == {"signal": "SIGTERM", "resume_from": str(last)}
    completed = summary["training"]["epochs_completed"]
    assert 1 <= completed < 4
    # The report covers the completed epochs: metrics and figures, like a finished run.
    assert 0 <= summary["classification"]["accuracy"] <= 1
    assert "K_eff" in summary["mixture"]
    history = json.loads((run_dir / "history.json").read_text())
    assert [row["epoch"] for row in history] == list(range(completed))
    report = (run_dir / "REPORT.md").read_text()
    assert "**Status:** interrupted" in report and f"ckpt_path={last}" in report
    assert (run_dir / "figures" / "loss_curves.png").is_file()

    resumed = run_script("train.py", *overrides, f"ckpt_path={last}", run_dir=run_dir)
    assert resumed.returncode == 0, resumed.output
    summary = resumed.summary()
    assert summary["status"] == "completed" and "interruption" not in summary
    assert summary["training"]["epochs_completed"] == 4
    history = json.loads((run_dir / "history.json").read_text())
    assert [row["epoch"] for row in history] == [0, 1, 2, 3]


def test_ctrl_c_before_the_first_epoch_ends_says_so(tmp_path, data_cache):
    run_dir = tmp_path / "run"
    process = start_training(run_dir, data_cache, *TINY, *SLOW_BATCHES)
    # config.yaml is written once the data is ready, just before training starts.
    wait_for(run_dir / "config.yaml", process)
    process.send_signal(signal.SIGINT)
    output = process.communicate(timeout=600)[0]

    assert process.returncode == 128 + signal.SIGINT, output
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    assert summary["interruption"] == {"signal": "SIGINT", "resume_from": None}
    assert summary["training"]["epochs_completed"] == 0
    assert "no completed epoch" in (run_dir / "REPORT.md").read_text()


# --- Atomic outputs ----------------------------------------------------------------------------


@pytest.mark.slow
def test_sigkill_while_writing_a_summary_leaves_it_absent_and_the_sweep_flags_it(
    tmp_path, data_cache, run_script
):
    sweep_dir = tmp_path / "sweep"
    command = [
        sys.executable,
        str(ROOT / "train.py"),
        "-m",
        f"hydra.sweep.dir={sweep_dir}",
        *TINY,
        f"{FAULT}KillWhileWriting",
        # Job 0 never matches a file; job 1 is killed inside summary.json's write.
        "+callbacks.fault.file_name=nothing,summary.json",
    ]
    environment = {**os.environ, "SSVAE_CACHE_DIR": str(data_cache)}
    killed = subprocess.run(
        command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=900
    )
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr

    finished, broken = sweep_dir / "0", sweep_dir / "1"
    assert json.loads((finished / "summary.json").read_text())["status"] == "completed"
    assert not (broken / "summary.json").exists()
    leftovers = list(broken.glob(".summary.json.*.tmp"))
    assert leftovers and leftovers[0].stat().st_size > 0  # the half-written file, hidden
    assert checkpoint_is_finite(broken / "checkpoints" / "last.ckpt")

    rebuilt = subprocess.run(
        [sys.executable, "-m", "ssvae.sweep", str(sweep_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    records = json.loads((sweep_dir / "sweep_summary.json").read_text())["jobs"]
    statuses = {record["job"]: record["status"] for record in records}
    assert statuses == {"0": "completed", "1": "incomplete"}, rebuilt.stdout + rebuilt.stderr
    assert "incomplete" in (sweep_dir / "SWEEP_REPORT.md").read_text()


def test_checkpoint_is_replaced_whole_or_not_at_all(tmp_path):
    from ssvae.checkpointing import AtomicCheckpointIO

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("fails halfway through the file")

    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "epoch": 0}, path)
    big = {"state_dict": {"w": torch.zeros(1_000_000)}, "z": Unpicklable()}
    with pytest.raises(RuntimeError, match="halfway"):
        io.save_checkpoint(big, path)

    assert torch.load(path, weights_only=True)["epoch"] == 0
    assert [file.name for file in tmp_path.iterdir()] == ["last.ckpt"]


# --- Determinism --------------------------------------------------------------------------------


def _results(summary: dict) -> dict:
    """Every result of a summary, without wall-clock times (``*_sec``)."""

    def untimed(value):
        if isinstance(value, dict):
            return {k: untimed(v) for k, v in value.items() if not k.endswith("_sec")}
        return value

    sections = ("training", "classification", "mixture", "clustering", "baselines")
    return {key: untimed(summary.get(key)) for key in sections}


@pytest.mark.slow
def test_same_seed_gives_identical_results_and_another_seed_differs(train_tiny):
    runs = {
        name: train_tiny(f"seed={seed}", "trainer.deterministic=true", name=name)
        for name, seed in (("first", 42), ("second", 42), ("other", 7))
    }
    for result in runs.values():
        assert result.returncode == 0, result.output
    first, second, other = (_results(runs[name].summary()) for name in runs)
    assert first == second
    assert first["classification"] != other["classification"]
    assert first["training"]["loss"] != other["training"]["loss"]
    history = {name: (runs[name].run_dir / "history.json").read_text() for name in runs}
    assert history["first"] == history["second"] != history["other"]


def test_seed_sets_the_split(data_cache, monkeypatch):
    monkeypatch.setenv("SSVAE_CACHE_DIR", str(data_cache))
    splits = [
        prepare_data(compose_config(["num_samples=300", "num_labeled=20", f"seed={seed}"])).split
        for seed in (42, 42, 7)
    ]
    for part in ("pool", "labeled", "val"):
        assert (getattr(splits[0], part) == getattr(splits[1], part)).all()
    assert (splits[0].labeled != splits[2].labeled).any()
    assert (splits[0].val != splits[2].val).any()


# --- Hostile names and values --------------------------------------------------------------------

HOSTILE_NAME = "../../escaped/<script>x</script> | # `rm -rf` *b*\x07\x1b[31m\nline"
HOSTILE_TAGS = ["../up", "a/b", "with space", "tab\there", "/etc/passwd"]


def _files(root: Path) -> set[Path]:
    return {path for path in root.rglob("*") if path.is_file()}


def test_hostile_name_and_tags_stay_inside_the_run_and_are_escaped(train_tiny, tmp_path):
    tags = ",".join(f"'{tag}'" for tag in HOSTILE_TAGS)
    result = train_tiny(f"name='{HOSTILE_NAME}'", f"tags=[{tags}]")
    assert result.returncode == 0, result.output

    assert _files(tmp_path) == _files(result.run_dir)
    for base in (result.run_dir, result.run_dir / "checkpoints", ROOT):
        assert not (base / "../../escaped").resolve().exists()

    summary = result.summary()
    assert summary["experiment"]["name"] == HOSTILE_NAME  # kept verbatim in JSON
    assert summary["experiment"]["tags"] == HOSTILE_TAGS
    report = (result.run_dir / "REPORT.md").read_text()
    heading = report.splitlines()[0]
    assert heading.startswith("# ") and "line" in heading  # the newline did not split it
    assert "<script>" not in report and "&lt;script&gt;" in report
    assert "\x07" not in report and "\x1b" not in report
    assert "\\`rm -rf\\`" in report and "\\| \\#" in report
    tags_line = next(line for line in report.splitlines() if line.startswith("- **Tags:**"))
    assert "tab here" in tags_line and "a/b" in tags_line


def compose_config(overrides: list[str]):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=overrides)


#: Numeric keys a user sets for an ablation, with a valid value to start from.
NUMERIC_KEYS = (
    "loss.recon_weight", "loss.kl_weight", "loss.kl_c_weight", "loss.dirichlet_weight",
    "loss.usage_weight", "loss.label_weight", "loss.kl_c_anneal_epochs", "prior.dirichlet_alpha",
    "prior.num_components", "optimizer.lr", "optimizer.weight_decay", "data.val_fraction",
    "data.batch_size", "data.labeled_per_batch", "model.latent_dim", "model.classifier_dropout",
    "seed", "num_samples", "num_labeled", "trainer.max_epochs", "trainer.gradient_clip_val",
    "trainer.log_every_n_steps", "callbacks.early_stopping.patience",
    "report.num_reconstructions", "paths.min_free_mb",
)  # fmt: skip


@pytest.fixture(scope="module")
def default_config():
    return compose_config([])


@pytest.mark.parametrize("key", NUMERIC_KEYS)
def test_every_numeric_key_rejects_strings_nan_and_infinity(default_config, key):
    validate_config(default_config)  # the untouched defaults pass
    for bad in ("0.5", "1", float("nan"), float("inf"), float("-inf")):
        cfg = copy.deepcopy(default_config)
        OmegaConf.update(cfg, key, bad, force_add=True)
        with pytest.raises(ConfigError) as raised:
            validate_config(cfg)
        message = str(raised.value)
        assert message.startswith(f"{key}=") and "\n" not in message, (bad, message)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("loss.kl_weight='0.5'", "loss.kl_weight='0.5': must be a number, got str"),
        ("loss.dirichlet_weight=nan", "loss.dirichlet_weight=nan: must be finite"),
        ("tags=foo", "tags='foo': must be a list"),
    ],
)
def test_train_py_rejects_hostile_values_naming_the_key(train_tiny, override, message):
    result = train_tiny(override)
    assert result.returncode == 2, result.output
    errors = [line for line in result.output.splitlines() if "invalid configuration" in line]
    assert len(errors) == 1 and message in errors[0], result.output
    assert not (result.run_dir / "checkpoints").exists()


# --- Unwritable or full output location --------------------------------------------------------


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory nobody can write into: chmod for a normal user, a read-only mount for root."""
    directory = tmp_path / "read-only"
    directory.mkdir()
    if os.geteuid() != 0:
        directory.chmod(0o555)
        yield directory
        directory.chmod(0o755)
        return
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(directory)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"running as root and cannot mount a read-only tmpfs: {mounted.stderr}")
    yield directory
    subprocess.run(["umount", str(directory)], check=True)


def _assert_refused_before_training(result, message: str) -> None:
    assert result.returncode == 2, result.output
    lines = [line for line in result.output.splitlines() if message in line]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    assert "Epoch" not in result.output


def test_read_only_run_directory_is_refused_before_anything_runs(run_script, read_only_dir):
    run_dir = read_only_dir / "run"
    result = run_script("train.py", *TINY, run_dir=run_dir)
    _assert_refused_before_training(result, f"hydra.run.dir={run_dir}: cannot write there")
    assert not run_dir.exists()


def test_read_only_output_dir_is_refused_before_the_data_is_read(train_tiny, read_only_dir):
    output_dir = read_only_dir / "outputs"
    result = train_tiny(f"paths.output_dir={output_dir}")
    _assert_refused_before_training(
        result, f"invalid configuration: paths.output_dir={output_dir}: cannot write there"
    )


def test_too_little_free_space_is_refused_before_anything_runs(run_script, tmp_path):
    run_dir = tmp_path / "run"
    result = run_script("train.py", *TINY, "paths.min_free_mb=1e12", run_dir=run_dir)
    _assert_refused_before_training(result, "MB free, below paths.min_free_mb=1e+12")
