"""scikit-learn baselines: fitted on the run's labelled samples only, scored like the model."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from sklearn.linear_model import LogisticRegression
from sklearn.semi_supervised import LabelSpreading

from ssvae import baselines
from ssvae.baselines import BaselineOptions, accuracy_fields, run_baselines
from ssvae.config import ConfigError, validate_config
from ssvae.data.sources import load_mnist5k
from ssvae.data.split import make_split
from ssvae.evaluation import Predictions, classification_summary
from ssvae.report.markdown import render_report

ROOT = Path(__file__).resolve().parents[1]
ACCURACY_KEYS = {"accuracy", "accuracy_unlabeled", "accuracy_labeled", "accuracy_val"}


@pytest.fixture(scope="module")
def small_pool(tmp_path_factory):
    """400 MNIST-5k digits with 30 balanced labels, as a run would draw them."""
    data = load_mnist5k(str(tmp_path_factory.mktemp("cache")))
    split = make_split(data.train_labels, num_samples=400, num_labeled=30, seed=3)
    return data.train_images[split.pool], data.train_labels[split.pool], split


@pytest.fixture
def fit_spy(monkeypatch):
    """Record the (X, y) every baseline is fitted with."""
    seen: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def spy(cls, name):
        original = cls.fit

        def fit(self, X, y, *args, **kwargs):
            seen[name] = (np.array(X), np.array(y))
            return original(self, X, y, *args, **kwargs)

        monkeypatch.setattr(cls, "fit", fit)

    spy(LogisticRegression, "logistic_regression")
    spy(LabelSpreading, "label_spreading")
    return seen


def test_fits_see_only_the_labelled_samples(small_pool, fit_spy):
    images, labels, split = small_pool
    run_baselines(images, labels, split.labeled, split.val, BaselineOptions(), seed=0)

    X, y = fit_spy["logistic_regression"]
    np.testing.assert_array_equal(X, images[split.labeled])
    np.testing.assert_array_equal(y, labels[split.labeled])

    X, y = fit_spy["label_spreading"]
    assert len(X) == len(images)
    hidden = np.setdiff1d(np.arange(len(labels)), split.labeled)
    assert np.all(y[hidden] == -1)
    np.testing.assert_array_equal(y[split.labeled], labels[split.labeled])


def test_hidden_labels_only_change_the_score(small_pool):
    """Scrambling every hidden label leaves the predictions alone: the score moves, the fit not."""
    images, labels, split = small_pool
    hidden = np.setdiff1d(np.arange(len(labels)), split.labeled)
    scrambled = labels.copy()
    scrambled[hidden] = (labels[hidden] + 1) % 10

    true = run_baselines(images, labels, split.labeled, split.val, BaselineOptions(), seed=0)
    wrong = run_baselines(images, scrambled, split.labeled, split.val, BaselineOptions(), seed=0)
    for name in baselines.BASELINE_NAMES:
        assert true[name]["accuracy_labeled"] == wrong[name]["accuracy_labeled"]
        # Every hidden prediction that was right is now wrong, and the other way round.
        assert wrong[name]["accuracy_unlabeled"] < true[name]["accuracy_unlabeled"]
    assert true["label_spreading"]["accuracy_unlabeled"] > 0.5


def test_accuracy_fields_match_the_models_on_the_same_samples(small_pool):
    """Same predictions in, same numbers out: the two summaries count the same samples."""
    images, labels, split = small_pool
    predicted = np.random.default_rng(0).integers(0, 10, len(labels))
    probabilities = torch.nn.functional.one_hot(torch.as_tensor(predicted), 10).float()
    model_side = classification_summary(
        Predictions(
            mu=torch.zeros(len(labels), 2),
            class_probabilities=probabilities,
            responsibilities=None,
            classification_loss=torch.zeros(len(labels)),
        ),
        torch.as_tensor(labels),
        torch.as_tensor(split.labeled),
        torch.as_tensor(split.val),
        num_classes=10,
    )
    baseline_side = accuracy_fields(predicted, labels, split.labeled, split.val)
    for key in ACCURACY_KEYS:
        assert baseline_side[key] == pytest.approx(model_side[key], abs=1e-6), key


def test_subsampled_graph_still_scores_every_sample(small_pool, fit_spy):
    images, labels, split = small_pool
    options = BaselineOptions(max_samples=150)
    result = run_baselines(images, labels, split.labeled, split.val, options, seed=0)

    X, y = fit_spy["label_spreading"]
    assert len(X) == 150
    assert np.sum(y >= 0) == len(split.labeled)  # every labelled sample is in the graph
    full = run_baselines(images, labels, split.labeled, split.val, BaselineOptions(), seed=0)
    assert set(result["label_spreading"]) == set(full["label_spreading"])
    assert 0.3 < result["label_spreading"]["accuracy_unlabeled"] <= 1


def test_too_few_labelled_classes_skips_the_baselines(small_pool):
    images, labels, split = small_pool
    one_class = split.labeled[labels[split.labeled] == labels[split.labeled][0]]
    assert run_baselines(images, labels, one_class, split.val, BaselineOptions(), seed=0) == {}


def test_report_shows_the_model_beside_the_baselines():
    summary = {
        "status": "completed",
        "classification": {"accuracy": 0.9, "accuracy_unlabeled": 0.89, "accuracy_source": "x"},
        "baselines": {
            "logistic_regression": {"accuracy": 0.75, "accuracy_unlabeled": 0.74},
            "label_spreading": {"accuracy": 0.8, "accuracy_unlabeled": 0.79},
        },
    }
    report = render_report(summary, [])
    table = report.split("## Baselines", 1)[1].split("##", 1)[0]
    assert "| Classifier | Accuracy | Accuracy Unlabeled |" in table
    assert "| This model (x) | 0.9000 | 0.8900 |" in table
    assert "| LogisticRegression (pixels, labelled samples only) | 0.7500 | 0.7400 |" in table
    assert "| LabelSpreading (kNN graph on pixels) | 0.8000 | 0.7900 |" in table
    assert "## Baselines" not in render_report({**summary, "baselines": {}}, [])


def test_train_reports_baselines_on_the_runs_split(train_tiny, data_cache):
    result = train_tiny("seed=5", "threads=1")
    assert result.returncode == 0, result.output
    summary = result.summary()
    assert set(summary["baselines"]) == set(baselines.BASELINE_NAMES)

    # Refit on the split this run drew: the numbers in summary.json are these.
    data = load_mnist5k(str(data_cache))
    split = make_split(data.train_labels, num_samples=300, num_labeled=20, seed=5)
    images, labels = data.train_images[split.pool], data.train_labels[split.pool]
    expected = run_baselines(images, labels, split.labeled, split.val, BaselineOptions(), seed=5)
    for name, values in expected.items():
        reported = summary["baselines"][name]
        assert set(reported) >= ACCURACY_KEYS
        assert set(summary["classification"]) >= ACCURACY_KEYS
        for key in ACCURACY_KEYS:
            assert reported[key] == pytest.approx(values[key]), (name, key)
    assert "## Baselines" in (result.run_dir / "REPORT.md").read_text()


def test_baselines_can_be_switched_off(train_tiny):
    result = train_tiny("baselines.enabled=false", "threads=1")
    assert result.returncode == 0, result.output
    assert result.summary()["baselines"] == {}
    assert "## Baselines" not in (result.run_dir / "REPORT.md").read_text()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("baselines.n_neighbors=0", "baselines.n_neighbors=0: must be >= 1"),
        ("baselines.max_samples=1", "baselines.max_samples=1: must be >= 2"),
        ("baselines.spreading_alpha=1", "baselines.spreading_alpha=1: must be in (0, 1)"),
        ("baselines.logistic_c=0", "baselines.logistic_c=0: must be > 0"),
    ],
)
def test_bad_baseline_options_name_the_key(override, message):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[override])
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate_config(cfg)


def test_bad_baseline_option_fails_before_training(train_tiny):
    result = train_tiny("baselines.enabled=maybe")
    assert result.returncode == 2
    assert "baselines.enabled='maybe': must be true or false" in result.output
    assert not (result.run_dir / "checkpoints").exists()
