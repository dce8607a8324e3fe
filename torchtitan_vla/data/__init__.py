"""Data: LeRobot and web readers, the sample/batch contract, packing, mixtures and the data loader."""

from .batch import Batch
from .lerobot import LeRobotReader
from .loader import VLADataLoader, build_dataloader
from .sample import IGNORE_INDEX, Collator, Sample
from .write_lerobot import write_lerobot_dataset
from .write_web import write_cc12m_shards, write_obelics_parquet

__all__ = [
    "IGNORE_INDEX",
    "Batch",
    "Collator",
    "LeRobotReader",
    "Sample",
    "VLADataLoader",
    "build_dataloader",
    "write_cc12m_shards",
    "write_lerobot_dataset",
    "write_obelics_parquet",
]
