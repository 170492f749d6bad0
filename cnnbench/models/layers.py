"""The built-in ops. Each returns a plain torch module; names follow the papers."""

from __future__ import annotations

from typing import List, Optional, Union

import torch
from torch import nn

from cnnbench.models.registry import OpContext, register_op


def _spatial(ctx: OpContext, op: str) -> int:
    """Channels of a (C, H, W) input; a clear error for anything else."""
    if len(ctx.in_shape) != 3:
        raise ValueError(f"{op} needs a (channels, height, width) input, got {tuple(ctx.in_shape)}")
    return ctx.in_shape[0]


@register_op("conv")
def conv(
    ctx: OpContext,
    out: int,
    kernel: Union[int, List[int]],
    stride: Union[int, List[int]] = 1,
    padding: Union[int, List[int], str] = 0,
    dilation: Union[int, List[int]] = 1,
    groups: int = 1,
    bias: bool = True,
) -> nn.Module:
    return nn.Conv2d(_spatial(ctx, "conv"), out, kernel, stride, padding, dilation, groups, bias)


@register_op("linear")
def linear(ctx: OpContext, out: int, bias: bool = True) -> nn.Module:
    if len(ctx.in_shape) != 1:
        raise ValueError(f"linear needs a flat input, got {tuple(ctx.in_shape)}; put `flatten` before it")
    return nn.Linear(ctx.in_shape[0], out, bias)


@register_op("relu")
def relu(ctx: OpContext) -> nn.Module:
    # Not in place: in a graph, the tensor it reads may also feed a later
    # row (a residual shortcut), which an in-place ReLU would overwrite.
    return nn.ReLU()


@register_op("tanh")
def tanh(ctx: OpContext) -> nn.Module:
    return nn.Tanh()


@register_op("sigmoid")
def sigmoid(ctx: OpContext) -> nn.Module:
    return nn.Sigmoid()


@register_op("maxpool")
def maxpool(
    ctx: OpContext,
    kernel: Union[int, List[int]],
    stride: Optional[Union[int, List[int]]] = None,
    padding: Union[int, List[int]] = 0,
    ceil_mode: bool = False,
) -> nn.Module:
    _spatial(ctx, "maxpool")
    return nn.MaxPool2d(kernel, stride, padding, ceil_mode=ceil_mode)


@register_op("avgpool")
def avgpool(
    ctx: OpContext,
    kernel: Union[int, List[int]],
    stride: Optional[Union[int, List[int]]] = None,
    padding: Union[int, List[int]] = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
) -> nn.Module:
    _spatial(ctx, "avgpool")
    return nn.AvgPool2d(kernel, stride, padding, ceil_mode, count_include_pad)


@register_op("gap")
def global_average_pool(ctx: OpContext) -> nn.Module:
    """Global average pooling (NIN): (C, H, W) -> (C, 1, 1)."""
    _spatial(ctx, "gap")
    return nn.AdaptiveAvgPool2d(1)


@register_op("flatten")
def flatten(ctx: OpContext) -> nn.Module:
    return nn.Flatten()


@register_op("identity")
def identity(ctx: OpContext) -> nn.Module:
    return nn.Identity()


@register_op("dropout")
def dropout(ctx: OpContext, p: float = 0.5) -> nn.Module:
    """Dropout at the layer's own rate, or regularization.dropout when that is set."""
    rate = p if ctx.options.dropout is None else ctx.options.dropout
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
    return nn.Identity() if rate == 0 else nn.Dropout(rate)


@register_op("lrn")
def local_response_norm(
    ctx: OpContext, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0
) -> nn.Module:
    """Local response normalisation across channels (AlexNet section 3.3).

    Caffe's convention, which torch shares: b = a / (k + alpha/size * sum a^2)^beta.
    The paper writes alpha without the 1/size; Caffe's bvlc_alexnet uses
    size 5, alpha 1e-4, beta 0.75 in this convention. regularization.lrn=false
    turns the layer into identity.
    """
    _spatial(ctx, "lrn")
    return nn.LocalResponseNorm(size, alpha, beta, k) if ctx.options.lrn else nn.Identity()


@register_op("batchnorm")
def batchnorm(ctx: OpContext, eps: float = 1e-5, momentum: float = 0.1) -> nn.Module:
    if len(ctx.in_shape) == 3:
        return nn.BatchNorm2d(ctx.in_shape[0], eps, momentum)
    if len(ctx.in_shape) == 1:
        return nn.BatchNorm1d(ctx.in_shape[0], eps, momentum)
    raise ValueError(f"batchnorm needs a (C,) or (C, H, W) input, got {tuple(ctx.in_shape)}")


class Concat(nn.Module):
    def __init__(self, dim: int = 1):
        super().__init__()
        self.dim = dim

    def forward(self, inputs: List[torch.Tensor]) -> torch.Tensor:
        return torch.cat(inputs, self.dim)


class Add(nn.Module):
    def forward(self, inputs: List[torch.Tensor]) -> torch.Tensor:
        total = inputs[0]
        for tensor in inputs[1:]:
            total = total + tensor
        return total


@register_op("concat", multi_input=True)
def concat(ctx: OpContext) -> nn.Module:
    """Concatenate along channels (inception branches)."""
    return Concat(1)


@register_op("add", multi_input=True)
def add(ctx: OpContext) -> nn.Module:
    """Element-wise sum (residual shortcuts)."""
    return Add()


@register_op("adaptive_avgpool")
def adaptive_avgpool(ctx: OpContext, size: Union[int, List[int]]) -> nn.Module:
    """Average-pool to a fixed output size (torchvision's AlexNet/VGG heads)."""
    _spatial(ctx, "adaptive_avgpool")
    return nn.AdaptiveAvgPool2d(tuple(size) if isinstance(size, list) else size)


class ChannelShuffle(nn.Module):
    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        return x.view(n, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(n, c, h, w)


@register_op("channel_shuffle")
def channel_shuffle(ctx: OpContext, groups: int) -> nn.Module:
    """ShuffleNet's channel shuffle: (g, c/g) channel grid transposed to (c/g, g)."""
    channels = _spatial(ctx, "channel_shuffle")
    if groups < 1 or channels % groups:
        raise ValueError(f"channel_shuffle needs channels ({channels}) divisible by groups ({groups})")
    return ChannelShuffle(groups)


class ChannelSplit(nn.Module):
    def __init__(self, parts: int, index: int):
        super().__init__()
        self.parts, self.index = parts, index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.chunk(self.parts, dim=1)[self.index]


@register_op("channel_split")
def channel_split(ctx: OpContext, parts: int, index: int) -> nn.Module:
    """Part ``index`` of the channels cut into ``parts`` equal parts (ShuffleNet v2's split)."""
    channels = _spatial(ctx, "channel_split")
    if parts < 1 or channels % parts or not 0 <= index < parts:
        raise ValueError(f"channel_split needs channels ({channels}) divisible by parts ({parts}) and 0 <= index < parts")
    return ChannelSplit(parts, index)
