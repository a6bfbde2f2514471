"""Faults injected into real ``train.py`` runs through Hydra, as extra Lightning callbacks.

Used as, e.g., ``+callbacks.fault._target_=tests.faults.PoisonClassifier``; nothing in
the package knows about them.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytorch_lightning as pl
import torch


class PoisonClassifier(pl.Callback):
    """Set the classifier's output weights to NaN just before training step ``at_step``.

    Only the labelled cross-entropy (and so the total loss) becomes non-finite: the
    classifier head reads z but feeds nothing else.
    """

    def __init__(self, at_step: int) -> None:
        self.at_step = at_step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.at_step:
            with torch.no_grad():
                pl_module.model.classifier[-1].weight.fill_(float("nan"))


class SlowBatches(pl.Callback):
    """Sleep after every training batch, so a test can signal a run mid-training."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        time.sleep(self.seconds)


class KillWhileWriting(pl.Callback):
    """SIGKILL the process inside the atomic write of ``file_name``, after its bytes are out.

    Armed when fitting ends, just before the report is written: the fsync of the
    temporary file beside ``file_name`` is where the process dies, as a scheduler's
    SIGKILL would strike it, with the temporary file full but not yet renamed.
    """

    def __init__(self, file_name: str) -> None:
        self.file_name = file_name

    def on_fit_end(self, trainer, pl_module) -> None:
        real_fsync = os.fsync
        prefix = f".{self.file_name}."

        def fsync_then_die(descriptor: int) -> None:
            real_fsync(descriptor)
            if Path(os.readlink(f"/proc/self/fd/{descriptor}")).name.startswith(prefix):
                os.kill(os.getpid(), signal.SIGKILL)

        os.fsync = fsync_then_die
