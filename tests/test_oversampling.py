"""Labelled oversampling: ``data.labeled_per_batch=k`` puts exactly k labelled samples in
every training batch, on every rank, and still shows the model no hidden label."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from idx_data import write_dataset

from ssvae.data.datamodule import EpochBatches, SemiSupervisedDataModule
from ssvae.losses import UNLABELED

SUPPORT = Path(__file__).resolve().parent / "support"

POSITIONS = np.arange(203)
LABELED = np.arange(0, 203, 20)  # 11 labelled positions among 203


def rank_batches(world_size: int, k: int, epoch: int = 0) -> list[list[list[int]]]:
    """Index batches of every rank for one epoch."""
    batches = []
    for rank in range(world_size):
        sampler = EpochBatches(
            POSITIONS, 16, shuffle=True, seed=5, rank=rank, world_size=world_size,
            labeled=LABELED, labeled_per_batch=k,
        )  # fmt: skip
        sampler.set_epoch(epoch)
        batches.append(list(sampler))
        assert len(batches[-1]) == len(sampler)
    return batches


@pytest.mark.parametrize("world_size", [1, 2, 3])
@pytest.mark.parametrize("k", [1, 4])
def test_every_batch_of_every_rank_holds_exactly_k_labelled(world_size, k):
    labeled = set(LABELED.tolist())
    batches = rank_batches(world_size, k)
    assert len({len(rank) for rank in batches}) == 1, "ranks must run the same number of steps"

    unlabelled_seen = []
    for rank in batches:
        for batch in rank:
            assert sum(position in labeled for position in batch) == k
            assert len(batch) <= 16
            unlabelled_seen += [position for position in batch if position not in labeled]
    # The unlabelled stream is split across ranks: each sample once, plus the padding.
    unlabelled = set(POSITIONS.tolist()) - labeled
    assert set(unlabelled_seen) == unlabelled
    assert len(unlabelled_seen) - len(unlabelled) < world_size


def test_ranks_draw_different_labelled_samples_and_epochs_differ():
    first, second = rank_batches(2, 4)
    labeled = set(LABELED.tolist())
    draws = [[[p for p in batch if p in labeled] for batch in rank] for rank in (first, second)]
    assert draws[0] != draws[1]
    assert rank_batches(2, 4, epoch=1) != [first, second]
    assert rank_batches(2, 4) == [first, second], "the same (seed, epoch) must repeat"


def test_zero_keeps_natural_mixing():
    (batches,) = rank_batches(1, 0)
    flat = [position for batch in batches for position in batch]
    assert sorted(flat) == POSITIONS.tolist(), "every sample exactly once, labelled ones too"
    assert all(len(batch) == 16 for batch in batches[:-1])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"labeled": np.array([], dtype=int), "labeled_per_batch": 2}, "at least one labelled"),
        ({"labeled": LABELED, "labeled_per_batch": 16}, "must be below batch_size=16"),
    ],
)
def test_impossible_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EpochBatches(POSITIONS, 16, shuffle=True, **kwargs)


class FakeTrainer:
    """Just the distributed place the datamodule reads from its trainer."""

    def __init__(self, global_rank: int, world_size: int) -> None:
        self.global_rank, self.world_size = global_rank, world_size


@pytest.mark.parametrize("world_size", [1, 2])
def test_datamodule_steps_show_k_labels_of_labelled_samples_only(tmp_path, world_size):
    """``labeled_per_batch`` counts per optimiser step: under DDP each rank gets k / N."""
    folder = write_dataset(tmp_path / "idx")
    datamodule = SemiSupervisedDataModule(
        source="idx", path=str(folder), num_samples="all", num_labeled=20, batch_size=32,
        labeled_per_batch=4, seed=4,
    )  # fmt: skip
    datamodule.setup()
    assert len(datamodule.images) == 300, "num_samples=all takes the whole training set"
    labeled = set(datamodule.split.labeled.tolist())
    visible_per_step = None
    for rank in range(world_size):
        datamodule.trainer = FakeTrainer(rank, world_size)
        loader = datamodule.train_dataloader()
        visible_counts = []
        for positions in loader.batch_sampler:
            _, targets = loader.dataset.__getitems__(positions)
            visible = targets != UNLABELED
            visible_counts.append(int(visible.sum()))
            for position, shown in zip(positions, visible.tolist()):
                assert shown == (position in labeled)
            true = datamodule.evaluation_labels[torch.as_tensor(positions)]
            assert torch.equal(targets[visible], true[visible])
        counts = np.array(visible_counts)
        visible_per_step = counts if visible_per_step is None else visible_per_step + counts
    assert set(visible_per_step.tolist()) == {4}


def test_training_batches_hold_k_labelled_and_no_hidden_label(train_tiny, tmp_path):
    """Through train.py: what the model receives, batch by batch."""
    folder = write_dataset(tmp_path / "idx")
    spy_file = tmp_path / "batches.json"
    result = train_tiny(
        "data=idx",
        f"data.path={folder}",
        "data.batch_size=32",
        "data.labeled_per_batch=5",
        "+callbacks.spy._target_=batch_spy.BatchSpy",
        f"+callbacks.spy.output={spy_file}",
        env={"PYTHONPATH": str(SUPPORT)},
    )
    assert result.returncode == 0, result.output
    batches = json.loads(spy_file.read_text())
    # 300 samples, 20 labelled, 28 of the 280 unlabelled held out: 252 per epoch, 27 a batch.
    assert len(batches) == 2 * 10
    assert all(batch["labelled"] == 5 for batch in batches)
    assert sum(batch["leaked"] for batch in batches) == 0
    assert result.summary()["experiment"]["config"]["data"]["labeled_per_batch"] == 5
