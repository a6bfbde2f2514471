"""LightningModule: the mixture VAE, its semi-supervised objective and the optimiser."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch import nn

from ssvae.augment import random_affine
from ssvae.losses import LossWeights, consistency_loss, objective
from ssvae.models import MixtureVAE, VAEOutput


def _parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Decay weight matrices only; biases, pi logits and embeddings stay undecayed."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        is_matrix = parameter.dim() >= 2 and not name.endswith("component_embeddings")
        (decay if is_matrix else no_decay).append(parameter)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def _fused_adamw_available(model: nn.Module) -> bool:
    """Whether every parameter sits where torch has a fused AdamW kernel.

    The fused step updates all parameters in one kernel: on a CPU it takes a third of
    the time of the per-tensor loop, with the same result.
    """
    devices = {parameter.device.type for parameter in model.parameters()}
    # CPU kernels exist from torch 2.4, CUDA ones from 2.0.
    return devices == {"cuda"} or (devices == {"cpu"} and torch.__version__ >= "2.4")


class TermSums:
    """Per-stage running sums of the loss terms, weighted by batch size, on their device.

    One stacked add per step replaces a ``self.log`` call per term and step, each of
    which costs far more than the add on a CPU.
    """

    def __init__(self) -> None:
        self._sums: dict[str, tuple[tuple[str, ...], torch.Tensor, int]] = {}

    def reset(self, stage: str) -> None:
        self._sums.pop(stage, None)

    def has(self, stage: str) -> bool:
        return stage in self._sums

    def add(self, stage: str, terms: dict[str, torch.Tensor], batch_size: int) -> None:
        """Add one batch's (scalar) terms, each times ``batch_size``."""
        names = tuple(terms)
        values = torch.stack([value.detach() for value in terms.values()]) * batch_size  # (T,)
        if stage not in self._sums:
            self._sums[stage] = (names, values, batch_size)
            return
        known, sums, count = self._sums[stage]
        if names != known:
            raise ValueError(f"{stage} terms changed within an epoch: {known} -> {names}")
        self._sums[stage] = (names, sums + values, count + batch_size)

    def means(self, stage: str) -> tuple[dict[str, torch.Tensor], int]:
        """``({term: mean over the stage's samples so far}, number of samples)``."""
        names, sums, count = self._sums[stage]
        return dict(zip(names, sums / count)), count


class SemiSupervisedVAE(pl.LightningModule):
    """Trains :class:`~ssvae.models.MixtureVAE` on batches of ``(images, targets)``.

    Logs every loss term as ``train/<term>_step`` (every ``log_every_n_steps``
    steps), ``train/<term>_epoch`` and ``val/<term>`` (sample-weighted epoch means,
    accumulated on the device and logged once per epoch), and keeps the validation
    component usage of the current epoch in :attr:`val_usage` for the
    mixture-evolution history.

    Args:
        input_dim: Pixels per image D.
        num_classes: Number of classes C.
        model: Keyword arguments of :class:`~ssvae.models.MixtureVAE` (prior included).
        loss: Keyword arguments of :class:`~ssvae.losses.LossWeights`.
        optimizer: ``lr`` and ``weight_decay`` of AdamW.
    """

    def __init__(
        self,
        input_dim: int,
        num_classes: int,
        model: dict,
        loss: dict,
        optimizer: dict,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = MixtureVAE(input_dim=input_dim, num_classes=num_classes, **model)
        self.loss_weights = LossWeights(**loss)
        self.optimizer_options = dict(optimizer)
        self.val_usage: torch.Tensor | None = None
        self._usage_sum: torch.Tensor | None = None
        self._usage_count = 0
        self._term_sums = TermSums()

    def forward(self, images: torch.Tensor):
        return self.model(images)

    def _shared_step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> dict:
        images, targets = batch
        output = self.model(images)
        terms = objective(
            images,
            targets,
            recon_logits=output.recon_logits,
            mu=output.mu,
            logvar=output.logvar,
            class_logits=output.class_logits,
            weights=self.loss_weights,
            epoch=self.current_epoch,
            component_logits=output.component_logits,
            log_pi=self.model.log_pi(),
        )
        if stage == "train" and self.loss_weights.consistency_weight > 0:
            self._add_consistency(terms, images, output)
        self._term_sums.add(stage, terms, len(images))
        return {"terms": terms, "output": output}

    def _add_consistency(self, terms: dict, images: torch.Tensor, output: VAEOutput) -> None:
        """Add the consistency term (training only): predictions on a jittered view of
        the batch should match those on the batch itself."""
        weights = self.loss_weights
        jittered = self.model.heads(random_affine(images, weights.jitter))
        threshold = weights.consistency_threshold
        consistency = consistency_loss(output.class_logits, jittered.class_logits, threshold)
        if output.component_logits is not None:
            consistency = consistency + consistency_loss(
                output.component_logits, jittered.component_logits, threshold
            )
        terms["consistency"] = consistency
        terms["loss"] = terms["loss"] + weights.consistency_weight * consistency

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> dict:
        """The loss to optimise, plus every term (detached) for the non-finite loss guard."""
        terms = self._shared_step(batch, "train")["terms"]
        every_n_steps = self.trainer.log_every_n_steps
        # The logger writes step values only every n steps; logging them on the other
        # steps would cost a self.log call per term for nothing.
        if every_n_steps and (self.global_step + 1) % every_n_steps == 0:
            self.log_dict(
                {f"train/{name}_step": value.detach() for name, value in terms.items()},
                on_step=True,
                on_epoch=False,
                sync_dist=True,
            )
        # Logged here rather than in on_train_epoch_end, which runs after the callbacks'
        # hook of the same name (TrainingHistory reads the epoch values there).
        if batch_idx + 1 == self.trainer.num_training_batches:
            self._log_epoch_means("train", suffix="_epoch")
        return {"loss": terms["loss"], "terms": {k: v.detach() for k, v in terms.items()}}

    def on_train_epoch_start(self) -> None:
        self._term_sums.reset("train")

    def _log_epoch_means(self, stage: str, suffix: str = "") -> None:
        """Log the epoch means of one stage's terms, exact over all data-parallel ranks."""
        means, count = self._term_sums.means(stage)
        # With batch_size=count, Lightning's cross-rank reduction is the sample-weighted
        # mean of the ranks' means: the mean over every sample of the epoch.
        self.log_dict(
            {f"{stage}/{name}{suffix}": value for name, value in means.items()},
            on_step=False,
            on_epoch=True,
            sync_dist=True,
            batch_size=count,
        )

    def on_validation_epoch_start(self) -> None:
        self._usage_sum, self._usage_count = None, 0
        self._term_sums.reset("val")

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        output = self._shared_step(batch, "val")["output"]
        if output.component_logits is not None:
            responsibilities = torch.softmax(output.component_logits, dim=-1).sum(0)  # (K,)
            self._usage_sum = (
                responsibilities if self._usage_sum is None else self._usage_sum + responsibilities
            )
            self._usage_count += len(batch[0])

    def on_validation_epoch_end(self) -> None:
        if self._term_sums.has("val"):
            self._log_epoch_means("val")
        if self._usage_sum is None:
            return
        count = torch.tensor(float(self._usage_count), device=self._usage_sum.device)
        usage_sum = self.trainer.strategy.reduce(self._usage_sum, reduce_op="sum")
        count = self.trainer.strategy.reduce(count, reduce_op="sum")
        self.val_usage = (usage_sum / count).detach().cpu()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(
            _parameter_groups(self.model, self.optimizer_options["weight_decay"]),
            lr=self.optimizer_options["lr"],
            fused=_fused_adamw_available(self.model) or None,
        )

    def pi(self) -> torch.Tensor | None:
        """Current mixture weights, shape ``(K,)``; None for the standard prior."""
        log_pi = self.model.log_pi()
        return None if log_pi is None else log_pi.exp().detach().cpu()
