"""Data sources beyond the embedded subset: full MNIST via OpenML, Fashion-MNIST, ``all``."""

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from idx_data import make_images
from matplotlib import pyplot as plt
from openml_cache import write_openml_cache

from ssvae.config import ConfigError, validate_config
from ssvae.data import openml
from ssvae.data.base import DataError
from ssvae.data.sources import load_source, prepare_source
from ssvae.evaluation import Predictions, evaluate_test_split
from ssvae.report.figures import latent_scatter

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip

#: Any connection attempt is refused at once: the tests never reach the real OpenML.
OFFLINE = {
    "http_proxy": "http://127.0.0.1:9",
    "https_proxy": "http://127.0.0.1:9",
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "no_proxy": "",
    "NO_PROXY": "",
}


@pytest.fixture
def offline(monkeypatch):
    for key, value in OFFLINE.items():
        monkeypatch.setenv(key, value)


def fake_mnist(cache: Path, per_class: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """A stand-in for mnist_784 in scikit-learn's cache; returns its (N, D) images and labels."""
    images, labels = make_images(per_class, seed=3)
    images = images.reshape(len(images), -1)
    write_openml_cache(cache, images, labels)
    return images, labels


def test_prefilled_openml_cache_loads_offline(tmp_path, offline):
    images, labels = fake_mnist(tmp_path)
    options = {"cache_dir": str(tmp_path), "test_size": 100, "download_timeout_s": 60}
    prepare_source("mnist", **options)
    assert (tmp_path / "mnist.npz").is_file()

    data = load_source("mnist", num_classes=10, **options)
    assert data.train_images.shape == (300, 64) and data.test_images.shape == (100, 64)
    np.testing.assert_allclose(data.train_images * 255, images[:300], atol=1e-4)
    np.testing.assert_array_equal(data.test_labels, labels[300:])


def test_converted_cache_is_read_without_fetching(tmp_path, monkeypatch):
    images, labels = make_images(5, seed=4)
    np.savez(tmp_path / "mnist.npz", images=images.reshape(50, -1), labels=labels)

    def no_fetch(cache):
        raise AssertionError("fetch_openml must not run when mnist.npz exists")

    monkeypatch.setattr(openml, "_fetch_openml", no_fetch)
    prepare_source("mnist", cache_dir=str(tmp_path))
    data = load_source("mnist", num_classes=10, cache_dir=str(tmp_path), test_size=10)
    assert len(data.train_labels) == 40 and data.num_test == 10


def test_stalled_download_gives_up_at_the_deadline(tmp_path, monkeypatch):
    monkeypatch.setattr(openml, "_fetch_openml", lambda cache: time.sleep(60))
    started = time.monotonic()
    with pytest.raises(DataError, match="no answer within download_timeout_s=0.5 s"):
        prepare_source("mnist", cache_dir=str(tmp_path), download_timeout_s=0.5)
    assert time.monotonic() - started < 10


def test_load_without_cache_names_the_cache_and_the_embedded_subset(tmp_path):
    with pytest.raises(DataError, match="data=mnist5k") as error:
        load_source("mnist", cache_dir=str(tmp_path))
    assert str(tmp_path / "mnist.npz") in str(error.value)


def test_train_on_mnist_from_a_prefilled_cache(train_tiny, tmp_path):
    fake_mnist(tmp_path / "cache")
    result = train_tiny(
        "data=mnist",
        f"data.source_options.cache_dir={tmp_path / 'cache'}",
        "data.source_options.test_size=100",
        "num_samples=all",
        env=OFFLINE,
    )
    assert result.returncode == 0, result.output
    summary = result.summary()
    assert round(summary["classification"]["accuracy_test"] * 100, 6).is_integer()
    assert summary["clustering"]["nmi_test"] is not None
    assert summary["experiment"]["num_samples"] == "all"


def test_train_on_mnist_offline_without_cache_fails_at_once(train_tiny, tmp_path):
    cache = tmp_path / "empty-cache"
    started = time.monotonic()
    result = train_tiny(
        "data=mnist",
        f"data.source_options.cache_dir={cache}",
        "data.source_options.download_timeout_s=60",
        env=OFFLINE,
    )
    assert result.returncode == 2, result.output
    errors = [line for line in result.output.splitlines() if "ERROR" in line]
    assert len(errors) == 1, result.output
    assert f"full MNIST is not cached at {cache / 'mnist.npz'}" in errors[0]
    assert "data=mnist5k" in errors[0]
    assert time.monotonic() - started < 300, "the failure must not wait for a long timeout"
    assert result.summary()["status"] == "failed"


def compose(overrides):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    conf = str(Path(__file__).resolve().parents[1] / "conf")
    with initialize_config_dir(config_dir=conf, version_base="1.3"):
        return hydra_compose("config", overrides=overrides)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["num_samples=most"], "num_samples='most': must be an integer >= 1 or 'all'"),
        (["num_samples=all", "num_labeled=-1"], "num_labeled=-1: must be >= 0"),
        (["data=idx"], "data.path: a value is required"),
        (["data.num_classes=5"], "data.class_names: 10 names for data.num_classes=5"),
    ],
)
def test_invalid_data_settings_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate_config(compose(overrides))


def test_all_and_the_data_configs_validate():
    for overrides in (["num_samples=all"], ["data=mnist"], ["data=fashion_mnist"]):
        validate_config(compose(overrides))
    cfg = compose(["data=fashion_mnist"])
    assert tuple(cfg.data.class_names) == FASHION_CLASSES
    assert cfg.data.path == str(FASHION_DIR)


def test_latent_legend_uses_class_names():
    mu = np.random.default_rng(0).normal(size=(40, 2))
    figure = latent_scatter(mu, np.arange(40) % 10, "by class", FASHION_CLASSES)
    texts = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    plt.close(figure)
    assert texts == list(FASHION_CLASSES)


@pytest.mark.slow
def test_short_real_fashion_mnist_training(train_tiny):
    if not (FASHION_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(
            f"Fashion-MNIST not found in {FASHION_DIR}; "
            "install it with: apt-get install dataset-fashion-mnist"
        )
    result = train_tiny("data=fashion_mnist", "num_samples=1000", "num_labeled=50")
    assert result.returncode == 0, result.output
    summary = result.summary()
    # The whole 10000-image test split is evaluated.
    assert round(summary["classification"]["accuracy_test"] * 10_000, 4).is_integer()
    assert 0 <= summary["clustering"]["nmi_test"] <= 1
    assert set(summary["mixture"]["component_majority_classes"]) <= set(FASHION_CLASSES)
    report = (result.run_dir / "REPORT.md").read_text()
    assert "| Component Majority Classes |" in report


def predictions_for(classes: list[int], components: list[int]) -> Predictions:
    """Predictions whose head says ``classes`` and whose q(c|x) is one-hot on ``components``."""
    count = len(classes)
    return Predictions(
        mu=torch.zeros(count, 2),
        class_probabilities=torch.nn.functional.one_hot(torch.tensor(classes), 3).float(),
        responsibilities=torch.nn.functional.one_hot(torch.tensor(components), 4).float(),
        classification_loss=torch.zeros(count),
    )


@pytest.mark.parametrize("source", ["classifier_head", "components"])
def test_test_split_scores_use_pool_labels_for_the_component_map(source):
    # Pool: components 0, 1, 2 hold labelled classes 2, 0, 1; component 3 is unused.
    pool = predictions_for([0, 0, 0, 0], components=[0, 1, 2, 0])
    pool_labels, labeled = torch.tensor([2, 0, 1, 2]), torch.tensor([0, 1, 2])
    # Test: the head is right 2 of 4 times; the components map to the right class 3 of 4.
    test = predictions_for([2, 1, 0, 0], components=[0, 1, 2, 2])
    test_labels = torch.tensor([2, 0, 1, 0])
    classification, clustering = evaluate_test_split(
        pool, test, pool_labels, labeled, test_labels, 3, source
    )
    assert classification["accuracy_components_test"] == pytest.approx(0.75)
    expected = 0.75 if source == "components" else 0.5
    assert classification["accuracy_test"] == pytest.approx(expected)
    assert ("accuracy_head_test" in classification) == (source == "components")
    assert clustering["cluster_accuracy_test"] == pytest.approx(0.75)
    assert set(clustering) == {"nmi_test", "ari_test", "cluster_accuracy_test"}
