"""`data=synthetic`: random uint8 images with random labels, for speed measurements.

The pixels and labels come from fixed generators, one per split, that do
not depend on the run's ``seed``: every run, with any seed, sees the same
data, so timings compare across runs. The labels carry no information, so
accuracy on it means nothing; the run's log says so.
"""

from __future__ import annotations

import functools
import logging

import torch
from omegaconf import DictConfig

from cnnbench.data.datasets import InMemoryDataset
from cnnbench.validate import check_synthetic_sizes

# Fixed generator seeds, one per split, so the splits differ from each other.
SPLIT_SEEDS = {"train": 20_091_108, "val": 20_091_109}


def load_synthetic(cfg: DictConfig, split: str) -> InMemoryDataset:
    """``data.train_size`` / ``data.val_size`` random images of ``data.channels`` x
    ``data.image_size`` x ``data.image_size``, labels uniform over ``data.num_classes``."""
    # validate() checked every split before the run; this loader is also called
    # directly (tests, notebooks), so the split it makes is checked by the same rule.
    check_synthetic_sizes(cfg, (split,))
    count = cfg.get(f"{split}_size")
    warn_random_labels(int(cfg.num_classes))
    generator = torch.Generator().manual_seed(SPLIT_SEEDS[split])
    shape = (int(count), int(cfg.channels), int(cfg.image_size), int(cfg.image_size))
    images = torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, int(cfg.num_classes), (int(count),), generator=generator)
    return InMemoryDataset("synthetic", split, images, labels)


@functools.cache
def warn_random_labels(num_classes: int) -> None:
    """Once per process, however many splits are loaded."""
    logging.getLogger("cnnbench").warning(
        "data=synthetic: random images with random labels, for speed measurements only; "
        f"accuracy on them means nothing (chance: top-1 {100 / num_classes:.3g}%)"
    )
