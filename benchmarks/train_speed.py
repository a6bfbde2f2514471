"""Seconds per epoch of the real training path against a hand-written PyTorch loop.

Both sides train the same model with the same loss, optimiser, gradient clipping and
batches, and both run a validation pass every epoch:

- ``lightning``: :func:`ssvae.pipeline.train`, i.e. what ``train.py`` runs (DataModule,
  LightningModule, Trainer with the default callbacks and logger, report at the end);
- ``raw``: a minimal loop that indexes the in-memory tensors directly, the lower bound.

The first ``--warmup`` epochs of every run are dropped; the median of the others is
reported. The main measurement alternates raw and Lightning runs ``--repeats`` times so
that load from other processes hits both sides alike. Scaling rows repeat it for larger
K and larger pools (pools beyond the source's size tile its images)::

    python benchmarks/train_speed.py
    python benchmarks/train_speed.py --json speed.json
    python benchmarks/train_speed.py --no-scaling threads=1
    python benchmarks/train_speed.py --device cuda
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, open_dict

import ssvae.data.datamodule as datamodule_module
from ssvae.config import ConfigError
from ssvae.data.sources import ImageData
from ssvae.losses import objective
from ssvae.module import SemiSupervisedVAE
from ssvae.pipeline import build_module, prepare_data, train

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("train_speed")


class EpochClock(pl.Callback):
    """Writes the wall and CPU seconds of every training epoch (validation included) to JSON.

    An epoch runs from one ``on_train_epoch_start`` to the next, so validation,
    checkpointing and logging between them are counted; the last epoch ends at
    ``on_train_end``. CPU time (all threads of the process) is far less sensitive than
    wall time to other processes on a shared machine.
    """

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.starts: list[tuple[float, float]] = []

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.starts.append(_clocks())

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        ends = [*self.starts[1:], _clocks()]
        durations = [_elapsed(start, end) for start, end in zip(self.starts, ends)]
        self.path.write_text(json.dumps(durations))


def _clocks() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _elapsed(start: tuple[float, float], end: tuple[float, float]) -> tuple[float, float]:
    """(wall, cpu) seconds between two :func:`_clocks` readings."""
    return end[0] - start[0], end[1] - start[1]


def compose_config(overrides: Sequence[str], output_dir: Path) -> DictConfig:
    """The run configuration ``train.py`` would get for ``overrides``."""
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[*overrides, f"paths.output_dir={output_dir}"])
    return cfg


@contextlib.contextmanager
def tiled_source(num_samples: int) -> Iterator[None]:
    """Serve pools larger than the source by repeating its images (same cost per sample)."""
    load = datamodule_module.load_source

    def load_tiled(source: str, **options: object) -> ImageData:
        data = load(source, **options)
        repeats = -(-num_samples // len(data.train_labels))
        if repeats <= 1:
            return data
        return dataclasses.replace(
            data,
            train_images=np.tile(data.train_images, (repeats, 1)),
            train_labels=np.tile(data.train_labels, repeats),
        )

    datamodule_module.load_source = load_tiled
    try:
        yield
    finally:
        datamodule_module.load_source = load


def synchronize(device: torch.device) -> None:
    """Wait for queued device work, so that wall time covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def lightning_epochs(cfg: DictConfig) -> list[tuple[float, float]]:
    """(wall, cpu) seconds per epoch of :func:`ssvae.pipeline.train` on ``cfg``."""
    clock_path = Path(cfg.paths.output_dir) / "epoch_seconds.json"
    with open_dict(cfg):
        cfg.callbacks.epoch_clock = {
            "_target_": f"{EpochClock.__module__}.{EpochClock.__qualname__}",
            "path": str(clock_path),
        }
    train(cfg)
    return json.loads(clock_path.read_text())


def _step_terms(module: SemiSupervisedVAE, images, targets, epoch: int) -> dict:
    """The objective of one batch, as the LightningModule computes it, without Lightning."""
    model = module.model
    output = model(images)
    terms = objective(
        images,
        targets,
        recon_logits=output.recon_logits,
        mu=output.mu,
        logvar=output.logvar,
        class_logits=output.class_logits,
        weights=module.loss_weights,
        epoch=epoch,
        component_logits=output.component_logits,
        log_pi=model.log_pi(),
    )
    if model.training and module.loss_weights.consistency_weight > 0:
        module._add_consistency(terms, images, output)
    return terms


def raw_epochs(cfg: DictConfig, device: torch.device) -> list[tuple[float, float]]:
    """(wall, cpu) seconds per epoch of a plain loop: same model, loss, optimiser, batches."""
    datamodule = prepare_data(cfg)
    split = datamodule.split
    if cfg.threads:  # as the pipeline does; the setting then holds for the whole process
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    module = build_module(
        cfg,
        datamodule.input_dim,
        unlabeled_ratio=(len(split.train) - len(split.labeled)) / max(len(split.labeled), 1),
    ).to(device)
    optimizer = module.configure_optimizers()
    images, targets = datamodule.images.to(device), datamodule.targets.to(device)
    train_batches = datamodule.train_dataloader().batch_sampler
    val_batches = datamodule.val_dataloader().batch_sampler
    clip = cfg.trainer.gradient_clip_val

    durations = []
    for epoch in range(cfg.trainer.max_epochs):
        start = _clocks()
        train_batches.set_epoch(epoch)
        module.train()
        for indices in train_batches:
            index = torch.as_tensor(indices, device=device)
            loss = _step_terms(module, images[index], targets[index], epoch)["loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(module.parameters(), clip)
            optimizer.step()
        module.eval()
        with torch.no_grad():
            for indices in val_batches:
                index = torch.as_tensor(indices, device=device)
                _step_terms(module, images[index], targets[index], epoch)
        synchronize(device)
        durations.append(_elapsed(start, _clocks()))
    return durations


def measure(
    overrides: Sequence[str], device: torch.device, warmup: int, epochs: int, repeats: int
) -> dict[str, Any]:
    """Median seconds per epoch of both paths, alternating raw and Lightning runs."""
    overrides = [*overrides, f"trainer.max_epochs={warmup + epochs}"]
    timed: dict[str, list[tuple[float, float]]] = {"raw": [], "lightning": []}
    with tempfile.TemporaryDirectory(prefix="train_speed_") as scratch:
        for repeat in range(repeats):
            cfg = compose_config(overrides, Path(scratch) / f"run{repeat}")
            with tiled_source(cfg.num_samples):
                timed["raw"] += raw_epochs(cfg, device)[warmup:]
                timed["lightning"] += lightning_epochs(cfg)[warmup:]
                train_samples = len(prepare_data(cfg).split.train)
    row = {
        "num_components": cfg.prior.num_components,
        "num_samples": cfg.num_samples,
        "train_samples": train_samples,
    }
    for side, durations in timed.items():
        row[f"{side}_s_per_epoch"] = statistics.median(wall for wall, _ in durations)
        row[f"{side}_cpu_s_per_epoch"] = statistics.median(cpu for _, cpu in durations)
        row[f"{side}_epochs_s"] = [wall for wall, _ in durations]
    row["overhead_ratio"] = row["lightning_s_per_epoch"] / row["raw_s_per_epoch"]
    row["cpu_overhead_ratio"] = row["lightning_cpu_s_per_epoch"] / row["raw_cpu_s_per_epoch"]
    row["samples_per_s"] = train_samples / row["lightning_s_per_epoch"]
    return row


def scaling_rows(
    base: dict[str, Any], args: argparse.Namespace, device: torch.device
) -> list[dict[str, Any]]:
    """The base row plus one row per larger K and per larger pool, with growth factors."""
    settings = [(k, base["num_samples"]) for k in args.scaling_components]
    settings += [(base["num_components"], n) for n in args.scaling_samples]
    rows = []
    for num_components, num_samples in dict.fromkeys(settings):
        if (num_components, num_samples) == (base["num_components"], base["num_samples"]):
            row = dict(base)
        else:
            overrides = [
                *args.overrides,
                f"prior.num_components={num_components}",
                f"num_samples={num_samples}",
            ]
            row = measure(overrides, device, args.warmup, args.scaling_epochs, 1)
        row["size_ratio"] = (num_components * num_samples) / (
            base["num_components"] * base["num_samples"]
        )
        for prefix in ("", "cpu_"):
            key = f"lightning_{prefix}s_per_epoch"
            row[f"{prefix}time_ratio"] = row[key] / base[key]
        rows.append(row)
        log.info("scaling K=%d N=%d done", num_components, num_samples)
    return rows


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "pytorch_lightning": pl.__version__,
        "python": platform.python_version(),
        "cuda_device": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def table(result: dict[str, Any]) -> str:
    """The scaling rows (or the main row alone) as a Markdown table.

    ``time x`` and ``size x`` compare a row with the first one: time per epoch (wall,
    then CPU) and K * num_samples.
    """
    lines = [
        "| K | num_samples | Lightning s/epoch | raw s/epoch | overhead | Lightning CPU s/epoch "
        "| CPU overhead | samples/s | time x | CPU time x | size x |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    first = {"time_ratio": 1.0, "cpu_time_ratio": 1.0, "size_ratio": 1.0}
    for row in result["scaling"] or [{**result, **first}]:
        lines.append(
            f"| {row['num_components']} | {row['num_samples']} "
            f"| {row['lightning_s_per_epoch']:.3f} | {row['raw_s_per_epoch']:.3f} "
            f"| {row['overhead_ratio']:.3f} | {row['lightning_cpu_s_per_epoch']:.3f} "
            f"| {row['cpu_overhead_ratio']:.3f} | {row['samples_per_s']:.0f} "
            f"| {row['time_ratio']:.2f} | {row['cpu_time_ratio']:.2f} | {row['size_ratio']:.2f} |"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides applied to every run")
    parser.add_argument("--experiment", default="entropy_reward_100labels")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--warmup", type=int, default=1, help="untimed epochs per run")
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs per run")
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs per side")
    parser.add_argument("--scaling-epochs", type=int, default=3)
    parser.add_argument("--scaling-components", type=_int_list, default=[10, 20, 50])
    parser.add_argument("--scaling-samples", type=_int_list, default=[5000, 20000])
    parser.add_argument("--no-scaling", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if min(args.warmup, args.epochs - 1, args.repeats - 1, args.scaling_epochs - 1) < 0:
        parser.error("--warmup must be >= 0; --epochs, --repeats, --scaling-epochs >= 1")
    args.overrides = [f"experiment={args.experiment}", *args.overrides]
    if args.device == "cuda":
        args.overrides.append("trainer=gpu")
    return args


def _int_list(text: str) -> list[int]:
    return [int(item) for item in text.split(",") if item]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.stderr.write(
            f"train_speed: --device cuda, but CUDA is not available to torch {torch.__version__}\n"
        )
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    log.setLevel(logging.INFO)
    device = torch.device(args.device)

    try:
        result = measure(args.overrides, device, args.warmup, args.epochs, args.repeats)
        result["peak_rss_mb"] = peak_rss_mb()
        result["scaling"] = [] if args.no_scaling else scaling_rows(result, args, device)
    except (ConfigError, HydraException) as error:
        sys.stderr.write(f"train_speed: invalid configuration: {error}\n")
        return 2
    result.update(machine=machine(), overrides=args.overrides, device=args.device)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    print(table(result))
    print(f"peak RSS {result['peak_rss_mb']:.0f} MB (main configuration, both paths)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
