"""Cost of the non-finite loss guard per training step, against the step itself.

The guard stacks the loss terms of each step into an on-device flag row and reads the
flags back every ``--check-every`` steps. This times one optimiser step of the default
model (batch 128, mixture prior, K=10) and the guard's per-step work, both on the same
device, and prints the ratio::

    python benchmarks/guard_overhead.py
    python benchmarks/guard_overhead.py --device cuda --check-every 25
"""

from __future__ import annotations

import argparse
import time
from types import SimpleNamespace

import torch

from ssvae.guards import NonFiniteLossGuard
from ssvae.losses import LossWeights, objective
from ssvae.models import MixtureVAE


def _seconds_per_call(function, repeats: int, device: torch.device) -> float:
    for _ in range(3):  # warm-up
        function()
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(repeats):
        function()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - started) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--check-every", type=int, default=1)
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()
    device = torch.device(args.device)

    model = MixtureVAE(input_dim=784, num_classes=10).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    weights = LossWeights(kl_weight=0.5, kl_c_weight=0.001, usage_weight=-0.05, dirichlet_alpha=5)
    images = torch.rand(128, 784, device=device)
    targets = torch.full((128,), -1, device=device)
    targets[:4] = torch.arange(4, device=device)

    def train_step() -> dict[str, torch.Tensor]:
        output = model(images)
        terms = objective(
            images, targets, output.recon_logits, output.mu, output.logvar,
            output.class_logits, weights, epoch=0, component_logits=output.component_logits,
            log_pi=model.log_pi(),
        )  # fmt: skip
        optimizer.zero_grad()
        terms["loss"].backward()
        optimizer.step()
        return {"loss": terms["loss"], "terms": {k: v.detach() for k, v in terms.items()}}

    outputs = train_step()
    guard = NonFiniteLossGuard(check_every_n_steps=args.check_every)
    trainer = SimpleNamespace(
        global_step=1,
        current_epoch=0,
        strategy=SimpleNamespace(reduce=lambda tensor, reduce_op: tensor),
    )
    step = _seconds_per_call(train_step, args.steps, device)
    check = _seconds_per_call(
        lambda: guard.on_train_batch_end(trainer, None, outputs, None, 0), 20 * args.steps, device
    )
    print(
        f"{device.type}: training step {step * 1e3:.2f} ms, guard {check * 1e6:.1f} us per step "
        f"(flags read every {args.check_every} steps): {100 * check / step:.2f}% of a step"
    )


if __name__ == "__main__":
    main()
