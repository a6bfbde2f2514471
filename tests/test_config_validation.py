"""Invalid configurations fail before training, with one line naming the key and the range."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from ssvae.config import ConfigError
from ssvae.pipeline import prepare_data

CONF = str(Path(__file__).resolve().parents[1] / "conf")

BAD_VALUES = [
    (["num_labeled=400", "num_samples=300"], "num_labeled=400: must be in [0, num_samples=300]"),
    (["num_samples=6000", "num_labeled=100"], "num_samples=6000: must be in [1, 5000]"),
    (["num_labeled=25"], "num_labeled=25: balanced label_sampling needs a multiple"),
    (["num_samples=30", "num_labeled=30"], "balanced label_sampling needs 3 samples of class"),
    (
        ["prior.type=gaussian_mixture"],
        "prior.type='gaussian_mixture': must be one of mixture, standard",
    ),
    (["loss.reconstruction=l1"], "loss.reconstruction='l1': must be one of bce, mse"),
    (["prior.num_components=0"], "prior.num_components=0: must be >= 1"),
    (["model.latent_dim=0"], "model.latent_dim=0: must be >= 1"),
    (["prior.dirichlet_alpha=0"], "prior.dirichlet_alpha=0: must be > 0"),
    (["prior.dirichlet_alpha=-1.5"], "prior.dirichlet_alpha=-1.5: must be > 0"),
    (["data.val_fraction=0"], "data.val_fraction=0: must be in (0, 1)"),
    (["data.val_fraction=1.2"], "data.val_fraction=1.2: must be in (0, 1)"),
    (["loss.kl_weight=-0.5"], "loss.kl_weight=-0.5: must be >= 0"),
    (["loss.label_weight=-1"], "loss.label_weight=-1: must be >= 0"),
    (["loss.recon_weight=-1"], "loss.recon_weight=-1: must be >= 0"),
    (["optimizer.lr=0"], "optimizer.lr=0: must be > 0"),
    (["trainer.max_epochs=0"], "trainer.max_epochs=0: must be >= 1"),
    (["data.label_sampling=stratified"], "data.label_sampling='stratified': must be one of"),
]


def compose_config(overrides: list[str]):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose("config", overrides=overrides)


@pytest.mark.parametrize(("overrides", "message"), BAD_VALUES)
def test_bad_values_name_the_key(overrides, message, data_cache, monkeypatch):
    monkeypatch.setenv("SSVAE_CACHE_DIR", str(data_cache))
    with pytest.raises(ConfigError) as raised:
        prepare_data(compose_config(overrides))
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_negative_usage_weight_is_allowed(data_cache, monkeypatch):
    monkeypatch.setenv("SSVAE_CACHE_DIR", str(data_cache))
    datamodule = prepare_data(
        compose_config(["loss.usage_weight=-0.3", "num_samples=200", "num_labeled=10"])
    )
    assert len(datamodule.split.labeled) == 10


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("prior.num_components=0", "prior.num_components=0"),
        ("num_labeled=6000", "num_labeled=6000"),
    ],
)
def test_train_py_exits_non_zero_before_training(train_tiny, override, message):
    result = train_tiny(override)
    assert result.returncode == 2
    error_lines = [line for line in result.output.splitlines() if "invalid configuration" in line]
    assert len(error_lines) == 1 and message in error_lines[0]
    assert not (result.run_dir / "checkpoints").exists()
    summary = result.summary()
    assert summary["status"] == "failed" and message in summary["error"]
