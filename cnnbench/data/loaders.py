"""Batches for training and evaluation.

In-memory datasets are moved to the training device once, as uint8; each
batch is cropped, mirrored, converted and normalised there with a few
tensor ops, so no DataLoader workers or per-image Python run (the airbench
approach). The epoch's order and augmentation are drawn at its start, in
one go, so the per-batch work is one row gather and one normalisation.
"""

from __future__ import annotations

import abc
import math
from typing import Dict, Iterator, Optional, Sequence, Tuple

import numpy as np
import torch

from cnnbench.data.augment import CropSource, draw_crops
from cnnbench.data.datasets import InMemoryDataset
from cnnbench.data.transforms import IMAGENET_PCA_EIGENVALUES, IMAGENET_PCA_EIGENVECTORS


class Loader(abc.ABC):
    """What training and evaluation read batches from; every loader implements it.

    Iterating gives (images, labels) on ``device``: images (N, C, H, W), or
    (N, views, C, H, W) for multi-crop evaluation. ``labels`` are the labels of
    every sample this process reads (in dataset order), ``set_epoch`` picks the
    epoch whose order and augmentation the next iteration draws, and
    ``skipped`` names the unreadable files left out so far (path -> reason).
    """

    labels: torch.Tensor
    device: torch.device

    @abc.abstractmethod
    def set_epoch(self, epoch: int) -> None: ...

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @abc.abstractmethod
    def __iter__(self) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]: ...

    @property
    def skipped(self) -> Dict[str, str]:
        return {}


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A generator that depends on (seed, epoch) only, never on what ran before."""
    state = np.random.SeedSequence([seed, epoch]).generate_state(2, dtype=np.uint64)
    return torch.Generator().manual_seed(int(state[0] >> np.uint64(1)))


def shard_positions(size: int, batch_size: int, rank: int = 0, world_size: int = 1, train: bool = True) -> torch.Tensor:
    """Which positions of an epoch's sample order rank ``rank`` of ``world_size`` takes, in its order.

    Training: its block of ``batch_size`` in each global batch of
    ``world_size * batch_size``, so the union over ranks of their batch b is
    batch b of a one-rank run with the global batch size; the last partial
    global batch is dropped. Evaluation: one contiguous part, the parts
    disjoint and together every position once (no padding).
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not one of the {world_size} ranks")
    if not train:
        return torch.arange(rank * size // world_size, (rank + 1) * size // world_size)
    global_batch = world_size * batch_size
    batch_starts = torch.arange(size // global_batch) * global_batch + rank * batch_size
    return (batch_starts[:, None] + torch.arange(batch_size)).view(-1)


def uint8_normalization(mean: Sequence[float], std: Sequence[float], device) -> Tuple[torch.Tensor, torch.Tensor]:
    """(shift, scale) that normalise uint8 pixels in one step:
    (x / 255 - mean) / std == (x - 255 mean) * 1 / (255 std)."""
    shift = torch.tensor(list(mean), device=device).view(1, -1, 1, 1) * 255.0
    scale = 1.0 / (torch.tensor(list(std), device=device).view(1, -1, 1, 1) * 255.0)
    return shift, scale


class DeviceLoader(Loader):
    """Iterates (images, labels) batches of an in-memory dataset on ``device``.

    Training loaders shuffle with a per-epoch generator (call ``set_epoch``)
    and drop the last partial batch; evaluation loaders keep every sample,
    in order, exactly once. With ``world_size`` > 1 each rank iterates its
    shard (``shard_positions``) of the same epoch order and augmentation;
    ``batch_size`` is per rank.
    """

    def __init__(
        self,
        dataset: InMemoryDataset,
        batch_size: int,
        device: torch.device,
        mean: Sequence[float],
        std: Sequence[float],
        train: bool,
        seed: int = 0,
        crop_padding: int = 0,
        hflip: bool = False,
        rank: int = 0,
        world_size: int = 1,
        pca_lighting: float = 0.0,
    ):
        if batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {batch_size}")
        channels = dataset.images.shape[1]
        if len(mean) != channels or len(std) != channels:
            raise ValueError(f"mean/std need {channels} values (one per channel), got {len(mean)} and {len(std)}")
        self.labels = dataset.labels.to(device)
        # Augmentation applies to training batches only.
        self.crop_padding = crop_padding if train else 0
        self.hflip = hflip and train
        if pca_lighting and channels != 3:
            raise ValueError(f"PCA colour augmentation shifts RGB colours; these images have {channels} channel(s)")
        self.pca_lighting = pca_lighting if train else 0.0
        self.source = CropSource(dataset.images.to(device), self.crop_padding, self.hflip)
        self.batch_size = batch_size
        self.device = device
        self.train = train
        self.seed = seed
        self.epoch = 0
        self.shift, self.scale = uint8_normalization(mean, std, device)
        self.positions = shard_positions(len(self.labels), batch_size, rank, world_size, train).to(device)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(len(self.positions) / self.batch_size)

    def __iter__(self) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.labels)
        generator = epoch_generator(self.seed, self.epoch)
        order = torch.randperm(n, generator=generator) if self.train else torch.arange(n)
        draws = draw_crops(n, self.crop_padding, self.hflip, generator)
        order = order.to(self.device)
        starts, labels = self.source.starts(order, draws), self.labels[order]
        # Drawn for the whole set, then sliced: a sample's crop and mirror do not depend on the rank.
        starts, labels = starts[self.positions], labels[self.positions]
        # Drawn after the crops, so runs without it keep the random stream they always had.
        shifts = self.lighting_shifts(n, generator)
        for batch in range(len(self)):
            take = slice(batch * self.batch_size, (batch + 1) * self.batch_size)
            images = self.source.crops(starts[take]).float()
            if shifts is not None:
                images += shifts[take]
            yield images.sub_(self.shift).mul_(self.scale), labels[take]

    def lighting_shifts(self, n: int, generator: torch.Generator) -> Optional[torch.Tensor]:
        """AlexNet's PCA colour shift of each sample of the epoch, in the order of its batches, on
        the uint8 scale as (samples, 3, 1, 1); None when off. The same sum_i alpha_i lambda_i p_i
        as the folder loader's (cnnbench.data.transforms), one draw per image per epoch."""
        if not self.pca_lighting:
            return None
        alpha = torch.randn(n, 3, generator=generator) * self.pca_lighting
        shifts = (alpha * IMAGENET_PCA_EIGENVALUES) @ IMAGENET_PCA_EIGENVECTORS.T * 255.0
        return shifts.to(self.device)[self.positions].view(-1, 3, 1, 1)
