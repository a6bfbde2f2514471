"""A callback that records, for every training batch the model receives, whose labels it holds."""

from __future__ import annotations

import json
from pathlib import Path

import pytorch_lightning as pl
import torch

from ssvae.losses import UNLABELED


class BatchSpy(pl.Callback):
    """Identify each row of each training batch by its pixels and check its target.

    Written to ``output`` as JSON after training: per batch, the number of rows with a
    visible label, and the number of rows whose visible label belongs to a sample
    outside the labelled subset or differs from its true label (both must be 0).

    Args:
        output: Path of the JSON file to write.
    """

    def __init__(self, output: str) -> None:
        self.output = Path(output)
        self.batches: list[dict[str, int]] = []
        self._position_of: dict[bytes, int] | None = None

    def _positions(self, datamodule, images: torch.Tensor) -> list[int]:
        if self._position_of is None:
            rows = datamodule.images.numpy()
            self._position_of = {row.tobytes(): position for position, row in enumerate(rows)}
            assert len(self._position_of) == len(rows), "images must be distinct to identify rows"
        return [self._position_of[row.tobytes()] for row in images.cpu().numpy()]

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        images, targets = batch
        datamodule = trainer.datamodule
        labeled = set(datamodule.split.labeled.tolist())
        visible = leaked = 0
        for position, target in zip(self._positions(datamodule, images), targets.tolist()):
            if target == UNLABELED:
                continue
            visible += 1
            true_label = int(datamodule.evaluation_labels[position])
            leaked += position not in labeled or target != true_label
        self.batches.append({"size": len(targets), "labelled": visible, "leaked": leaked})

    def on_train_end(self, trainer, pl_module) -> None:
        self.output.write_text(json.dumps(self.batches))
