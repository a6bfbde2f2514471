"""Checkpoint files that are either complete or absent, never half written."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins import TorchCheckpointIO

from ssvae.io import atomic_write

log = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Save each checkpoint to a temporary file beside its target, fsync it, then rename it.

    Lightning's own save stages the file in the system temporary directory and moves
    it, which copies (and is not atomic) when that directory is on another file
    system. Here a killed process leaves at most a hidden ``.<name>.*.tmp`` file,
    which nothing that looks for ``*.ckpt`` picks up, and the previous checkpoint
    under the target name stays intact.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        atomic_write(path, lambda handle: torch.save(checkpoint, handle), mode="wb")
        log.debug("checkpoint written to %s", path)
