"""Data: one ``LightningDataModule`` per source (``conf/data/<name>.yaml``), sharing ``base``."""

from poolbench.data.base import DataError, RawSplit, TextClassificationDataModule
from poolbench.data.files import FilesDataModule
from poolbench.data.hub import HubDataModule
from poolbench.data.hutto4 import Hutto4DataModule
from poolbench.data.sampler import EpochSeededSampler

__all__ = [
    "DataError",
    "EpochSeededSampler",
    "FilesDataModule",
    "HubDataModule",
    "Hutto4DataModule",
    "RawSplit",
    "TextClassificationDataModule",
]
