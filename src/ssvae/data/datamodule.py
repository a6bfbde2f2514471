"""LightningDataModule serving in-memory tensors in index-sliced batches."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ssvae.data.sources import ImageData, load_source, prepare_source
from ssvae.data.split import Split, make_split
from ssvae.distributed import per_process
from ssvae.losses import UNLABELED

log = logging.getLogger(__name__)


class TensorBatches(Dataset):
    """Rows of in-memory tensors, fetched a whole batch at a time by index.

    ``__getitems__`` lets the DataLoader slice each tensor once per batch instead of
    collating ``batch_size`` single samples.
    """

    def __init__(self, *tensors: torch.Tensor) -> None:
        self.tensors = tensors

    def __len__(self) -> int:
        return len(self.tensors[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        return tuple(tensor[index] for tensor in self.tensors)

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, ...]:
        index = torch.as_tensor(indices)
        return tuple(tensor[index] for tensor in self.tensors)


def _keep_batch(batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return batch


class EpochBatches(Sampler[list[int]]):
    """Index batches of one rank's shard, reproducible for a given (seed, epoch).

    Every rank draws the same permutation, pads it by repeating its head until it
    divides evenly by ``world_size`` (so all ranks run the same number of steps),
    and keeps every ``world_size``-th index from its rank on. With
    ``labeled_per_batch = k > 0`` the shuffled stream holds only unlabelled
    positions and each batch gets ``k`` labelled positions drawn with replacement.

    Args:
        positions: Positions (into the data tensors) making up one epoch.
        batch_size: Samples per batch, labelled ones included.
        shuffle: Permute every epoch (training) or keep the order (evaluation).
        seed: Base seed; the epoch is added so each epoch differs.
        rank, world_size: This process's place among the data-parallel processes.
        labeled: Labelled positions, required when ``labeled_per_batch > 0``.
        labeled_per_batch: Labelled samples added to each batch (0: natural mixing).
    """

    def __init__(
        self,
        positions: np.ndarray,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        labeled: np.ndarray | None = None,
        labeled_per_batch: int = 0,
    ) -> None:
        if labeled_per_batch and (labeled is None or len(labeled) == 0):
            raise ValueError("labeled_per_batch > 0 needs at least one labelled sample")
        if labeled_per_batch >= batch_size:
            raise ValueError(
                f"labeled_per_batch={labeled_per_batch} must be below batch_size={batch_size}"
            )
        if labeled_per_batch:
            positions = np.setdiff1d(positions, labeled)
        self.positions = torch.as_tensor(positions, dtype=torch.long)
        self.labeled = None if labeled is None else torch.as_tensor(labeled, dtype=torch.long)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.labeled_per_batch = labeled_per_batch
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at the start of every epoch."""
        self.epoch = epoch

    @property
    def _shard_size(self) -> int:
        return -(-len(self.positions) // self.world_size)

    @property
    def _stream_batch_size(self) -> int:
        return self.batch_size - self.labeled_per_batch

    def __len__(self) -> int:
        return -(-self._shard_size // self._stream_batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = self.positions
        if self.shuffle:
            order = order[torch.randperm(len(order), generator=generator)]
        padding = self._shard_size * self.world_size - len(order)
        if padding:
            order = torch.cat([order, order[:padding]])
        shard = order[self.rank :: self.world_size]

        batches = list(torch.split(shard, self._stream_batch_size))
        if self.labeled_per_batch:
            # Drawn for every rank, then sliced, so ranks get different labelled samples.
            draws = torch.randint(
                len(self.labeled),
                (self.world_size, len(batches), self.labeled_per_batch),
                generator=generator,
            )[self.rank]
            batches = [
                torch.cat([batch, self.labeled[draw]]) for batch, draw in zip(batches, draws)
            ]
        for batch in batches:
            yield batch.tolist()


class SemiSupervisedDataModule(pl.LightningDataModule):
    """Builds the semi-supervised split of an image source and serves its batches.

    Every batch is ``(images, targets)`` where ``targets`` holds the class for
    labelled samples and :data:`~ssvae.losses.UNLABELED` for every other one. The
    true labels of hidden samples live in :attr:`evaluation_labels`, which no
    dataloader touches; they exist only for the final metrics. Where the source
    has a test split, :attr:`test_images` and :attr:`test_labels` hold it (else
    None); it is only evaluated, never trained on.

    Args:
        source: Name of the image source (``"mnist5k"``, ...).
        num_samples: Size of the pool drawn from the source's training set, or
            ``"all"`` for the whole training set.
        num_labeled: Labelled samples in the pool.
        label_sampling: ``"balanced"`` or ``"random"``.
        val_fraction: Share of the unlabelled pool held out for validation.
        batch_size: Training and evaluation batch size of one step, over all data-parallel
            processes together (each takes ``batch_size / world_size``).
        labeled_per_batch: Labelled samples added to every training batch (0: natural
            mixing), also over all processes together.
        num_classes: Number of classes C.
        class_names: Display names of the classes, index = label.
        seed: Seed of the split and of the batch order.
        source_options: Extra keyword arguments for the source loader.
        path: Where the source's files are (a folder of IDX files); passed to the
            loader as ``path`` when set.
    """

    def __init__(
        self,
        source: str = "mnist5k",
        num_samples: int | str = 5000,
        num_labeled: int = 100,
        label_sampling: str = "balanced",
        val_fraction: float = 0.1,
        batch_size: int = 128,
        labeled_per_batch: int = 0,
        num_classes: int = 10,
        class_names: Sequence[str] | None = None,
        seed: int = 42,
        source_options: dict | None = None,
        path: str | None = None,
    ) -> None:
        super().__init__()
        self.source = source
        self.num_samples = num_samples
        self.num_labeled = num_labeled
        self.label_sampling = label_sampling
        self.val_fraction = val_fraction
        self.batch_size = batch_size
        self.labeled_per_batch = labeled_per_batch
        self.num_classes = num_classes
        self.class_names = (
            list(class_names) if class_names else [str(c) for c in range(num_classes)]
        )
        self.seed = seed
        self.source_options = dict(source_options or {})
        if path is not None:
            self.source_options["path"] = path
        self.split: Split | None = None
        self.data: ImageData | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.split is not None:
            return
        self.data = load_source(self.source, num_classes=self.num_classes, **self.source_options)
        num_samples = self.num_samples
        if num_samples == "all":
            num_samples = len(self.data.train_labels)
        self.split = make_split(
            self.data.train_labels,
            num_samples=num_samples,
            num_labeled=self.num_labeled,
            label_sampling=self.label_sampling,
            val_fraction=self.val_fraction,
            seed=self.seed,
            num_classes=self.num_classes,
        )
        pool = self.split.pool
        self.images = torch.from_numpy(self.data.train_images[pool])  # (N, D)
        self.evaluation_labels = torch.from_numpy(self.data.train_labels[pool])  # (N,)
        targets = torch.full_like(self.evaluation_labels, UNLABELED)
        targets[self.split.labeled] = self.evaluation_labels[self.split.labeled]
        self.targets = targets  # what the model may see
        self._dataset = TensorBatches(self.images, self.targets)
        self.test_images, self.test_labels = None, None
        if self.data.test_labels is not None:
            self.test_images = torch.from_numpy(self.data.test_images)  # (N_test, D)
            self.test_labels = torch.from_numpy(self.data.test_labels)  # (N_test,)
        log.info(
            "data %s: %d samples (%d labelled, %d train, %d val), %d test",
            self.source,
            len(pool),
            len(self.split.labeled),
            len(self.split.train),
            len(self.split.val),
            self.data.num_test,
        )

    def prepare_data(self) -> None:
        """Download or convert the source's files once (Lightning calls this on one process)."""
        prepare_source(self.source, **self.source_options)

    @property
    def input_dim(self) -> int:
        return self.images.shape[1]

    @property
    def image_shape(self) -> tuple[int, int]:
        """(height, width) of one image, for figures."""
        return self.data.image_size

    def _distributed_place(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is None:
            return 0, 1
        return trainer.global_rank, trainer.world_size

    def _loader(
        self, positions: np.ndarray, shuffle: bool, labeled_per_batch: int = 0
    ) -> DataLoader:
        rank, world_size = self._distributed_place()
        # batch_size is the global batch of one optimiser step, split evenly among the
        # data-parallel processes, so a run takes the same steps on 1 or N processes.
        sampler = EpochBatches(
            positions,
            per_process(self.batch_size, world_size, "data.batch_size"),
            shuffle=shuffle,
            seed=self.seed,
            rank=rank,
            world_size=world_size,
            labeled=self.split.labeled,
            labeled_per_batch=per_process(labeled_per_batch, world_size, "data.labeled_per_batch"),
        )
        return DataLoader(self._dataset, batch_sampler=sampler, collate_fn=_keep_batch)

    def train_dataloader(self) -> DataLoader:
        return self._loader(
            self.split.train, shuffle=True, labeled_per_batch=self.labeled_per_batch
        )

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.split.val, shuffle=False)
