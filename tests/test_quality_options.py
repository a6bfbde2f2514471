"""Options that raise classification accuracy: each changes what it claims to change."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from ssvae.augment import AffineJitter, image_side, random_affine
from ssvae.config import ConfigError, validate_config
from ssvae.evaluation import Predictions, classification_summary
from ssvae.losses import UNLABELED, LossWeights, consistency_loss, objective
from ssvae.models import MixtureVAE
from ssvae.module import SemiSupervisedVAE

NUM_CLASSES = 4
ROOT = Path(__file__).resolve().parents[1]


def tiny_module(**loss: float) -> SemiSupervisedVAE:
    torch.manual_seed(0)
    return SemiSupervisedVAE(
        input_dim=16,
        num_classes=NUM_CLASSES,
        model={"latent_dim": 2, "hidden_dims": [16], "num_components": NUM_CLASSES},
        loss={"kl_weight": 0.5, "kl_c_weight": 0.001, **loss},
        optimizer={"lr": 1e-2, "weight_decay": 0.0},
    )


def labelled_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """32 random 4x4 images, half labelled with random labels only supervision can fit."""
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(32, 16, generator=generator)
    targets = torch.randint(NUM_CLASSES, (32,), generator=generator)
    targets[16:] = UNLABELED
    return images, targets


def class_responsibility(module: SemiSupervisedVAE, images, targets) -> float:
    """Mean q(c = y | x) over the labelled samples, evaluation mode."""
    module.eval()
    with torch.no_grad():
        responsibilities = torch.softmax(module.model(images).component_logits, -1)
    labelled = targets != UNLABELED
    return float(responsibilities[labelled].gather(1, targets[labelled, None]).mean())


def fit(module: SemiSupervisedVAE, images, targets, steps: int = 150) -> None:
    optimizer = module.configure_optimizers()
    module.log_dict = lambda *args, **kwargs: None  # no Trainer attached
    module.train()
    for _ in range(steps):
        loss = module._shared_step((images, targets), "train")["terms"]["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


@pytest.fixture
def one_thread():
    """Tiny models step in microseconds; extra intra-op threads only wait on a busy CPU."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def test_component_supervision_moves_responsibilities_to_the_class(one_thread):
    images, targets = labelled_batch()
    supervised, unsupervised = tiny_module(component_label_weight=1.0), tiny_module()
    fit(supervised, images, targets)
    fit(unsupervised, images, targets)
    assert class_responsibility(supervised, images, targets) > 0.8
    assert class_responsibility(unsupervised, images, targets) < 0.5


def test_component_term_is_zero_weighted_unless_asked_for():
    images, targets = labelled_batch()
    module = tiny_module()
    output = module.model(images)
    common = dict(
        recon_logits=output.recon_logits,
        mu=output.mu,
        logvar=output.logvar,
        class_logits=output.class_logits,
        epoch=0,
        component_logits=output.component_logits,
        log_pi=module.model.log_pi(),
    )
    off = objective(images, targets, weights=LossWeights(), **common)
    on = objective(images, targets, weights=LossWeights(component_label_weight=2.0), **common)
    assert "component_classification_loss" not in off
    expected = off["loss"] + 2.0 * on["component_classification_loss"]
    assert torch.allclose(on["loss"], expected)


def test_unlabeled_ratio_scales_both_label_terms():
    weights = LossWeights(
        label_weight=1.0,
        component_label_weight=0.5,
        label_weight_scaling="unlabeled_ratio",
        unlabeled_ratio=44.0,
    )
    assert weights.label_scale == 44.0
    assert LossWeights(unlabeled_ratio=44.0).label_scale == 1.0  # constant: ratio ignored

    images, targets = labelled_batch()
    output = tiny_module().model(images)
    common = dict(
        recon_logits=output.recon_logits,
        mu=output.mu,
        logvar=output.logvar,
        class_logits=output.class_logits,
        epoch=0,
        component_logits=output.component_logits,
        log_pi=None,
    )
    scaled = objective(images, targets, weights=weights, **common)
    plain = objective(images, targets, weights=LossWeights(component_label_weight=0.5), **common)
    label_terms = plain["classification_loss"] + 0.5 * plain["component_classification_loss"]
    assert torch.allclose(scaled["loss"] - plain["loss"], 43.0 * label_terms)


def test_kl_warmup_ramps_the_kl_weight():
    mu, logvar = torch.ones(8, 2), torch.zeros(8, 2)
    images, targets = torch.rand(8, 16), torch.full((8,), UNLABELED)
    weights = LossWeights(kl_weight=0.5, kl_warmup_epochs=4)
    weighted = [
        float(
            objective(
                images,
                targets,
                torch.zeros(8, 16),
                mu,
                logvar,
                torch.zeros(8, NUM_CLASSES),
                weights,
                epoch=epoch,
            )["kl_z_weighted"]
        )
        for epoch in range(6)
    ]
    full = 0.5 * 1.0  # kl_weight * KL(N(1, 1) || N(0, I)) per dimension pair = 0.5 * (2 * 0.5)
    assert weighted == pytest.approx([full / 4, full / 2, 3 * full / 4, full, full, full])


def test_jitter_moves_the_digit_and_keeps_its_mass():
    image = torch.zeros(1, 28, 28)
    image[0, 10:18, 12:16] = 1.0
    flat = image.view(1, -1).repeat(64, 1)
    assert torch.allclose(random_affine(flat, AffineJitter(0.0, 0.0, 0.0)), flat, atol=1e-5)

    moved = random_affine(flat, AffineJitter(max_shift=3.0, max_rotation=10.0, max_scale=0.1))
    assert not torch.allclose(moved, flat, atol=0.1)
    assert torch.allclose(moved.sum(1), flat.sum(1), rtol=0.25)  # the digit stays in frame
    assert image_side(784) == 28
    with pytest.raises(ValueError, match="square"):
        image_side(780)


def test_consistency_loss_pulls_only_the_jittered_view():
    clean = torch.tensor([[2.0, 0.0, -1.0]], requires_grad=True)
    jittered = torch.tensor([[0.0, 1.0, 0.0]], requires_grad=True)
    assert float(consistency_loss(clean, clean.detach().clone())) == pytest.approx(0.0, abs=1e-6)
    loss = consistency_loss(clean, jittered)
    loss.backward()
    assert float(loss) > 0
    assert clean.grad is None or torch.all(clean.grad == 0)
    assert jittered.grad.abs().sum() > 0


def test_consistency_term_enters_the_training_loss_only():
    images = torch.rand(8, 16)
    targets = torch.full((8,), UNLABELED)
    module = tiny_module(consistency_weight=5.0, consistency_shift=1.0)
    module.log_dict = lambda *args, **kwargs: None
    torch.manual_seed(0)
    train_terms = module._shared_step((images, targets), "train")["terms"]
    assert float(train_terms["consistency"]) > 0
    val_terms = module._shared_step((images, targets), "val")["terms"]
    assert "consistency" not in val_terms


def test_conv_encoder_replaces_the_mlp_encoder():
    model = MixtureVAE(784, 10, latent_dim=8, hidden_dims=[64, 32], encoder_type="conv")
    assert any(isinstance(layer, torch.nn.Conv2d) for layer in model.encoder)
    output = model(torch.rand(5, 784))
    assert output.mu.shape == (5, 8) and output.recon_logits.shape == (5, 10, 784)
    # The decoder stays the mirrored MLP.
    widths = [layer.out_features for layer in model.decoder if hasattr(layer, "out_features")]
    assert widths == [32, 64, 784]
    with pytest.raises(ValueError, match="square"):
        MixtureVAE(780, 10, encoder_type="conv")


def test_accuracy_through_components():
    """accuracy follows the components when asked; the head moves to accuracy_head."""
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    responsibilities = torch.nn.functional.one_hot(labels, NUM_CLASSES).float()
    wrong_head = torch.nn.functional.one_hot((labels + 1) % NUM_CLASSES, NUM_CLASSES).float()
    predictions = Predictions(torch.zeros(8, 2), wrong_head, responsibilities, torch.zeros(8))
    labeled, val = torch.tensor([0, 1, 2, 3]), torch.tensor([4, 5])
    head = classification_summary(predictions, labels, labeled, val, NUM_CLASSES)
    components = classification_summary(
        predictions, labels, labeled, val, NUM_CLASSES, accuracy_source="components"
    )
    assert head["accuracy"] == 0.0 and head["accuracy_source"] == "classifier_head"
    assert components["accuracy"] == 1.0 and components["accuracy_unlabeled"] == 1.0
    assert components["accuracy_head"] == 0.0
    assert components["accuracy_source"] == "components"


def test_options_reach_the_model_through_train_py(train_tiny):
    result = train_tiny(
        "threads=1",
        "loss.component_label_weight=1.0",
        "loss.label_weight_scaling=unlabeled_ratio",
        "loss.kl_warmup_epochs=3",
        "loss.consistency_weight=1.0",
        "loss.consistency_threshold=0.5",
        "model.encoder_type=conv",
        "evaluation.accuracy_source=components",
    )
    assert result.returncode == 0, result.output
    summary = result.summary()
    assert summary["classification"]["accuracy_source"] == "components"
    assert "accuracy_head" in summary["classification"]

    with open(result.run_dir / "logs" / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    header = set(rows[0])
    for term in ("component_classification_loss", "consistency", "kl_z_weighted"):
        assert f"train/{term}_epoch" in header, term
    # kl_weight 0.5 warmed up over 3 epochs: epoch 0 uses 1/3 of it.
    first = next(row for row in rows if row.get("train/kl_z_epoch"))
    ratio = float(first["train/kl_z_weighted_epoch"]) / float(first["train/kl_z_epoch"])
    assert ratio == pytest.approx(0.5 / 3, rel=1e-3)

    checkpoint = torch.load(
        result.run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False
    )
    loss = checkpoint["hyper_parameters"]["loss"]
    # TINY: 300 samples, 20 labelled, 10% of the 280 unlabelled held out -> 252 / 20.
    assert loss["unlabeled_ratio"] == pytest.approx(252 / 20)


def compose_config(overrides: list[str]):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=overrides)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["loss.component_label_weight=1", "prior.num_components=5"],
            "loss.component_label_weight=1: supervising the components needs prior=mixture "
            "with prior.num_components == data.num_classes (10)",
        ),
        (["loss.component_label_weight=1", "prior=standard"], "loss.component_label_weight=1"),
        (["loss.label_weight_scaling=huge"], "loss.label_weight_scaling='huge': must be one of"),
        (
            ["evaluation.accuracy_source=components", "prior=standard"],
            "evaluation.accuracy_source=components: needs prior=mixture",
        ),
        (["loss.consistency_weight=-1"], "loss.consistency_weight=-1: must be >= 0"),
        (["loss.consistency_threshold=1.5"], "loss.consistency_threshold=1.5: must be in [0, 1)"),
        (["loss.kl_warmup_epochs=-2"], "loss.kl_warmup_epochs=-2: must be >= 0"),
        (["model.encoder_type=resnet"], "model.encoder_type='resnet': must be one of mlp, conv"),
    ],
)
def test_inconsistent_options_name_the_key(overrides, message):
    with pytest.raises(ConfigError) as raised:
        validate_config(compose_config(overrides))
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_inconsistent_options_fail_before_training(train_tiny):
    result = train_tiny("loss.component_label_weight=1", "prior.num_components=5")
    assert result.returncode == 2
    assert "loss.component_label_weight=1" in result.output
    assert not (result.run_dir / "checkpoints").exists()
