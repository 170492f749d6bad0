"""Copy weights from a torchvision model into the same network built from YAML.

Our zoo files list their rows in the order torchvision registers its
modules, so the two state dicts hold the same tensors in the same order
under different names (``layers.4.layers.0.weight`` for ``layer1.0.conv1.weight``).
Entries are therefore paired by position, not by name; every pair must
agree in shape and in kind (``weight``, ``bias``, ``running_mean``, ...),
which catches a row written out of order or a conv given a bias it should
not have, instead of loading the wrong tensor silently.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Mapping

import torch
from torch import nn

from cnnbench.errors import UserError


def load_torchvision_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Load ``state_dict`` (parameters and buffers, from a torchvision model) into ``model`` by order."""
    ours = model.state_dict()
    theirs = list(state_dict.items())
    converted = OrderedDict()
    for index, ((our_key, our_value), (their_key, their_value)) in enumerate(zip(ours.items(), theirs)):
        where = (
            f"cannot load torchvision weights: entry {index}, ours '{our_key}' {tuple(our_value.shape)}"
            f" and torchvision's '{their_key}' {tuple(their_value.shape)},"
        )
        if _kind(our_key) != _kind(their_key):
            raise UserError(f"{where} are different kinds of tensor; are the model's rows in torchvision's order?")
        if our_value.shape != their_value.shape:
            raise UserError(f"{where} differ in shape; is this the same architecture?")
        converted[our_key] = their_value
    if len(ours) != len(theirs):
        raise UserError(
            f"cannot load torchvision weights: the model has {len(ours)} tensors, "
            f"torchvision's state dict {len(theirs)}; is this the same architecture?"
        )
    model.load_state_dict(converted)


def _kind(key: str) -> str:
    """The tensor's own name within its module: weight, bias, running_mean, ..."""
    return key.rsplit(".", 1)[-1]
