"""The semi-supervised split and the data module's promise that hidden labels stay hidden."""

import numpy as np
import pytest
import torch

from ssvae.data.datamodule import SemiSupervisedDataModule
from ssvae.data.split import SplitError, make_split
from ssvae.losses import UNLABELED

LABELS = np.repeat(np.arange(10), 50)  # 500 samples, 50 per class


def test_sizes_balance_and_disjointness():
    split = make_split(LABELS, num_samples=400, num_labeled=40, val_fraction=0.1, seed=3)
    assert len(split.pool) == len(set(split.pool.tolist())) == 400
    assert len(split.labeled) == 40
    assert np.bincount(LABELS[split.pool][split.labeled], minlength=10).tolist() == [4] * 10
    assert len(split.val) == round(0.1 * 360)
    assert len(split.train) + len(split.val) == 400
    assert not set(split.val) & set(split.train)
    assert not set(split.val) & set(split.labeled)
    assert set(split.labeled) <= set(split.train)


def test_random_sampling_draws_the_requested_count():
    split = make_split(LABELS, num_samples=500, num_labeled=7, label_sampling="random", seed=1)
    assert len(split.labeled) == len(set(split.labeled.tolist())) == 7


def test_same_seed_same_split_other_seed_other_split():
    first = make_split(LABELS, 300, 20, seed=5)
    again = make_split(LABELS, 300, 20, seed=5)
    other = make_split(LABELS, 300, 20, seed=6)
    for name in ("pool", "labeled", "train", "val"):
        assert np.array_equal(getattr(first, name), getattr(again, name))
    assert not np.array_equal(first.labeled, other.labeled)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_samples": 501, "num_labeled": 10}, "num_samples=501"),
        ({"num_samples": 100, "num_labeled": 101}, "num_labeled=101"),
        ({"num_samples": 100, "num_labeled": 15}, "multiple of num_classes"),
        ({"num_samples": 500, "num_labeled": 10, "val_fraction": 1.0}, "val_fraction"),
        (
            {"num_samples": 500, "num_labeled": 10, "label_sampling": "stratified"},
            "label_sampling",
        ),
    ],
)
def test_impossible_splits_name_the_key(kwargs, message):
    with pytest.raises(SplitError, match=message):
        make_split(LABELS, **kwargs)


def test_balanced_sampling_that_the_pool_cannot_meet():
    labels = np.array([0] * 95 + [1] * 5)
    with pytest.raises(SplitError, match="needs 10 samples of class 1"):
        make_split(labels, num_samples=100, num_labeled=20, num_classes=2)


def test_no_hidden_label_reaches_the_model(data_cache, monkeypatch):
    monkeypatch.setenv("SSVAE_CACHE_DIR", str(data_cache))
    datamodule = SemiSupervisedDataModule(num_samples=600, num_labeled=30, batch_size=64, seed=2)
    datamodule.setup()
    labeled = set(datamodule.split.labeled.tolist())
    seen_positions, seen_labelled = 0, 0
    for loader in (datamodule.train_dataloader(), datamodule.val_dataloader()):
        for positions in loader.batch_sampler:
            images, targets = loader.dataset.__getitems__(positions)
            for position, target in zip(positions, targets.tolist()):
                if position in labeled:
                    assert target == datamodule.evaluation_labels[position].item()
                    seen_labelled += 1
                else:
                    assert target == UNLABELED
            seen_positions += len(positions)
    assert seen_labelled == 30
    assert seen_positions == 600
    # The batches the Trainer receives are the same tensors.
    images, targets = next(iter(datamodule.train_dataloader()))
    assert images.shape == (64, 784) and targets.dtype == torch.int64
    assert int((targets != UNLABELED).sum()) <= 30
