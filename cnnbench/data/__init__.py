"""Datasets and loaders."""

from cnnbench.data.datasets import DATASETS, InMemoryDataset, load_dataset
from cnnbench.data.loaders import DeviceLoader

__all__ = ["DATASETS", "DeviceLoader", "InMemoryDataset", "load_dataset"]
