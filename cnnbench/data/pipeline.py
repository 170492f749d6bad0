"""The batches a composed config asks for: a FolderLoader for image-folder datasets,
a DeviceLoader for in-memory ones, with the multi-crop views of `eval.crops`."""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from cnnbench.config import FOLDER_DATASETS, input_shape
from cnnbench.data.datasets import load_dataset
from cnnbench.data.folders import complete_folder_config, folder_loader
from cnnbench.data.loaders import DeviceLoader, Loader
from cnnbench.data.views import in_memory_views
from cnnbench.errors import UserError


def loader_for(cfg: DictConfig, split: str, device: torch.device, train: bool, crops: int = 1,
               rank: int = 0, world_size: int = 1) -> Loader:
    """Batches of ``split``: a FolderLoader for image-folder datasets (imagenet, folder), else a
    DeviceLoader; ``crops`` > 1 gives evaluation batches of several views per image.

    For folder datasets it first fills in what their config leaves null
    (``data.num_classes``, ``data.mean``, ``data.std``) in ``cfg`` itself, from the
    folders: callers build the loaders before the model, which needs the class count.

    ``data.batch_size`` is the global batch: with several processes each
    trains on its ``rank``'s slice of ``batch_size / world_size`` samples.
    """
    data = cfg.data
    # Ranges and cross-key rules were checked by cnnbench.validate before anything
    # started; what is left here needs the number of processes or the loaded data.
    if train and data.batch_size % world_size:
        raise UserError(
            f"data.batch_size={data.batch_size} is the global batch and must divide evenly over "
            f"trainer.devices={world_size} processes"
        )
    shard = {"rank": rank, "world_size": world_size}
    if data.name in FOLDER_DATASETS:
        complete_folder_config(cfg)
        return folder_loader(cfg, split, device, train, crops, input_shape(cfg), **shard)
    dataset = load_dataset(data, split)
    if len(dataset.labels) and int(dataset.labels.max()) >= data.num_classes:
        raise UserError(
            f"data.num_classes={data.num_classes}, but {data.name}'s labels go up to {int(dataset.labels.max())}; "
            f"use data.num_classes={int(dataset.labels.max()) + 1} or more"
        )
    if input_shape(cfg) != tuple(dataset.images.shape[1:]):
        raise UserError(
            f"model '{cfg.model.name}' takes inputs of shape {input_shape(cfg)}, but data '{data.name}' "
            f"gives {tuple(dataset.images.shape[1:])}; pick a model and dataset that agree"
        )
    batch_size = data.batch_size // world_size if train else (data.eval_batch_size or data.batch_size)
    try:
        return in_memory_views(DeviceLoader(
            dataset, batch_size, device, list(data.mean), list(data.std), train=train, seed=cfg.seed,
            crop_padding=cfg.augment.crop_padding, hflip=cfg.augment.hflip,
            pca_lighting=float(cfg.augment.pca_lighting), **shard,
        ), crops)
    except ValueError as err:
        raise UserError(f"data '{data.name}': {err}") from err
