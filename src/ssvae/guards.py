"""Stop training on the first non-finite loss, before it reaches a checkpoint.

A NaN or infinite loss poisons the weights through the optimiser step that
follows it, so every later epoch and checkpoint is worthless. The guard records
which loss terms were finite at every training step in a small on-device
buffer (no host synchronisation), and reads the buffer back every
``check_every_n_steps`` steps, before every validation and at the end of every
training epoch: always before a checkpoint can be saved. The step that went
wrong is recovered exactly from the buffer, whenever it is read.
"""

from __future__ import annotations

import logging
from typing import Any

import pytorch_lightning as pl
import torch

log = logging.getLogger(__name__)

#: Steps between two reads of the flags when a read would stall an accelerator.
ACCELERATOR_CHECK_EVERY_N_STEPS = 25


class NonFiniteLossError(RuntimeError):
    """A training loss term was NaN or infinite.

    Attributes:
        details: ``epoch``, ``step`` (global optimiser step, from 0), ``batch`` (index
            within the epoch) and ``non_finite_terms`` (names of the terms), for summary.json.
    """

    def __init__(self, epoch: int, step: int, batch: int, terms: list[str]) -> None:
        self.details = {
            "kind": "non_finite_loss",
            "epoch": epoch,
            "step": step,
            "batch": batch,
            "non_finite_terms": terms,
        }
        super().__init__(
            f"non-finite loss at epoch {epoch}, step {step} (batch {batch}): {', '.join(terms)}"
        )


class NonFiniteLossGuard(pl.Callback):
    """Raise :class:`NonFiniteLossError` as soon as a training loss term is not finite.

    Expects ``training_step`` to return ``{"loss": ..., "terms": {name: scalar tensor}}``
    (a plain loss tensor is checked as the single term ``loss``).

    Args:
        check_every_n_steps: Steps between reads of the on-device flags. ``None`` reads
            them every step in a single CPU process (where a read costs nothing) and every
            :data:`ACCELERATOR_CHECK_EVERY_N_STEPS` steps otherwise. Unread flags are
            always read before validation and at the end of each training epoch.
    """

    def __init__(self, check_every_n_steps: int | None = None) -> None:
        if check_every_n_steps is not None and check_every_n_steps < 1:
            raise ValueError(f"check_every_n_steps={check_every_n_steps}: must be >= 1")
        self.check_every_n_steps = check_every_n_steps
        self._names: list[str] = []
        self._flags: list[torch.Tensor] = []  # one (T,) bool tensor per unchecked step
        self._first_step = 0
        self._first_batch = 0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.check_every_n_steps is None:
            single_cpu = trainer.world_size == 1 and pl_module.device.type == "cpu"
            self.check_every_n_steps = 1 if single_cpu else ACCELERATOR_CHECK_EVERY_N_STEPS
        log.debug("checking loss terms every %d steps", self.check_every_n_steps)

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        terms = _terms(outputs)
        if not terms:
            return
        if not self._flags:
            # global_step has already counted this batch's optimiser step.
            self._first_step, self._first_batch = trainer.global_step - 1, batch_idx
            self._names = list(terms)
        self._flags.append(~torch.isfinite(torch.stack([terms[name] for name in self._names])))
        if len(self._flags) >= self.check_every_n_steps:
            self._check(trainer)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._check(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._check(trainer)

    def _check(self, trainer: pl.Trainer) -> None:
        if not self._flags:
            return
        flags = torch.stack(self._flags).to(torch.int32)  # (steps, T)
        self._flags = []
        # Every rank must take the same decision, or the others wait forever.
        flags = trainer.strategy.reduce(flags, reduce_op="sum")
        bad_steps = flags.any(dim=1).nonzero()
        if len(bad_steps) == 0:
            return
        offset = int(bad_steps[0])
        names = [name for name, bad in zip(self._names, flags[offset].tolist()) if bad]
        raise NonFiniteLossError(
            epoch=trainer.current_epoch,
            step=self._first_step + offset,
            batch=self._first_batch + offset,
            terms=names,
        )


def _terms(outputs: Any) -> dict[str, torch.Tensor]:
    """The scalar loss terms of a training step's output, by name."""
    if isinstance(outputs, torch.Tensor):
        return {"loss": outputs.detach()}
    if not isinstance(outputs, dict):
        return {}
    terms = outputs.get("terms")
    if isinstance(terms, dict) and terms:
        return {name: value.detach().float().reshape(()) for name, value in terms.items()}
    loss = outputs.get("loss")
    return {} if loss is None else {"loss": loss.detach().float().reshape(())}
