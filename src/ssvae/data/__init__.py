"""Data sources, the labelled/unlabelled split and the LightningDataModule."""

from ssvae.data.datamodule import SemiSupervisedDataModule
from ssvae.data.split import Split, make_split

__all__ = ["SemiSupervisedDataModule", "Split", "make_split"]
