"""The built-in ops. Each returns a plain torch module; names follow the papers."""

from __future__ import annotations

from typing import List, Optional, Union

import torch
from torch import nn

from cnnbench.models.dropconnect import ACTIVATIONS, DropConnectLinear
from cnnbench.models.registry import LRN_CONVENTIONS, NORM_KINDS, OpContext, register_op
from cnnbench.models.spatial_transformer import SpatialTransformer


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
    bias_init: Optional[float] = None,
) -> nn.Module:
    """A 2-D convolution; a list kernel such as [3, 1] gives a k x 1 (spatially separable) one."""
    module = nn.Conv2d(_spatial(ctx, "conv"), out, kernel, stride, padding, dilation, groups, bias)
    return _init_bias(module, bias_init, "conv")


@register_op("linear")
def linear(ctx: OpContext, out: int, bias: bool = True, bias_init: Optional[float] = None) -> nn.Module:
    if len(ctx.in_shape) != 1:
        raise ValueError(f"linear needs a flat input, got {tuple(ctx.in_shape)}; put `flatten` before it")
    return _init_bias(nn.Linear(ctx.in_shape[0], out, bias), bias_init, "linear")


def _init_bias(module: nn.Module, value: Optional[float], op: str) -> nn.Module:
    """Start every bias at ``value`` (e.g. a highway gate's negative bias); None keeps torch's init."""
    if value is not None:
        if module.bias is None:
            raise ValueError(f"{op}: bias_init={value} needs bias: true")
        nn.init.constant_(module.bias, float(value))
    return module


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


class SamePaddedMaxPool2d(nn.MaxPool2d):
    """Max pooling with TensorFlow's (and so Keras') ``padding='SAME'``: out = ceil(in / stride) per side, the
    padding that needs split with the odd pixel at the bottom and right (tf.nn.max_pool's documented rule).

    For stride 2 on an even side, e.g. 3x3/2 on 74 (Xception's entry flow), that is 0 before and 1 after,
    which torch's symmetric ``padding`` cannot say. The pad is -inf, not zero, so no padded value can win
    a window (TF leaves them out), and it is worked out from each input's size as TF's is.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in zip(x.shape[-2:], _pair(self.kernel_size), _pair(self.stride)):
            total = max((-(-size // s) - 1) * s + k - size, 0)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        return super().forward(nn.functional.pad(x, (left, right, top, bottom), value=float("-inf")))


def _pair(value: Union[int, tuple, list]) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


@register_op("maxpool")
def maxpool(
    ctx: OpContext,
    kernel: Union[int, List[int]],
    stride: Optional[Union[int, List[int]]] = None,
    padding: Union[int, List[int], str] = 0,
    ceil_mode: bool = False,
) -> nn.Module:
    """Max pooling; ``padding: same`` is TensorFlow's 'SAME' (see SamePaddedMaxPool2d), for ports of Keras models."""
    _spatial(ctx, "maxpool")
    if isinstance(padding, str):
        if padding != "same":
            raise ValueError(f"maxpool: padding is a number, a list of numbers or 'same', got {padding!r}")
        if ceil_mode:
            raise ValueError("maxpool: padding 'same' fixes the output size (ceil(in / stride)); drop ceil_mode")
        return SamePaddedMaxPool2d(kernel, stride, 0)
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
    ctx: OpContext,
    size: int = 5,
    alpha: float = 1e-4,
    beta: float = 0.75,
    k: float = 2.0,
    convention: str = "cuda_convnet",
) -> nn.Module:
    """Local response normalisation across channels (AlexNet section 3.3).

    Two readings of the same numbers, as ``convention`` (or, for every lrn
    row of a model, model.lrn_convention) says:

    - ``paper``: b = a / (k + alpha * sum a^2)^beta, the formula AlexNet prints;
    - ``cuda_convnet``: b = a / (k + alpha/size * sum a^2)^beta, what the code
      that trained AlexNet computes (cuda-convnet's cmrnorm divides its
      ``scale`` by the window), and Caffe's and torch's convention too.

    With AlexNet's alpha 1e-4 the paper's reading normalises 5x more strongly.
    regularization.lrn=false turns the layer into identity.
    """
    _spatial(ctx, "lrn")
    convention = ctx.options.lrn_convention or convention
    if convention not in LRN_CONVENTIONS:
        raise ValueError(f"lrn: convention must be one of {', '.join(LRN_CONVENTIONS)}, got {convention!r}")
    # torch divides alpha by size, so the paper's alpha is torch's alpha * size.
    torch_alpha = alpha * size if convention == "paper" else alpha
    return nn.LocalResponseNorm(size, torch_alpha, beta, k) if ctx.options.lrn else nn.Identity()


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


# --- Convolution variants -------------------------------------------------


@register_op("conv_transpose")
def conv_transpose(
    ctx: OpContext,
    out: int,
    kernel: Union[int, List[int]],
    stride: Union[int, List[int]] = 1,
    padding: Union[int, List[int]] = 0,
    output_padding: Union[int, List[int]] = 0,
    dilation: Union[int, List[int]] = 1,
    groups: int = 1,
    bias: bool = True,
) -> nn.Module:
    """Transposed ("fractionally strided") convolution, the gradient of conv with respect to its input."""
    channels = _spatial(ctx, "conv_transpose")
    return nn.ConvTranspose2d(channels, out, kernel, stride, padding, output_padding, groups, bias, dilation)


@register_op("dwconv")
def depthwise_conv(
    ctx: OpContext,
    kernel: Union[int, List[int]],
    stride: Union[int, List[int]] = 1,
    padding: Union[int, List[int], str] = 0,
    dilation: Union[int, List[int]] = 1,
    multiplier: int = 1,
    bias: bool = True,
) -> nn.Module:
    """Depthwise convolution: one k x k filter (``multiplier`` filters) per input channel, groups = channels.

    MobileNet's depthwise layer (Howard et al. 2017, section 3.1) when
    followed by batchnorm/relu and a 1x1 conv, as its Fig. 3 draws it.
    """
    channels = _spatial(ctx, "dwconv")
    if multiplier < 1:
        raise ValueError(f"dwconv: multiplier must be at least 1, got {multiplier}")
    return nn.Conv2d(channels, channels * multiplier, kernel, stride, padding, dilation, channels, bias)


class SeparableConv2d(nn.Sequential):
    def __init__(self, depthwise: nn.Conv2d, pointwise: nn.Conv2d):
        super().__init__()
        self.depthwise = depthwise
        self.pointwise = pointwise


@register_op("sepconv")
def separable_conv(
    ctx: OpContext,
    out: int,
    kernel: Union[int, List[int]],
    stride: Union[int, List[int]] = 1,
    padding: Union[int, List[int], str] = 0,
    dilation: Union[int, List[int]] = 1,
    bias: bool = True,
) -> nn.Module:
    """Depthwise separable convolution: depthwise k x k, then pointwise 1 x 1, nothing between.

    Xception (Chollet 2017, section 2 and 4.7: no non-linearity between the
    two works best). The depthwise part has no bias: the pointwise bias
    follows it linearly, so a second one would add nothing. For MobileNet's
    BN + ReLU between the two, write a `dwconv` row and a 1x1 `conv` row.
    """
    channels = _spatial(ctx, "sepconv")
    depthwise = nn.Conv2d(channels, channels, kernel, stride, padding, dilation, channels, bias=False)
    return SeparableConv2d(depthwise, nn.Conv2d(channels, out, 1, bias=bias))


# --- Activations ----------------------------------------------------------


@register_op("leaky_relu")
def leaky_relu(ctx: OpContext, slope: float = 0.01) -> nn.Module:
    """max(x, slope * x); 0.01 is Maas, Hannun, Ng 2013's slope."""
    return nn.LeakyReLU(slope)


@register_op("prelu")
def prelu(ctx: OpContext, shared: bool = False, init: float = 0.25) -> nn.Module:
    """Parametric ReLU (He et al. 2015, section 2.1): a learned slope per channel, 0.25 at the start.

    ``shared: true`` is the paper's channel-shared variant (one slope per layer).
    """
    if len(ctx.in_shape) not in (1, 3):
        raise ValueError(f"prelu needs a (C,) or (C, H, W) input, got {tuple(ctx.in_shape)}")
    return nn.PReLU(1 if shared else ctx.in_shape[0], init)


@register_op("elu")
def elu(ctx: OpContext, alpha: float = 1.0) -> nn.Module:
    """Exponential linear unit (Clevert, Unterthiner, Hochreiter 2016)."""
    return nn.ELU(alpha)


@register_op("gelu")
def gelu(ctx: OpContext, approximate: str = "none") -> nn.Module:
    """x * Phi(x) (Hendrycks & Gimpel 2016); ``approximate: tanh`` is their tanh approximation."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be none or tanh, got {approximate!r}")
    return nn.GELU(approximate)


# --- Normalisation --------------------------------------------------------


@register_op("groupnorm")
def groupnorm(ctx: OpContext, groups: int = 32, eps: float = 1e-5) -> nn.Module:
    """Group normalisation (Wu & He 2018): statistics over each group of channels; G = 32 is the paper's default."""
    channels = ctx.in_shape[0]
    if len(ctx.in_shape) not in (1, 3):
        raise ValueError(f"groupnorm needs a (C,) or (C, H, W) input, got {tuple(ctx.in_shape)}")
    if groups < 1 or channels % groups:
        raise ValueError(f"groupnorm: {channels} channels are not divisible into {groups} groups; set groups")
    return nn.GroupNorm(groups, channels, eps)


@register_op("norm")
def norm(ctx: OpContext, groups: Optional[int] = None, eps: float = 1e-5) -> nn.Module:
    """The model's norm slot: batchnorm, groupnorm or identity, as model.norm=bn|gn|none says.

    A model written with `norm` rows runs the BN-vs-GN ablation (Wu & He
    2018, Fig. 1) with one override. gn uses ``groups`` when the row gives
    it, else model.norm_groups (32).
    """
    kind = ctx.options.norm
    if kind not in NORM_KINDS:
        raise ValueError(f"model.norm={kind!r} is unknown; choose one of: {', '.join(NORM_KINDS)}")
    if kind == "bn":
        return batchnorm(ctx, eps)
    if kind == "gn":
        return groupnorm(ctx, groups or ctx.options.norm_groups, eps)
    return nn.Identity()


# --- Regularisers ---------------------------------------------------------


@register_op("dropconnect")
def dropconnect(
    ctx: OpContext,
    out: int,
    p: float = 0.5,
    activation: str = "relu",
    samples: int = 1000,
    per_example: bool = True,
    seed: int = 0,
) -> nn.Module:
    """A fully connected layer with DropConnect and its activation (Wan et al. 2013); see dropconnect.py.

    ``p`` is the probability of *dropping* a weight, as for `dropout` (the
    paper's p is the keep probability, 1 - p here). The activation is part
    of the layer because inference averages it over sampled pre-activations
    (Algorithm 2), so do not add one after it. regularization.dropout does
    not change this layer. ``per_example: false`` draws one mask per batch,
    for layers too large for batch x out x in masks.
    """
    if len(ctx.in_shape) != 1:
        raise ValueError(f"dropconnect needs a flat input, got {tuple(ctx.in_shape)}; put `flatten` before it")
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropconnect: p must be in [0, 1), got {p}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"dropconnect: activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
    if samples < 1:
        raise ValueError(f"dropconnect: samples must be at least 1, got {samples}")
    return DropConnectLinear(ctx.in_shape[0], out, p, activation, samples, per_example, seed)


# --- Merging tensors (read with `from: [a, b, ...]`) -----------------------


def _count_inputs(ctx: OpContext, op: str, count: Optional[int], what: str) -> None:
    n = len(ctx.in_shapes)
    if (count is None and n < 2) or (count is not None and n != count):
        raise ValueError(f"{op} reads {what} with `from: [...]`; it got {n} tensor{'s' if n != 1 else ''}")


class Multiply(nn.Module):
    def forward(self, inputs: List[torch.Tensor]) -> torch.Tensor:
        product = inputs[0]
        for tensor in inputs[1:]:
            product = product * tensor
        return product


@register_op("multiply", multi_input=True)
def multiply(ctx: OpContext) -> nn.Module:
    """Element-wise product with broadcasting: SE's channel scaling, (C, H, W) x (C, 1, 1)."""
    _count_inputs(ctx, "multiply", None, "two or more tensors")
    try:
        torch.broadcast_shapes(*ctx.in_shapes)
    except RuntimeError:
        raise ValueError("multiply: the shapes do not broadcast; each size must match or be 1") from None
    return Multiply()


class HighwayGate(nn.Module):
    def forward(self, inputs: List[torch.Tensor]) -> torch.Tensor:
        transform, gate, carry = inputs
        return gate * transform + (1 - gate) * carry


@register_op("highway_gate", multi_input=True)
def highway_gate(ctx: OpContext) -> nn.Module:
    """y = H * T + x * (1 - T) (Srivastava, Greff, Schmidhuber 2015, eq. 3), read as `from: [H, T, x]`.

    H and T are ordinary rows (T ends in `sigmoid`, its bias started
    negative with `bias_init`, section 2.2), so any layer can be a highway
    layer; see conf/model/highway_cifar.yaml.
    """
    _count_inputs(ctx, "highway_gate", 3, "[H, T, x]: transform, gate, carry")
    transform, gate, carry = (tuple(s) for s in ctx.in_shapes)
    if transform != carry or not _broadcasts_to(gate, carry):
        raise ValueError(
            f"highway_gate: H {transform} must have the shape of x {carry}, and T {gate} must broadcast to it"
        )
    return HighwayGate()


def _broadcasts_to(shape: tuple, target: tuple) -> bool:
    try:
        return torch.broadcast_shapes(shape, target) == torch.Size(target)
    except RuntimeError:
        return False


# --- Spatial transformer ---------------------------------------------------


@register_op("spatial_transform", multi_input=True)
def spatial_transform(ctx: OpContext, size: Optional[List[int]] = None) -> nn.Module:
    """Warp an image by the affine transform its localisation net regresses (Jaderberg et al. 2015).

    Reads ``from: [image, features]``: the (C, H, W) image and the flat output
    of a localisation net written as ordinary rows. Holds the final theta
    regression (zero weights, identity bias: starts as the identity), the
    grid generator and the bilinear sampler; see spatial_transformer.py.
    ``size: [H, W]`` sets the output's size (default: the input's).
    """
    _count_inputs(ctx, "spatial_transform", 2, "[image, features]")
    image, features = ctx.in_shapes
    if len(image) != 3 or len(features) != 1:
        raise ValueError(
            f"spatial_transform reads [image (C, H, W), features (N,)], got {tuple(image)} and {tuple(features)}; "
            "end the localisation net with `flatten`"
        )
    if size is not None and (not isinstance(size, list) or len(size) != 2):
        raise ValueError(f"spatial_transform: size is [height, width], got {size!r}")
    return SpatialTransformer(features[0], size)


# --- Shortcuts and normalisations of the CIFAR-era networks ------------------


class PadChannels(nn.Module):
    def __init__(self, extra: int, stride: int):
        super().__init__()
        self.extra, self.stride = extra, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return nn.functional.pad(x, (0, 0, 0, 0, 0, self.extra))


@register_op("pad_channels")
def pad_channels(ctx: OpContext, out: int, stride: int = 1) -> nn.Module:
    """ResNet's parameter-free shortcut, option A (He et al. 2016, sections 3.3 and 4.2).

    Keeps every ``stride``-th row and column (the identity "performed with a
    stride of 2" across feature-map sizes) and appends zero channels up to
    ``out`` ("extra zero entries padded for increasing dimensions"). No
    library op does both; the zeros go after the input's channels.
    """
    channels = _spatial(ctx, "pad_channels")
    if out < channels:
        raise ValueError(f"pad_channels: out ({out}) must be at least the input's {channels} channels")
    if stride < 1:
        raise ValueError(f"pad_channels: stride must be at least 1, got {stride}")
    return PadChannels(out - channels, stride)


class WithinChannelLRN(nn.Module):
    def __init__(self, size: int, alpha: float, beta: float, k: float):
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The mean over the size x size window, zeros beyond the border counted,
        # is (1 / size^2) * the sum: cuda-convnet's and Caffe's scaling.
        mean_square = nn.functional.avg_pool2d(x * x, self.size, 1, self.size // 2, count_include_pad=True)
        return x / (self.k + self.alpha * mean_square).pow(self.beta)


@register_op("lrn_within_channel")
def lrn_within_channel(
    ctx: OpContext, size: int = 3, alpha: float = 5e-5, beta: float = 0.75, k: float = 1.0
) -> nn.Module:
    """Local response normalisation over a size x size window of the same map.

    b = a / (k + alpha / size^2 * sum of a^2 over the window)^beta: cuda-convnet's
    `rnorm` layer (its CIFAR-10 nets, e.g. layers-18pct.cfg) and Caffe's LRN
    with norm_region WITHIN_CHANNEL; torch has only the across-channels kind
    (the `lrn` op). regularization.lrn=false turns it into identity, like `lrn`.
    """
    _spatial(ctx, "lrn_within_channel")
    if size < 1 or size % 2 == 0:
        raise ValueError(f"lrn_within_channel: size must be odd (a centred window), got {size}")
    return WithinChannelLRN(size, alpha, beta, k) if ctx.options.lrn else nn.Identity()
