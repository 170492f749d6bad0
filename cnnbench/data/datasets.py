"""Datasets as uint8 image tensors, looked up by `data.name`."""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict

import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from cnnbench.errors import UserError

SPLITS = ("train", "val")


@dataclass
class InMemoryDataset:
    """A whole split held as one tensor: images uint8 (N, C, H, W), labels int64 (N,)."""

    name: str
    split: str
    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        assert self.images.dtype == torch.uint8 and self.images.ndim == 4, "images must be uint8 (N, C, H, W)"
        assert self.labels.shape == (len(self.images),), "one label per image"

    def __len__(self) -> int:
        return len(self.images)


def load_digits(cfg: DictConfig, split: str) -> InMemoryDataset:
    """scikit-learn's bundled handwritten digits (the UCI optdigits test set): 1,797
    grey 8x8 images of 0-9 with 17 grey levels, upscaled bilinearly to
    ``data.image_size`` and stored as uint8.

    The split is fixed: every 6th image (index 5, 11, 17, ...) is validation
    (299 images), the other 1,498 train. It needs no download and ignores
    ``data.root``.
    """
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = torch.from_numpy(bunch.images).float().div_(16.0).unsqueeze(1)  # (N, 1, 8, 8) in [0, 1]
    size = int(cfg.image_size)
    images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    images = images.mul_(255.0).round_().clamp_(0, 255).to(torch.uint8)
    labels = torch.from_numpy(bunch.target).long()
    is_val = torch.arange(len(labels)) % 6 == 5
    keep = is_val if split == "val" else ~is_val
    return InMemoryDataset("digits", split, images[keep].contiguous(), labels[keep].contiguous())


def default_data_root() -> Path:
    """Where on-disk datasets live when ``data.root`` is null: the environment
    variable ``CNNBENCH_DATA_ROOT`` if set, else ``~/.cache/cnnbench/data``."""
    configured = os.environ.get("CNNBENCH_DATA_ROOT")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "cnnbench" / "data"


def lazy_loader(target: str) -> Callable[[DictConfig, str], InMemoryDataset]:
    """The loader ``"module:function"``, imported on first use: dataset modules
    import this one (for InMemoryDataset), so importing them here would be a cycle."""
    module_name, function_name = target.split(":")

    def load(cfg: DictConfig, split: str) -> InMemoryDataset:
        return getattr(importlib.import_module(module_name), function_name)(cfg, split)

    return load


DATASETS: Dict[str, Callable[[DictConfig, str], InMemoryDataset]] = {
    "digits": load_digits,
    "cifar10": lazy_loader("cnnbench.data.cifar:load_cifar10"),
    "cifar100": lazy_loader("cnnbench.data.cifar:load_cifar100"),
    "synthetic": lazy_loader("cnnbench.data.synthetic:load_synthetic"),
    "mnist": lazy_loader("cnnbench.data.mnist:load_mnist"),
    "fashion_mnist": lazy_loader("cnnbench.data.mnist:load_fashion_mnist"),
    "kmnist": lazy_loader("cnnbench.data.mnist:load_kmnist"),
}


def load_dataset(cfg: DictConfig, split: str) -> InMemoryDataset:
    """Load ``split`` of the dataset ``cfg`` (the `data` config group) describes."""
    if split not in SPLITS:
        raise UserError(f"unknown split '{split}'; choose one of: {', '.join(SPLITS)}")
    if cfg.name not in DATASETS:
        raise UserError(f"data.name '{cfg.name}' has no loader; known datasets: {', '.join(DATASETS)}")
    dataset = DATASETS[cfg.name](cfg, split)
    expected = (int(cfg.channels), int(cfg.image_size), int(cfg.image_size))
    if tuple(dataset.images.shape[1:]) != expected:
        raise UserError(
            f"data '{cfg.name}' gives images of shape {tuple(dataset.images.shape[1:])}, "
            f"but its config says channels={expected[0]}, image_size={expected[1]}"
        )
    return dataset
