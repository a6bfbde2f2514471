"""Checkpoints: loading them safely, resuming a run from one, and what a run adds to them.

A checkpoint is read with ``torch.load(weights_only=True)``: only tensors and plain
containers are rebuilt, so a crafted file cannot run code when it is opened.

Every checkpoint of a run also carries the run's resolved configuration and the
states of the random number generators (:class:`RunState`), so that
``evaluate.py`` needs nothing but the file, and a resumed run draws the same
random numbers as one that was never interrupted.
"""

from __future__ import annotations

import logging
import pickle
import random
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf
from pytorch_lightning.utilities import rank_zero_only

log = logging.getLogger(__name__)

#: Name of the folder, inside a run directory, that holds its checkpoints.
CHECKPOINT_DIR = "checkpoints"

#: Keys every Lightning training checkpoint holds.
REQUIRED_KEYS = ("state_dict", "epoch", "global_step")

#: Module hyperparameters that must match for a checkpoint's weights to be loaded.
ARCHITECTURE_KEYS = ("input_dim", "num_classes", "model")


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, truncated, unsafe or not a training checkpoint."""


def _first_sentence(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0].split('. ')[0]}" if text else type(error).__name__


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a Lightning training checkpoint on the CPU, without executing code from the file.

    Args:
        path: The ``.ckpt`` file.

    Returns:
        The checkpoint dictionary (``state_dict``, ``epoch``, ``global_step``, ...).

    Raises:
        CheckpointError: The file does not exist, cannot be read (truncated or corrupt),
            holds objects other than tensors and plain containers, or is not a
            training checkpoint. The message names the file.
    """
    path = Path(path)
    if not path.is_file():
        problem = "is a directory, not a checkpoint file" if path.is_dir() else "no such file"
        raise CheckpointError(f"{path}: {problem}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # The weights-only unpickler names the first class or function it refused.
        unsafe = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        if unsafe:
            raise CheckpointError(
                f"{path}: refused to load: it references {unsafe.group(1)}, not only tensors "
                "and plain containers, and unpickling it could run code"
            ) from error
        raise CheckpointError(
            f"{path}: not a readable checkpoint, corrupt or truncated (no PyTorch archive)"
        ) from error
    except Exception as error:
        raise CheckpointError(
            f"{path}: not a readable checkpoint, corrupt or truncated ({_first_sentence(error)})"
        ) from error
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(f"{path}: not a training checkpoint (holds a {type(checkpoint)})")
    missing = [key for key in REQUIRED_KEYS if key not in checkpoint]
    if missing:
        raise CheckpointError(f"{path}: not a training checkpoint (no {', '.join(missing)})")
    return dict(checkpoint)


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data, Mapping):
        return {prefix: data}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def hyperparameter_differences(saved: Mapping, current: Mapping) -> dict[str, tuple[Any, Any]]:
    """``{dotted key: (saved value, current value)}`` for every hyperparameter that differs."""
    before, after = _flatten(dict(saved)), _flatten(dict(current))
    return {
        key: (before.get(key), after.get(key))
        for key in sorted(before.keys() | after.keys())
        if before.get(key) != after.get(key)
    }


def check_compatible(checkpoint: Mapping, hparams: Mapping, path: str | Path) -> None:
    """Refuse to resume a checkpoint of another architecture; warn about other changes.

    Raises:
        CheckpointError: The model the checkpoint was trained with differs from ``hparams``.
    """
    saved = dict(checkpoint.get("hyper_parameters") or {})
    differences = hyperparameter_differences(saved, hparams)
    saved_keys = _flatten(saved)
    # A key the checkpoint lacks is an option added since it was written: only a warning.
    fatal = {
        key: values
        for key, values in differences.items()
        if key.split(".")[0] in ARCHITECTURE_KEYS and key in saved_keys
    }
    if fatal:
        listed = "; ".join(
            f"{key}={saved!r}, this run has {current!r}" for key, (saved, current) in fatal.items()
        )
        raise CheckpointError(
            f"{path}: was trained with {listed}; resume with the overrides of the original run"
        )
    if rank_zero_only.rank != 0:
        return  # every rank checks; one reports
    for key, (saved, current) in differences.items():
        log.warning(
            "resuming with %s=%r (the checkpoint was trained with %r)", key, current, saved
        )


def _run_dir_of(ckpt_path: str | None) -> str | None:
    """``<run dir>`` of an existing ``<run dir>/checkpoints/<name>.ckpt``, else None."""
    if ckpt_path:
        path = Path(str(ckpt_path))
        if path.is_file() and path.parent.name == CHECKPOINT_DIR:
            return str(path.parent.parent)
    return None


def resume_run_dir(ckpt_path: str | None, fresh_dir: str) -> str:
    """Output directory of a run: the checkpoint's own run directory when resuming.

    A run resumed from ``<run dir>/checkpoints/last.ckpt`` continues in ``<run dir>``:
    its checkpoints, metrics log and report are completed in place. Any other
    ``ckpt_path`` (or none) gets ``fresh_dir``.
    """
    return _run_dir_of(ckpt_path) or fresh_dir


def resume_subdir(ckpt_path: str | None, resumed: str, fresh: str) -> str:
    """Hydra's record folder: ``resumed`` when continuing a run in place, else ``fresh``.

    Keeps the original ``.hydra/`` record of how the run was started.
    """
    return resumed if _run_dir_of(ckpt_path) else fresh


def register_resolvers() -> None:
    """Make ``${resume_dir:...}`` and ``${resume_subdir:...}`` available to the configs."""
    for name, resolver in (("resume_dir", resume_run_dir), ("resume_subdir", resume_subdir)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)


def capture_rng() -> dict[str, Any]:
    """States of the torch (CPU and CUDA), NumPy and Python generators, as plain data."""
    _, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        # Kept as a tensor and numbers: a safe (weights-only) load rebuilds no NumPy arrays.
        "numpy": [torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached_gaussian],
        "python": random.getstate(),
    }


def restore_rng(state: Mapping[str, Any]) -> None:
    """Set every generator back to a state from :func:`capture_rng`."""
    torch.set_rng_state(state["torch"])
    cuda = list(state.get("cuda") or [])
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    keys, position, has_gauss, cached_gaussian = state["numpy"]
    np.random.set_state(
        ("MT19937", keys.numpy().astype(np.uint32), position, has_gauss, cached_gaussian)
    )
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


class RunState(pl.Callback):
    """Adds the resolved run configuration and the generators' states to every checkpoint.

    Restoring the generators on resume makes the resumed epochs draw the same
    reparameterisation noise and dropout masks as an uninterrupted run.

    Args:
        config: The run's resolved configuration as plain containers.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def state_dict(self) -> dict[str, Any]:
        return {"config": self.config, "rng": capture_rng()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "rng" in state_dict:
            restore_rng(state_dict["rng"])


def callback_state(checkpoint: Mapping, name: str) -> dict[str, Any] | None:
    """State a callback stored in ``checkpoint``; ``name`` is the start of its state key."""
    for key, state in (checkpoint.get("callbacks") or {}).items():
        if str(key).split("{")[0] == name:
            return state
    return None


def run_config(checkpoint: Mapping, path: str | Path) -> dict[str, Any]:
    """The resolved configuration of the run that wrote ``checkpoint``.

    Taken from the checkpoint itself, or, for a checkpoint written without it,
    from ``config.yaml`` in the run directory around ``<run dir>/checkpoints/``.

    Raises:
        CheckpointError: Neither is available.
    """
    state = callback_state(checkpoint, RunState.__qualname__)
    if state and state.get("config"):
        return dict(state["config"])
    beside = Path(path).parent.parent / "config.yaml"
    if Path(path).parent.name == CHECKPOINT_DIR and beside.is_file():
        return OmegaConf.to_container(OmegaConf.load(beside), resolve=True)
    raise CheckpointError(f"{path}: holds no run configuration and no config.yaml is beside it")
