"""A callback that makes training fail partway through an epoch, as a crash would."""

from __future__ import annotations

import pytorch_lightning as pl


class CrashInEpoch(pl.Callback):
    """Raise at the second training batch of ``epoch`` (0-based), after earlier checkpoints.

    Args:
        epoch: The epoch in which to fail.
    """

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int
    ) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == 1:
            raise RuntimeError(f"simulated crash in epoch {self.epoch}")
