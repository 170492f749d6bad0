"""What `train`, `eval` and `summary` build from a composed config besides the data: the model and the seeds."""

from __future__ import annotations

import random
from typing import Optional

import numpy as np
import torch
from omegaconf import DictConfig

from cnnbench.config import input_shape, plain
from cnnbench.models import BuildOptions, Network, build_model


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def model_for(cfg: DictConfig, source: Optional[str] = None) -> Network:
    """The network `cfg.model` describes, with the run's regularization switches applied."""
    options = BuildOptions(dropout=cfg.regularization.dropout, lrn=cfg.regularization.lrn)
    spec = plain(cfg.model)
    return build_model(spec, input_shape(cfg), options, source or f"model '{cfg.model.name}'")
