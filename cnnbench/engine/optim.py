"""The optimizer, from the `optim` and `regularization` groups.

Weight decay comes in the papers' two conventions:

- coupled (L2): the decay term is added to the gradient before momentum /
  Adam's moments, as in AlexNet and Caffe (``optim.decoupled_weight_decay=false``);
- decoupled: weights shrink by ``lr * weight_decay`` each step, apart from
  the gradient (Loshchilov & Hutter 2019, AdamW) (``true``).

``null`` takes each optimizer's own convention: coupled for SGD, decoupled
for AdamW.
"""

from __future__ import annotations

from typing import List

import torch
from omegaconf import DictConfig
from torch import nn


# Parameters of these modules are exempt from decay with
# regularization.no_decay_norm_bias=true, and so are the biases of
# convolutions and linear layers; chosen by module type, never by name.
NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)
BIASED_TYPES = (nn.modules.conv._ConvNd, nn.Linear)


def base_lr(cfg: DictConfig) -> float:
    """optim.lr, scaled by batch size when optim.reference_batch_size is set
    (the linear scaling rule of Goyal et al. 2017)."""
    lr = cfg.optim.lr
    if cfg.optim.reference_batch_size:
        lr *= cfg.data.batch_size / cfg.optim.reference_batch_size
    return lr


def parameter_groups(model: nn.Module, weight_decay: float, no_decay_norm_bias: bool) -> List[dict]:
    """Parameters grouped by their learning-rate factor and weight decay.

    Each parameter takes the ``lr_mult`` / ``decay_mult`` (Caffe's per-layer
    multipliers, as (weights, biases) pairs) of the nearest layer or block
    that sets them in the model file, else 1; with ``no_decay_norm_bias``,
    norm layers and conv/linear biases get no decay at all.
    """
    groups: dict = {}
    seen: set = set()

    def visit(module: nn.Module, mults: dict) -> None:
        mults = {**mults, **getattr(module, "param_mults", {})}
        for param in module.parameters(recurse=False):
            if id(param) in seen or not param.requires_grad:
                continue
            seen.add(id(param))
            is_bias = param is getattr(module, "bias", None)
            exempt = no_decay_norm_bias and (isinstance(module, NORM_TYPES) or (isinstance(module, BIASED_TYPES) and is_bias))
            lr_mult = mults.get("lr_mult", (1.0, 1.0))[is_bias]
            decay = 0.0 if exempt else weight_decay * mults.get("decay_mult", (1.0, 1.0))[is_bias]
            groups.setdefault((lr_mult, decay), []).append(param)
        for child in module.children():
            visit(child, mults)

    visit(model, {})
    return [{"params": params, "lr_mult": lr_mult, "weight_decay": decay} for (lr_mult, decay), params in groups.items()]


def make_optimizer(cfg: DictConfig, model: nn.Module) -> torch.optim.Optimizer:
    """The optimizer of ``cfg`` (checked by cnnbench.validate.validate) over ``model``'s parameter groups."""
    optim, reg = cfg.optim, cfg.regularization
    decoupled = optim.decoupled_weight_decay
    if decoupled is None:
        decoupled = optim.name == "adamw"
    groups = parameter_groups(model, reg.weight_decay, reg.no_decay_norm_bias)
    if optim.name == "sgd":
        if decoupled:
            for group in groups:
                group["decoupled_weight_decay"], group["weight_decay"] = group["weight_decay"], 0.0
        optimizer = torch.optim.SGD(groups, lr=optim.lr, momentum=reg.momentum, nesterov=optim.nesterov)
        if decoupled:
            optimizer.register_step_pre_hook(decoupled_decay)
        return optimizer
    if optim.name != "adamw":
        raise ValueError(f"no optimizer named {optim.name!r}")  # the schema's OptimName lists only these two
    adam = torch.optim.AdamW if decoupled else torch.optim.Adam
    return adam(groups, lr=optim.lr, betas=tuple(optim.betas), eps=optim.eps)


@torch.no_grad()
def decoupled_decay(optimizer: torch.optim.Optimizer, args, kwargs) -> None:
    """Before each SGD step, shrink weights by lr * weight_decay (SGDW, Loshchilov & Hutter)."""
    for group in optimizer.param_groups:
        rate = group.get("decoupled_weight_decay", 0.0) * group["lr"]
        if rate:
            for param in group["params"]:
                if param.grad is not None:
                    param.mul_(1.0 - rate)
