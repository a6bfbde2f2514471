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


class SemiSupervisedVAE(pl.LightningModule):
    """Trains :class:`~ssvae.models.MixtureVAE` on batches of ``(images, targets)``.

    Logs every loss term under ``train/<term>`` and ``val/<term>``, and keeps the
    validation component usage of the current epoch in :attr:`val_usage` for the
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
        self.log_dict(
            {f"{stage}/{name}": value.detach() for name, value in terms.items()},
            on_step=stage == "train",
            on_epoch=True,
            sync_dist=True,
            batch_size=len(images),
        )
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
        return {"loss": terms["loss"], "terms": {k: v.detach() for k, v in terms.items()}}

    def on_validation_epoch_start(self) -> None:
        self._usage_sum, self._usage_count = None, 0

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        output = self._shared_step(batch, "val")["output"]
        if output.component_logits is not None:
            responsibilities = torch.softmax(output.component_logits, dim=-1).sum(0)  # (K,)
            self._usage_sum = (
                responsibilities if self._usage_sum is None else self._usage_sum + responsibilities
            )
            self._usage_count += len(batch[0])

    def on_validation_epoch_end(self) -> None:
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
        )

    def pi(self) -> torch.Tensor | None:
        """Current mixture weights, shape ``(K,)``; None for the standard prior."""
        log_pi = self.model.log_pi()
        return None if log_pi is None else log_pi.exp().detach().cpu()
