"""Data-parallel (DDP) runs: one output directory per run, however the ranks are started.

Lightning's DDP launcher starts ranks 1..N-1 by running the entry script again with
the parent's command line. Under Hydra that command line would compose a new
config, and inside a multirun (``-m``) it would start the whole sweep again in
every rank. Instead, while a run trains, its resolved configuration sits in the
environment variable :data:`WORKER_CONFIG_ENV`; a process that finds it there is a
re-launched rank and trains exactly that configuration, in that run's directory,
without Hydra. Code that runs on every rank must therefore take what it needs from
the run config, never from ``HydraConfig``.

Clusters that start every rank themselves (``torchrun``, SLURM) run the entry
script once per rank with the same command line; give them an explicit
``hydra.run.dir`` so that all ranks agree on the directory.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch.distributed
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

#: Holds the resolved run config (JSON) while a run trains, for re-launched ranks.
WORKER_CONFIG_ENV = "SSVAE_DDP_RUN_CONFIG"

#: Set by Lightning's launcher in the parent process; cleared after each run so that
#: the next run of a sequential sweep starts its own ranks again.
LAUNCHER_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


def per_process(value: int, world_size: int, key: str) -> int:
    """Share of one process in a global per-step count (batch size, labelled samples).

    Raises:
        ValueError: ``value`` does not divide evenly among ``world_size`` processes.
    """
    if value % world_size:
        raise ValueError(
            f"{key}={value}: must be divisible by the {world_size} data-parallel processes "
            "(it is the global count per step, split evenly among them)"
        )
    return value // world_size


@contextmanager
def relaunchable(config: dict[str, Any]) -> Iterator[None]:
    """Let ranks re-launched during this block rebuild the run from ``config``.

    On leaving, restores the launcher's environment variables and closes a process
    group opened inside the block, so a later run in the same process starts afresh.
    """
    saved = {key: os.environ.get(key) for key in (WORKER_CONFIG_ENV, *LAUNCHER_ENV)}
    group_existed = torch.distributed.is_available() and torch.distributed.is_initialized()
    os.environ[WORKER_CONFIG_ENV] = json.dumps(config)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if not group_existed and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def relaunched_config() -> DictConfig | None:
    """The run config of a rank that Lightning re-launched; None in any other process."""
    payload = os.environ.get(WORKER_CONFIG_ENV)
    if payload is None or os.environ.get("LOCAL_RANK", "0") == "0":
        return None
    return OmegaConf.create(json.loads(payload))


def run_relaunched(cfg: DictConfig, train: Callable[[DictConfig], Path]) -> int:
    """Train ``cfg`` as a re-launched rank; returns the process exit status."""
    rank = os.environ.get("LOCAL_RANK")
    # Rank zero reports progress; the others speak up only for warnings and errors.
    logging.basicConfig(
        level=logging.WARNING, format=f"[rank {rank}] %(levelname)s %(name)s: %(message)s"
    )
    try:
        train(cfg)
    except Exception:
        log.exception("rank %s failed", rank)
        return 1
    return 0
