"""Plain-PyTorch reference definitions of the zoo's paper-only models.

Each network here is written directly from its paper's table or figure with
``torch.nn`` modules; nothing reads conf/model/*.yaml or cnnbench's builder.
tests/test_reference_nets.py builds the zoo model, copies its tensors into
the reference with :func:`copy_weights` (by position: the reference
registers its parameters and buffers in the order the paper lists the
layers, which is the order of the model file's rows) and checks that both
give the same outputs. Equal outputs after a positional copy is what proves
the structure that counts and shapes do not see: which pooling, where each
ReLU sits, what is added to what, the channel shuffles, the auxiliary heads.

Where a model file makes a documented choice the paper leaves open (or
departs from it on purpose, saying so in its header), the reference follows
that choice and says so in a comment. Parameter-free operations are modules
(pools, ReLUs, the shuffle) or plain functions in ``forward``; the tests
make "mutants" by swapping one of them, to show a comparison can fail.
"""

from __future__ import annotations

from functools import partial
from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

# --- Copying weights ------------------------------------------------------------------------------


def copy_weights(reference: nn.Module, model: nn.Module) -> None:
    """Copy every parameter and buffer of ``model`` into ``reference``, by position.

    Both state_dicts must list the same number of tensors, each pair with the
    same shape and the same kind (``weight``, ``bias``, ``running_mean``, ...).
    One equivalence is allowed: a reference fully connected weight (out, in)
    may take a model's 1x1 convolution weight (out, in, 1, 1), the same
    numbers (SE blocks written as 1x1 convs on the pooled map).
    """
    source = list(model.state_dict().items())
    target = list(reference.state_dict().items())
    assert len(source) == len(target), (
        f"the model has {len(source)} tensors, the reference {len(target)}"
    )
    loaded = {}
    for (s_name, s), (t_name, t) in zip(source, target):
        same_kind = s_name.rsplit(".", 1)[-1] == t_name.rsplit(".", 1)[-1]
        fc_as_1x1 = t.dim() == 2 and tuple(s.shape) == (*t.shape, 1, 1)
        assert same_kind and (s.shape == t.shape or fc_as_1x1), (
            f"reference {t_name} {tuple(t.shape)} vs model {s_name} {tuple(s.shape)}"
        )
        loaded[t_name] = s.detach().reshape(t.shape).clone()
    reference.load_state_dict(loaded, strict=True)


# --- Shared pieces --------------------------------------------------------------------------------


class PaperLRN(nn.Module):
    """Local response normalisation across maps, in AlexNet's own formula (section 3.3):

    b_i = a_i / (k + alpha * sum_{j = max(0, i - n/2)}^{min(N - 1, i + n/2)} a_j^2)^beta.
    Note: alpha is the paper's, *not* divided by n (torch's and Caffe's divide it).
    """

    def __init__(self, n: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0):
        super().__init__()
        self.n, self.alpha, self.beta, self.k = n, alpha, beta, k

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        half = self.n // 2
        squares = F.pad(a * a, (0, 0, 0, 0, half, half))  # zero maps beyond the first and last
        total = sum(squares[:, j : j + a.shape[1]] for j in range(self.n))
        return a / (self.k + self.alpha * total) ** self.beta


class WithinMapLRN(nn.Module):
    """cuda-convnet's ``rnorm``: b = a / (k + scale / size^2 * sum of a^2 over the size x size window)^pow,
    the window clipped at the border (zeros beyond it)."""

    def __init__(self, size: int = 3, scale: float = 5e-5, power: float = 0.75, k: float = 1.0):
        super().__init__()
        self.size, self.scale, self.power, self.k = size, scale, power, k

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        channels = a.shape[1]
        window = torch.ones(channels, 1, self.size, self.size, dtype=a.dtype)
        total = F.conv2d(a * a, window, padding=self.size // 2, groups=channels)
        return a / (self.k + self.scale / self.size**2 * total) ** self.power


class ChannelShuffle(nn.Module):
    """ShuffleNet section 3.1: reshape the channels to (g, n), transpose to (n, g), flatten."""

    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        grid = x.reshape(n, self.groups, c // self.groups, h, w)
        return grid.permute(0, 2, 1, 3, 4).reshape(n, c, h, w)


def conv_relu(c_in: int, c_out: int, k: int, stride: int = 1, padding: int = 0, groups: int = 1) -> List[nn.Module]:
    return [nn.Conv2d(c_in, c_out, k, stride, padding, groups=groups), nn.ReLU()]


def conv_bn_relu(c_in: int, c_out: int, k: int, stride: int = 1, padding: int = 0,
                 bias: bool = False, eps: float = 1e-5) -> List[nn.Module]:
    return [nn.Conv2d(c_in, c_out, k, stride, padding, bias=bias), nn.BatchNorm2d(c_out, eps), nn.ReLU()]


# --- LeNet-5 --------------------------------------------------------------------------------------


class ScaledTanh(nn.Module):
    """LeCun et al. 1998, eq. 6 and appendix A: f(a) = A tanh(S a), A = 1.7159, S = 2/3."""

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return 1.7159 * torch.tanh(2.0 / 3.0 * a)


def lenet5(num_classes: int = 10, paper_squashing: bool = True) -> nn.Sequential:
    """LeNet-5, Fig. 2 and section II.B: C1-S2-C3-S4-C5-F6-output on 32x32.

    Documented modernisations of conf/model/lenet5.yaml, followed here: S2/S4
    are plain 2x2 averages (no trainable coefficient and bias), C3 sees all six
    S2 maps (not Table I's partial wiring), the output is a linear layer (no RBF).
    ``paper_squashing=True`` keeps what the paper says and the file's header
    does not mention: every unit up to F6, the S2/S4 units included, passes
    through f(a) = 1.7159 tanh(2a/3). ``False``: plain tanh, nothing after S2/S4.
    """
    f = ScaledTanh if paper_squashing else nn.Tanh
    after_pool = ScaledTanh if paper_squashing else nn.Identity
    return nn.Sequential(
        nn.Conv2d(1, 6, 5), f(), nn.AvgPool2d(2, 2), after_pool(),  # C1 (6@28x28), S2 (6@14x14)
        nn.Conv2d(6, 16, 5), f(), nn.AvgPool2d(2, 2), after_pool(),  # C3 (16@10x10), S4 (16@5x5)
        nn.Conv2d(16, 120, 5), f(), nn.Flatten(),  # C5 (120@1x1)
        nn.Linear(120, 84), f(),  # F6
        nn.Linear(84, num_classes),  # output
    )


# --- AlexNet, ZFNet -------------------------------------------------------------------------------


def alexnet_classifier(features: int, num_classes: int) -> List[nn.Module]:
    """AlexNet section 3.5 / 4.2: FC 4096, FC 4096 (ReLU, dropout 0.5 in both), FC classes."""
    return [nn.Flatten(),
            nn.Linear(features, 4096), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(4096, num_classes)]


def alexnet(num_classes: int = 1000, pool: int = 3, towers: int = 2) -> nn.Sequential:
    """Krizhevsky et al. 2012, Figure 2 and sections 3.3-3.5, on 227x227 (the file's documented size).

    The two GPUs are groups=2 where a layer sees only its own GPU's maps
    (conv2, conv4, conv5); conv3 and the FC layers see both. Response
    normalisation (k=2, n=5, alpha=1e-4, beta=0.75) after the ReLUs of conv1 and
    conv2; 3x3 stride-2 max pooling after both normalisations and after conv5.
    ``pool=2``: section 3.4's comparison network, s = z = 2 (2x2 stride-2 pools),
    whose outputs have the same sizes (55 -> 27 -> 13 -> 6 either way).
    ``towers=1``: section 3.2's one-GPU comparison network, "half as many kernels in each
    convolutional layer" but the last (footnote 2: conv5 keeps its 256, and the FC layers
    theirs), one tower, so no layer is grouped.
    """
    groups, (c1, c2, c3, c4) = (2, (96, 256, 384, 384)) if towers == 2 else (1, (48, 128, 192, 192))
    return nn.Sequential(
        nn.Conv2d(3, c1, 11, 4), nn.ReLU(), PaperLRN(), nn.MaxPool2d(pool, 2),  # 55 -> 27
        nn.Conv2d(c1, c2, 5, padding=2, groups=groups), nn.ReLU(), PaperLRN(), nn.MaxPool2d(pool, 2),  # 27 -> 13
        nn.Conv2d(c2, c3, 3, padding=1), nn.ReLU(),
        nn.Conv2d(c3, c4, 3, padding=1, groups=groups), nn.ReLU(),
        nn.Conv2d(c4, 256, 3, padding=1, groups=groups), nn.ReLU(), nn.MaxPool2d(pool, 2),  # 13 -> 6
        *alexnet_classifier(256 * 6 * 6, num_classes),
    )


def zfnet(num_classes: int = 1000) -> nn.Sequential:
    """Zeiler & Fergus 2014, Figure 3: layers 1-2 are conv -> ReLU -> 3x3/2 max pool -> contrast
    normalisation across maps; 110 -> 55 -> 26 -> 13 -> 13 -> 13 -> 6.

    Documented choices of conf/model/zfnet.yaml: conv1 padding 1 and pools that
    round up (to get Figure 3's sizes), and AlexNet's LRN parameters for the
    contrast normalisation (the paper gives none).
    """
    return nn.Sequential(
        nn.Conv2d(3, 96, 7, 2, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2, ceil_mode=True), PaperLRN(),
        nn.Conv2d(96, 256, 5, 2), nn.ReLU(), nn.MaxPool2d(3, 2, ceil_mode=True), PaperLRN(),
        nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2, ceil_mode=True),
        *alexnet_classifier(256 * 6 * 6, num_classes),
    )


def alexnet_cifar(num_classes: int = 10) -> nn.Sequential:
    """cuda-convnet's layers-18pct.cfg / layer-params-18pct.cfg, layer by layer:
    conv1 (5x5, 32, pad 2) -> pool1 max 3/2 with neuron=relu -> rnorm1 (3x3, scale 5e-5,
    pow 0.75) -> conv2 (5x5, 32, pad 2, relu) -> pool2 avg 3/2 -> rnorm2 -> conv3 (5x5, 64,
    pad 2, relu) -> pool3 avg 3/2 -> fc10. Pools round up (cuda-convnet's output size)."""
    return nn.Sequential(
        nn.Conv2d(3, 32, 5, padding=2), nn.MaxPool2d(3, 2, ceil_mode=True), nn.ReLU(), WithinMapLRN(),
        nn.Conv2d(32, 32, 5, padding=2), nn.ReLU(), nn.AvgPool2d(3, 2, ceil_mode=True), WithinMapLRN(),
        nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.AvgPool2d(3, 2, ceil_mode=True),
        nn.Flatten(), nn.Linear(64 * 4 * 4, num_classes),
    )


# --- DropConnect (Wan et al. 2013) ----------------------------------------------------------------


class DropConnectInference(nn.Module):
    """A DropConnect fully connected layer at inference, Wan et al. 2013, section 3 and Algorithm 2.

    With each weight (the bias included, a weight on a constant input of 1) kept with probability q,
    u = (M * W) v + (m * b) is approximated by a Gaussian with mean q (W v + b) and variance
    q (1 - q) ((W * W)(v * v) + b * b); the output is E[relu(u)], estimated as the average of relu over
    ``samples`` draws of u. The draws: standard normals from a generator seeded with ``seed`` at every
    call, one (samples, out) matrix shared by every example of a batch (cnnbench's documented scheme,
    which makes inference deterministic; the paper draws at random). ``mean_network=True`` is the
    dropout-style approximation relu(q (W v + b)) the paper argues against.
    """

    def __init__(self, c_in: int, c_out: int, p: float = 0.5, samples: int = 1000, seed: int = 0,
                 mean_network: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(c_out, c_in))
        self.bias = nn.Parameter(torch.empty(c_out))
        self.q, self.samples, self.seed, self.mean_network = 1.0 - p, samples, seed, mean_network

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        mean = self.q * (v @ self.weight.T + self.bias)
        if self.mean_network:
            return F.relu(mean)
        var = self.q * (1.0 - self.q) * ((v * v) @ (self.weight * self.weight).T + self.bias * self.bias)
        z = torch.randn(self.samples, self.weight.shape[0], generator=torch.Generator().manual_seed(self.seed),
                        dtype=v.dtype)
        return F.relu(mean[None] + var.sqrt()[None] * z[:, None]).mean(dim=0)


def dropconnect_cifar(num_classes: int = 10, arm: str = "dropconnect") -> nn.Sequential:
    """Section 6.3 / Table 4: cuda-convnet's layers-80sec.cfg feature extractor (conv 5x5/32 pad 2 ->
    3x3/2 max pool -> ReLU; conv 5x5/32 -> ReLU -> 3x3/2 average pool; conv 5x5/64 -> ReLU -> 3x3/2
    average pool; pools round up: 32 -> 16 -> 8 -> 4), then "a 64 unit fully connected layer which
    uses No-Drop, Dropout, or DropConnect" (ReLU; ``arm``: nodrop, dropout or dropconnect, rate 0.5),
    then the linear classifier."""
    if arm == "dropconnect":
        fc64 = [DropConnectInference(64 * 4 * 4, 64, 0.5)]
    else:
        fc64 = [nn.Linear(64 * 4 * 4, 64), nn.ReLU(), *([nn.Dropout(0.5)] if arm == "dropout" else [])]
    return nn.Sequential(
        nn.Conv2d(3, 32, 5, padding=2), nn.MaxPool2d(3, 2, ceil_mode=True), nn.ReLU(),
        nn.Conv2d(32, 32, 5, padding=2), nn.ReLU(), nn.AvgPool2d(3, 2, ceil_mode=True),
        nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.AvgPool2d(3, 2, ceil_mode=True),
        nn.Flatten(), *fc64, nn.Linear(64, num_classes),
    )


# --- Network in Network ---------------------------------------------------------------------------


def mlpconv(c_in: int, widths: Sequence[int], k: int, stride: int = 1, padding: int = 0) -> List[nn.Module]:
    """Lin et al. 2014, section 3.1 / Figure 2: a k x k conv then two 1x1 ("cccp") convs, ReLU after each."""
    c1, c2, c3 = widths
    return [*conv_relu(c_in, c1, k, stride, padding), *conv_relu(c1, c2, 1), *conv_relu(c2, c3, 1)]


def nin_cifar(num_classes: int = 10) -> nn.Sequential:
    """NIN for CIFAR-10 (section 4.2; the authors' Caffe model, as the file documents):
    three mlpconvs 192-160-96 (5x5) / 192-192-192 (5x5) / 192-192-classes (3x3),
    3x3/2 max then average pooling (rounding up), dropout 0.5 between mlpconvs,
    global average pooling over the per-class maps (section 3.2)."""
    return nn.Sequential(
        *mlpconv(3, (192, 160, 96), 5, padding=2), nn.MaxPool2d(3, 2, ceil_mode=True), nn.Dropout(0.5),
        *mlpconv(96, (192, 192, 192), 5, padding=2), nn.AvgPool2d(3, 2, ceil_mode=True), nn.Dropout(0.5),
        *mlpconv(192, (192, 192, num_classes), 3, padding=1),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    )


def nin_cifar_fc(num_classes: int = 10) -> nn.Sequential:
    """Section 4.6's comparison network: nin_cifar's three mlpconvs unchanged, global average pooling
    replaced by a fully connected layer on the last mlpconv's classes x 8 x 8 maps, with dropout 0.5
    before it (the paper's "fully connected + dropout" variant; one layer, the file's documented
    reading, as the section gives no sizes)."""
    return nn.Sequential(
        *mlpconv(3, (192, 160, 96), 5, padding=2), nn.MaxPool2d(3, 2, ceil_mode=True), nn.Dropout(0.5),
        *mlpconv(96, (192, 192, 192), 5, padding=2), nn.AvgPool2d(3, 2, ceil_mode=True), nn.Dropout(0.5),
        *mlpconv(192, (192, 192, num_classes), 3, padding=1),
        nn.Flatten(), nn.Dropout(0.5), nn.Linear(num_classes * 8 * 8, num_classes),
    )


def nin_cifar_no_cccp(num_classes: int = 10) -> nn.Sequential:
    """nin_cifar without its cccp layers: each mlpconv is only its k x k convolution and ReLU (the
    "GLM" layer of section 3.1 that mlpconv replaces), so the third conv gives the class maps; the
    pools, dropout and global average pooling are nin_cifar's. Not a network of the paper."""
    return nn.Sequential(
        *conv_relu(3, 192, 5, padding=2), nn.MaxPool2d(3, 2, ceil_mode=True), nn.Dropout(0.5),
        *conv_relu(192, 192, 5, padding=2), nn.AvgPool2d(3, 2, ceil_mode=True), nn.Dropout(0.5),
        *conv_relu(192, num_classes, 3, padding=1),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    )


def nin_imagenet(num_classes: int = 1000) -> nn.Sequential:
    """NIN for ImageNet (the authors' Caffe model): mlpconvs 96 (11x11/4), 256 (5x5), 384 (3x3),
    1024-1024-classes (3x3), each of the first three followed by 3x3/2 max pooling (rounding up),
    dropout 0.5 before the last, global average pooling."""
    return nn.Sequential(
        *mlpconv(3, (96, 96, 96), 11, stride=4), nn.MaxPool2d(3, 2, ceil_mode=True),
        *mlpconv(96, (256, 256, 256), 5, padding=2), nn.MaxPool2d(3, 2, ceil_mode=True),
        *mlpconv(256, (384, 384, 384), 3, padding=1), nn.MaxPool2d(3, 2, ceil_mode=True),
        nn.Dropout(0.5),
        *mlpconv(384, (1024, 1024, num_classes), 3, padding=1),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    )


# --- CIFAR ResNets and plain nets -----------------------------------------------------------------


def option_a_shortcut(x: torch.Tensor, channels: int, stride: int) -> torch.Tensor:
    """He et al. 2016, section 3.3 option A / 4.2: identity, performed with a stride, zero-padded
    with extra channels for the increased dimension."""
    sub = x[:, :, ::stride, ::stride]
    zeros = sub.new_zeros(sub.shape[0], channels - sub.shape[1], *sub.shape[2:])
    return torch.cat([sub, zeros], dim=1)


class CifarBlock(nn.Module):
    """Fig. 2 (two 3x3 convs, BN after each, ReLU after BN, the second ReLU after the addition);
    ``residual=False`` is the plain net's pair of layers (Fig. 6 left)."""

    def __init__(self, c_in: int, c_out: int, stride: int, residual: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.stride, self.residual = stride, residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.residual:
            out = out + option_a_shortcut(x, out.shape[1], self.stride)
        return F.relu(out)


class CifarResNet(nn.Module):
    """He et al. 2016, section 4.2: 3x3 conv (16), three stages of n blocks on 32/16/8 maps with
    16/32/64 filters (stride 2 on each stage's first conv), global average pool, FC: 6n + 2 layers."""

    def __init__(self, n: int, residual: bool = True, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        blocks, c_in = [], 16
        for width, stride in ((16, 1), (32, 2), (64, 2)):
            for i in range(n):
                blocks.append(CifarBlock(c_in, width, stride if i == 0 else 1, residual))
                c_in = width
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(F.relu(self.bn1(self.conv1(x))))
        return self.fc(x.mean(dim=(2, 3)))


# --- VGG ------------------------------------------------------------------------------------------

# Simonyan & Zisserman 2015, Table 1: a number is conv3-<width>, "1x1-<w>" conv1-<w>, "M" a 2x2/2
# max pool, "LRN" AlexNet's local response normalisation (section 2.2: its parameters are AlexNet's).
VGG_TABLE_1 = {
    "A-LRN": [64, "LRN", "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "C": [64, 64, "M", 128, 128, "M", 256, 256, "1x1-256", "M",
          512, 512, "1x1-512", "M", 512, 512, "1x1-512", "M"],
}


def vgg_layers(config: Sequence) -> Tuple[List[nn.Module], int]:
    """Table 1's columns as layers; every conv has stride 1, 'same' padding and a ReLU (section 2.1)."""
    layers, c_in = [], 3
    for entry in config:
        if entry == "M":
            layers.append(nn.MaxPool2d(2, 2))
        elif entry == "LRN":
            layers.append(PaperLRN())
        elif isinstance(entry, str):  # "1x1-<width>"
            width = int(entry.split("-")[1])
            layers += conv_relu(c_in, width, 1)
            c_in = width
        else:
            layers += conv_relu(c_in, entry, 3, padding=1)
            c_in = entry
    return layers, c_in


def vgg(config: str, num_classes: int = 1000) -> nn.Sequential:
    """Table 1 configuration ``config`` at 224x224, then FC-4096, FC-4096, FC-classes with dropout
    0.5 after the first two (section 3.1)."""
    layers, c_out = vgg_layers(VGG_TABLE_1[config])
    return nn.Sequential(*layers, *alexnet_classifier(c_out * 7 * 7, num_classes))


def vgg16_cifar(num_classes: int = 10) -> nn.Sequential:
    """Configuration D's 13 convs as szagoruyko/cifar.torch's vgg_bn_drop.lua (the file's source):
    ConvBNReLU (BN eps 1e-3), dropout 0.3 after the first conv and 0.4 after every other conv but
    a stage's last, 2x2/2 max pools (ceil); classifier dropout 0.5, FC 512, BN, ReLU, dropout 0.5, FC."""
    stages = [(64, 2, 0.3), (128, 2, 0.4), (256, 3, 0.4), (512, 3, 0.4), (512, 3, 0.4)]
    layers, c_in = [], 3
    for width, convs, p in stages:
        for i in range(convs):
            layers += conv_bn_relu(c_in, width, 3, padding=1, bias=True, eps=1e-3)
            if i < convs - 1:
                layers.append(nn.Dropout(p))
            c_in = width
        layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
    return nn.Sequential(
        *layers, nn.Flatten(),
        nn.Dropout(0.5), nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(),
        nn.Dropout(0.5), nn.Linear(512, num_classes),
    )


# --- GoogLeNet and its BN relatives ---------------------------------------------------------------

# Szegedy et al. 2015, Table 1: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj.
GOOGLENET_TABLE_1 = {
    "3a": (64, 96, 128, 16, 32, 32), "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64), "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64), "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128), "5b": (384, 192, 384, 48, 128, 128),
}


def module_width(widths: Sequence[int]) -> int:
    c1, _, c3, _, c5, proj = widths
    return c1 + c3 + c5 + proj


class Inception(nn.Module):
    """GoogLeNet Figure 2(b): 1x1 | 1x1 -> 3x3 | 1x1 -> 5x5 | 3x3/1 max pool -> 1x1, concatenated,
    ReLU after every conv. ``bn=True``: googlenet_cifar's port, BN before each ReLU and the 5x5
    as two 3x3 (as kuangliu/pytorch-cifar writes it)."""

    def __init__(self, c_in: int, widths: Sequence[int], bn: bool = False):
        super().__init__()
        c1, c3r, c3, c5r, c5, proj = widths
        unit = partial(conv_bn_relu, bias=True) if bn else conv_relu  # (c_in, c_out, k, stride, padding)
        self.branch1 = nn.Sequential(*unit(c_in, c1, 1))
        self.branch2 = nn.Sequential(*unit(c_in, c3r, 1), *unit(c3r, c3, 3, 1, 1))
        five = [*unit(c5r, c5, 3, 1, 1), *unit(c5, c5, 3, 1, 1)] if bn else unit(c5r, c5, 5, 1, 2)
        self.branch3 = nn.Sequential(*unit(c_in, c5r, 1), *five)
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, 1, padding=1), *unit(c_in, proj, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], dim=1)


class NaiveInception(nn.Module):
    """GoogLeNet Figure 2(a), the naive module: 1x1, 3x3 and 5x5 convolutions (ReLU after each) and a
    3x3/1 max pool, all on the module's input, concatenated; no 1x1 reductions and no projection
    after the pool, so the pool passes all c_in channels on (section 4). The widths are Table 1's
    #1x1, #3x3 and #5x5 columns; its reduce and pool-proj columns have no layer here."""

    def __init__(self, c_in: int, widths: Sequence[int]):
        super().__init__()
        c1, _, c3, _, c5, _ = widths
        self.branch1 = nn.Sequential(*conv_relu(c_in, c1, 1))
        self.branch2 = nn.Sequential(*conv_relu(c_in, c3, 3, 1, 1))
        self.branch3 = nn.Sequential(*conv_relu(c_in, c5, 5, 1, 2))
        self.branch4 = nn.MaxPool2d(3, 1, padding=1)
        self.out_channels = c_in + c1 + c3 + c5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], dim=1)


def googlenet_aux(c_in: int, num_classes: int) -> nn.Sequential:
    """Section 5: 5x5/3 average pool (4x4 maps), 1x1 conv 128 + ReLU, FC 1024 + ReLU, dropout 70%, linear."""
    return nn.Sequential(
        nn.AvgPool2d(5, 3), *conv_relu(c_in, 128, 1), nn.Flatten(),
        nn.Linear(128 * 4 * 4, 1024), nn.ReLU(), nn.Dropout(0.7), nn.Linear(1024, num_classes),
    )


class GoogLeNet(nn.Module):
    """Szegedy et al. 2015, Table 1 and Figure 3, with section 5's auxiliary classifiers on 4a and 4d.

    Documented choices of conf/model/googlenet.yaml: pools round up (Caffe's
    bvlc_googlenet; Table 1's 112/56/28/14/7), conv1 padding 3, and
    bvlc_googlenet's LRN (size 5, Caffe alpha 1e-4 = paper-formula alpha 2e-5,
    beta 0.75, k 1), which the paper does not give. In training mode returns
    (logits, [aux 4a logits, aux 4d logits]); in eval mode the logits.
    ``naive=True``: every module is Figure 2(a)'s naive one (NaiveInception), all else the same;
    the channels then grow module by module (192 -> 416 -> 832 ... 4944).
    """

    def __init__(self, num_classes: int = 1000, naive: bool = False):
        super().__init__()
        lrn = partial(PaperLRN, 5, 1e-4 / 5, 0.75, 1.0)
        self.stem = nn.Sequential(  # Figure 3, bottom to "MaxPool 3x3+2(S)"
            *conv_relu(3, 64, 7, 2, 3), nn.MaxPool2d(3, 2, ceil_mode=True), lrn(),
            *conv_relu(64, 64, 1), *conv_relu(64, 192, 3, 1, 1), lrn(), nn.MaxPool2d(3, 2, ceil_mode=True),
        )
        channels = [192]  # the input width of the next module

        def inception(name: str) -> nn.Module:
            widths = GOOGLENET_TABLE_1[name]
            module = NaiveInception(channels[0], widths) if naive else Inception(channels[0], widths)
            channels[0] = module.out_channels if naive else module_width(widths)
            return module

        self.i3a, self.i3b = inception("3a"), inception("3b")
        self.pool3 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.i4a = inception("4a")
        self.aux1 = googlenet_aux(channels[0], num_classes)
        self.i4b, self.i4c, self.i4d = inception("4b"), inception("4c"), inception("4d")
        self.aux2 = googlenet_aux(channels[0], num_classes)
        self.i4e = inception("4e")
        self.pool4 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.i5a, self.i5b = inception("5a"), inception("5b")
        self.head = nn.Sequential(nn.AvgPool2d(7, 1), nn.Flatten(), nn.Dropout(0.4),
                                  nn.Linear(channels[0], num_classes))

    def forward(self, x: torch.Tensor):
        x = self.i4a(self.pool3(self.i3b(self.i3a(self.stem(x)))))
        aux = [self.aux1(x)] if self.training else []
        x = self.i4d(self.i4c(self.i4b(x)))
        aux += [self.aux2(x)] if self.training else []
        x = self.i5b(self.i5a(self.pool4(self.i4e(x))))
        logits = self.head(x)
        return (logits, aux) if self.training else logits


class GoogLeNetCifar(nn.Module):
    """googlenet_cifar's source, kuangliu/pytorch-cifar models/googlenet.py: one 3x3 conv (192) + BN +
    ReLU as the stem, Table 1's nine modules (BN, 5x5 as two 3x3), 3x3/2 max pools (padding 1) after
    3b and 4e, global average pool (the port's 8x8 average pool at 32x32), one linear layer."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(*conv_bn_relu(3, 192, 3, padding=1, bias=True))
        modules, c_in = [], 192
        for name in GOOGLENET_TABLE_1:
            modules.append(Inception(c_in, GOOGLENET_TABLE_1[name], bn=True))
            c_in = module_width(GOOGLENET_TABLE_1[name])
            if name in ("3b", "4e"):
                modules.append(nn.MaxPool2d(3, 2, padding=1))
        self.body = nn.Sequential(*modules)
        self.fc = nn.Linear(1024, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(self.stem(x)).mean(dim=(2, 3)))


# Ioffe & Szegedy 2015, Figure 5: #1x1, #3x3 reduce, #3x3, double #3x3 reduce, double #3x3,
# pool (avg / max) + proj; stride-2 modules have no 1x1 and pass their max pool through.
# 4c and 4d: the figure's output column (14x14x576 for both, then 1024 after 4e) holds only with
# 96-wide pool projections, what the authors' TensorFlow code builds (tensorflow/models
# research/slim/nets/inception_v2.py, Mixed_4d / Mixed_4e); its "avg + 128" would give 608 and 1056.
INCEPTION_BN_FIGURE_5 = [
    ("3a", (64, 64, 64, 64, 96, "avg", 32)), ("3b", (64, 64, 96, 64, 96, "avg", 64)),
    ("3c", (0, 128, 160, 64, 96, "max", 0)),
    ("4a", (224, 64, 96, 96, 128, "avg", 128)), ("4b", (192, 96, 128, 96, 128, "avg", 128)),
    ("4c", (160, 128, 160, 128, 160, "avg", 96)), ("4d", (96, 128, 192, 160, 192, "avg", 96)),
    ("4e", (0, 128, 192, 192, 256, "max", 0)),
    ("5a", (352, 192, 320, 160, 224, "avg", 128)), ("5b", (352, 192, 320, 192, 224, "max", 128)),
]


class InceptionBN(nn.Module):
    """Figure 5's module: BN before every ReLU (section 3.2, convs without bias), the 5x5 as two 3x3
    ("double 3x3"). A stride-2 module (3c, 4e): the 3x3 and the second double-3x3 conv have stride 2
    and a 3x3/2 max pool passes its input through, with no 1x1 branch and no projection."""

    def __init__(self, c_in: int, widths: Sequence):
        super().__init__()
        c1, c3r, c3, d3r, d3, pool, proj = widths
        self.stride = 2 if c1 == 0 else 1
        s = self.stride
        self.branch1 = nn.Sequential(*conv_bn_relu(c_in, c1, 1)) if c1 else None
        self.branch2 = nn.Sequential(*conv_bn_relu(c_in, c3r, 1), *conv_bn_relu(c3r, c3, 3, s, 1))
        self.branch3 = nn.Sequential(*conv_bn_relu(c_in, d3r, 1), *conv_bn_relu(d3r, d3, 3, 1, 1),
                                     *conv_bn_relu(d3, d3, 3, s, 1))
        if self.stride == 2:  # the pass-through: 3x3/2, rounding up (14 -> 7 from 28 -> 14)
            pooling = nn.MaxPool2d(3, 2, ceil_mode=True)
        else:  # "avg + 32", "max + 128": a 3x3/1 pool keeping the map size, then the 1x1 projection
            pooling = nn.AvgPool2d(3, 1, 1) if pool == "avg" else nn.MaxPool2d(3, 1, 1)
        self.branch4 = nn.Sequential(pooling, *(conv_bn_relu(c_in, proj, 1) if proj else []))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.branch1] if self.branch1 is not None else []
        return torch.cat([b(x) for b in branches + [self.branch2, self.branch3, self.branch4]], dim=1)


def inception_bn(num_classes: int = 1000) -> nn.Sequential:
    """BN-Inception, Ioffe & Szegedy 2015, Figure 5 at 224x224. The first conv is the appendix's
    "separable convolution with depth multiplier 8": a 7x7/2 depthwise conv to 24 maps then a 1x1
    conv to 64 (+ BN + ReLU) (the file's documented reading). Pools round up; no LRN, no dropout,
    no auxiliary heads (section 4.2.1). The widths are Figure 5's columns, but for the 4c and 4d pool
    projections: 96, which its output-size column (576) needs, as the file documents."""
    modules, c_in = [], 192
    for _, widths in INCEPTION_BN_FIGURE_5:
        modules.append(InceptionBN(c_in, widths))
        c1, _, c3, _, d3, _, proj = widths
        c_in = c1 + c3 + d3 + (proj if proj else c_in)
    return nn.Sequential(
        nn.Conv2d(3, 24, 7, 2, 3, groups=3, bias=False), *conv_bn_relu(24, 64, 1),
        nn.MaxPool2d(3, 2, ceil_mode=True),
        *conv_bn_relu(64, 64, 1), *conv_bn_relu(64, 192, 3, 1, 1), nn.MaxPool2d(3, 2, ceil_mode=True),
        *modules, nn.AvgPool2d(7, 1), nn.Flatten(), nn.Linear(c_in, num_classes),
    )


# --- SE-ResNet-50 ---------------------------------------------------------------------------------


class SEBottleneck(nn.Module):
    """Hu et al. 2018, Fig. 3 on ResNet's bottleneck (He et al. 2016, Fig. 5 right): 1x1, 3x3, 1x1
    convs with BN (ReLU after the first two), then squeeze (global average) and excitation
    (FC out/r, ReLU, FC out, sigmoid) rescaling the branch, *then* the addition and ReLU.
    The stride sits on the first 1x1 conv (original ResNet, as the file documents); the
    shortcut is a 1x1 projection + BN where the shape changes (option B)."""

    def __init__(self, c_in: int, width: int, c_out: int, stride: int, r: int = 16):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c_in, width, 1, stride, bias=False), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width)
        self.conv3, self.bn3 = nn.Conv2d(width, c_out, 1, bias=False), nn.BatchNorm2d(c_out)
        self.fc1, self.fc2 = nn.Linear(c_out, c_out // r), nn.Linear(c_out // r, c_out)
        self.projection = None
        if stride != 1 or c_in != c_out:
            self.projection = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def excite(self, u: torch.Tensor) -> torch.Tensor:
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(u.mean(dim=(2, 3))))))  # eq. 2 and 3
        return u * s[:, :, None, None]  # eq. 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = F.relu(self.bn1(self.conv1(x)))
        u = F.relu(self.bn2(self.conv2(u)))
        u = self.excite(self.bn3(self.conv3(u)))
        shortcut = x if self.projection is None else self.projection(x)
        return F.relu(u + shortcut)


def se_resnet50(num_classes: int = 1000) -> nn.Sequential:
    """Table 1, middle column: 7x7/2 conv 64, 3x3/2 max pool, stages of 3, 4, 6, 3 SE bottlenecks
    (widths 64/128/256/512, outputs x4, r = 16; stride 2 at conv3_1, conv4_1, conv5_1), global
    average pool, FC. Table 1 says nothing of the pool's padding: the authors' released Caffe model
    has none and rounds the output size up, as the file documents."""
    blocks, c_in = [], 64
    for width, count, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for i in range(count):
            blocks.append(SEBottleneck(c_in, width, 4 * width, stride if i == 0 else 1))
            c_in = 4 * width
    return nn.Sequential(
        nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
        nn.MaxPool2d(3, 2, ceil_mode=True), *blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2048, num_classes),
    )


# --- ResNet-50 with Group Normalization -----------------------------------------------------------


class NormBottleneck(nn.Module):
    """He et al. 2016, Fig. 5 right, as Goyal et al. 2017 and torchvision build it (the network Wu &
    He 2018 train): 1x1, 3x3 (with the block's stride), 1x1 x4 convs without bias, a norm after
    each, ReLU after the first two and after the addition; a 1x1 projection + norm shortcut in a
    stage's first block (option B), the identity elsewhere. ``norm`` makes the norm layers: Wu & He
    2018 put GN (G = 32, section 3.1) wherever ResNet has BN."""

    def __init__(self, c_in: int, width: int, stride: int, norm):
        super().__init__()
        c_out = 4 * width
        self.conv1, self.n1 = nn.Conv2d(c_in, width, 1, bias=False), norm(width)
        self.conv2, self.n2 = nn.Conv2d(width, width, 3, stride, 1, bias=False), norm(width)
        self.conv3, self.n3 = nn.Conv2d(width, c_out, 1, bias=False), norm(c_out)
        self.projection = None
        if stride != 1 or c_in != c_out:
            self.projection = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), norm(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.n1(self.conv1(x)))
        out = F.relu(self.n2(self.conv2(out)))
        out = self.n3(self.conv3(out))
        return F.relu(out + (x if self.projection is None else self.projection(x)))


def resnet50_norm(num_classes: int = 1000, norm: str = "gn", groups: int = 32) -> nn.Sequential:
    """ResNet-50 (He et al. 2016, Table 1: 7x7/2 conv 64, 3x3/2 max pool padded by 1, 3, 4, 6, 3
    bottlenecks of widths 64-512, global average pool, FC) with ``norm``: "gn" GroupNorm(groups, c),
    Wu & He 2018's network; "bn" BatchNorm2d, its baseline."""
    make = partial(nn.GroupNorm, groups) if norm == "gn" else nn.BatchNorm2d
    blocks, c_in = [], 64
    for width, count, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for i in range(count):
            blocks.append(NormBottleneck(c_in, width, stride if i == 0 else 1, make))
            c_in = 4 * width
    return nn.Sequential(
        nn.Conv2d(3, 64, 7, 2, 3, bias=False), make(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1),
        *blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2048, num_classes),
    )


# --- ShuffleNet v1 (g = 3) ------------------------------------------------------------------------


class ShuffleUnit(nn.Module):
    """Zhang et al. 2018, Fig. 2(b) (stride 1: added to the identity) and 2(c) (stride 2: the
    branch makes out - in channels, concatenated after a 3x3/2 average pool of the input), ReLU
    after the merge. 1x1 GConv -> BN -> ReLU -> shuffle -> 3x3 DWConv -> BN (no ReLU, section 3.2)
    -> 1x1 GConv -> BN; the bottleneck is out / 4 (section 3.3)."""

    def __init__(self, c_in: int, c_out: int, stride: int, first_groups: int = 3, g: int = 3):
        super().__init__()
        mid, branch = c_out // 4, c_out - c_in if stride == 2 else c_out
        self.gconv1, self.bn1 = nn.Conv2d(c_in, mid, 1, groups=first_groups, bias=False), nn.BatchNorm2d(mid)
        self.shuffle = ChannelShuffle(g)
        self.dwconv = nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.gconv2, self.bn3 = nn.Conv2d(mid, branch, 1, groups=g, bias=False), nn.BatchNorm2d(branch)
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.shuffle(F.relu(self.bn1(self.gconv1(x))))
        b = self.bn3(self.gconv2(self.bn2(self.dwconv(b))))
        if self.stride == 1:
            return F.relu(x + b)
        # count_include_pad (torch's default, and the authors' released code): the paper says 3x3/2 only
        return F.relu(torch.cat([F.avg_pool2d(x, 3, 2, 1), b], dim=1))


def shufflenet_v1_g3(num_classes: int = 1000) -> nn.Sequential:
    """Table 1, g = 3: conv1 3x3/2 (24), max pool 3x3/2, stages of 240/480/960 channels with 1 + 3,
    1 + 7, 1 + 3 units, global pool, FC. The first 1x1 of stage 2 is not grouped (section 3.3). The
    paper does not say what follows conv1; BN + ReLU as the file documents."""
    units, c_in = [], 24
    for c_out, repeat in ((240, 3), (480, 7), (960, 3)):
        units.append(ShuffleUnit(c_in, c_out, 2, first_groups=1 if c_in == 24 else 3))
        units += [ShuffleUnit(c_out, c_out, 1) for _ in range(repeat)]
        c_in = c_out
    return nn.Sequential(
        nn.Conv2d(3, 24, 3, 2, 1, bias=False), nn.BatchNorm2d(24), nn.ReLU(), nn.MaxPool2d(3, 2, 1),
        *units, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(960, num_classes),
    )


# --- MobileNet v1 ---------------------------------------------------------------------------------

# Howard et al. 2017, Table 1: (pointwise width, depthwise stride) of the 13 separable layers; the
# last depthwise row's "s2" is read as s1 (the file documents the misprint: 7x7 in and out).
MOBILENET_TABLE_1 = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
                     *[(512, 1)] * 5, (1024, 2), (1024, 1)]


def mobilenet_v1(num_classes: int = 1000) -> nn.Sequential:
    """Table 1 and Fig. 3 right: 3x3/2 conv 32, then 3x3 depthwise -> BN -> ReLU -> 1x1 -> BN -> ReLU
    thirteen times, average pool to 1x1, FC (section 3.2: BN + ReLU after every layer but the FC)."""
    layers, c_in = [nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU()], 32
    for c_out, stride in MOBILENET_TABLE_1:
        layers += [nn.Conv2d(c_in, c_in, 3, stride, 1, groups=c_in, bias=False), nn.BatchNorm2d(c_in), nn.ReLU(),
                   nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
        c_in = c_out
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1024, num_classes))


# --- Xception -------------------------------------------------------------------------------------


def separable_bn(c_in: int, c_out: int) -> List[nn.Module]:
    """Chollet 2017, section 2 / 4.7: 3x3 depthwise then 1x1 pointwise, no non-linearity between,
    no biases; Figure 5's caption: batch normalisation after it."""
    return [nn.Conv2d(c_in, c_in, 3, 1, 1, groups=c_in, bias=False), nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out)]


class KerasSameMaxPool(nn.Module):
    """keras MaxPooling2D((3, 3), strides=(2, 2), padding='same'), the released Xception's pools
    (keras/applications/xception.py): an n-pixel side gives ceil(n / 2) outputs, output i covering
    input rows 2i - before ... 2i - before + 2, where before = (needed padding) // 2 and the rest goes
    after; padded cells take no part in the max. Written as a maximum over the nine shifted, strided
    views of the map, -inf outside it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        out_h, out_w = -(-h // 2), -(-w // 2)
        before_h, before_w = max(2 * out_h + 1 - h, 0) // 2, max(2 * out_w + 1 - w, 0) // 2
        canvas = x.new_full((*x.shape[:-2], h + 4, w + 4), float("-inf"))
        canvas[..., before_h:before_h + h, before_w:before_w + w] = x
        views = [canvas[..., dy:dy + 2 * out_h:2, dx:dx + 2 * out_w:2] for dy in range(3) for dx in range(3)]
        return torch.stack(views).amax(dim=0)


class XceptionBlock(nn.Module):
    """Figure 5: a residual branch of ReLU + separable conv layers, ending (entry and exit flow) in a
    3x3/2 max pool ('same', as Keras pads it: see KerasSameMaxPool), added to the input or to its
    1x1 stride-2 conv + BN projection."""

    def __init__(self, c_in: int, widths: Sequence[int], first_relu: bool, downsample: bool):
        super().__init__()
        layers, c = [], c_in
        for i, w in enumerate(widths):
            layers += ([nn.ReLU()] if i or first_relu else []) + separable_bn(c, w)
            c = w
        if downsample:
            layers.append(KerasSameMaxPool())
        self.residual = nn.Sequential(*layers)
        self.shortcut = nn.Sequential(nn.Conv2d(c_in, c, 1, 2, bias=False), nn.BatchNorm2d(c)) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.residual(x) + (x if self.shortcut is None else self.shortcut(x))


def xception(num_classes: int = 1000) -> nn.Sequential:
    """Figure 5: entry flow (3x3/2 conv 32, 3x3 conv 64, unpadded, BN + ReLU; blocks of 128, 256, 728,
    the first without its leading ReLU), middle flow (8 x three ReLU + separable 728, identity
    shortcut), exit flow (728, 1024 + pool, projection; separable 1536 and 2048 each + ReLU), global
    average pool, logistic regression (the optional FC layers left out, as the file documents)."""
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, 2, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 64, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
        XceptionBlock(64, (128, 128), first_relu=False, downsample=True),
        XceptionBlock(128, (256, 256), first_relu=True, downsample=True),
        XceptionBlock(256, (728, 728), first_relu=True, downsample=True),
        *[XceptionBlock(728, (728, 728, 728), first_relu=True, downsample=False) for _ in range(8)],
        XceptionBlock(728, (728, 1024), first_relu=True, downsample=True),
        *separable_bn(1024, 1536), nn.ReLU(), *separable_bn(1536, 2048), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2048, num_classes),
    )


# --- Highway network and spatial transformer (the zoo's demonstrations) ---------------------------


class HighwayConv(nn.Module):
    """Srivastava et al. 2015, eq. 3: y = H(x) * T(x) + x * (1 - T(x)), H = ReLU(conv), T = sigmoid(conv),
    both 3x3 'same' convolutions (section 3)."""

    def __init__(self, width: int):
        super().__init__()
        self.h = nn.Conv2d(width, width, 3, 1, 1)
        self.t = nn.Conv2d(width, width, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        transform, gate = F.relu(self.h(x)), torch.sigmoid(self.t(x))
        return transform * gate + x * (1 - gate)


def highway_cifar(num_classes: int = 10, channels: int = 1) -> nn.Sequential:
    """The zoo's demonstration (its header: not one of the paper's Table 3 nets): three stages of a
    plain 3x3 conv + ReLU (changing the width: 32, 64, 128) and three highway layers, 2x2/2 max pools
    between stages, global average pool, dropout 0.5, FC."""
    layers, c_in = [], channels
    for i, width in enumerate((32, 64, 128)):
        layers += [nn.MaxPool2d(2, 2)] if i else []
        layers += [*conv_relu(c_in, width, 3, padding=1), *[HighwayConv(width) for _ in range(3)]]
        c_in = width
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.5),
                         nn.Linear(128, num_classes))


def bilinear_warp(image: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Jaderberg et al. 2015, eqs. 1 and 5: each target pixel's normalised coordinates (x_t, y_t, 1),
    pixel centres in (-1, 1), are mapped by theta (N, 2, 3) to (x_s, y_s), and the output is
    sum_nm U_nm max(0, 1 - |x_s - m|) max(0, 1 - |y_s - n|), zero outside the image."""
    n, c, h, w = image.shape
    ys = (2 * torch.arange(h, dtype=image.dtype) + 1) / h - 1
    xs = (2 * torch.arange(w, dtype=image.dtype) + 1) / w - 1
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    target = torch.stack([grid_x, grid_y, torch.ones_like(grid_x)], dim=-1).reshape(1, h * w, 3)
    source = target @ theta.transpose(1, 2)  # (N, HW, 2): x_s, y_s
    px, py = ((source[..., 0] + 1) * w - 1) / 2, ((source[..., 1] + 1) * h - 1) / 2  # in pixel units
    flat, out = image.reshape(n, c, h * w), image.new_zeros(n, c, h * w)
    for m in (px.floor(), px.floor() + 1):
        for row in (py.floor(), py.floor() + 1):
            weight = (1 - (px - m).abs()).clamp(min=0) * (1 - (py - row).abs()).clamp(min=0)
            inside = (m >= 0) & (m < w) & (row >= 0) & (row < h)
            index = (row.clamp(0, h - 1) * w + m.clamp(0, w - 1)).long()
            values = flat.gather(2, index[:, None, :].expand(n, c, h * w))
            out = out + values * (weight * inside)[:, None, :]
    return out.reshape(n, c, h, w)


class STNCifar(nn.Module):
    """The zoo's demonstration of a spatial transformer (its header: not one of the paper's nets):
    a localisation net (section 3.1) on a 2x2/2 max-pooled copy of the image, two 5x5 conv (20) +
    ReLU stages with a 2x2/2 max pool between, FC 50 + ReLU, regressing the 6 affine parameters
    (FC 6); the warped image feeds a classifier of three 3x3 conv + ReLU (32, 64, 128) with 2x2/2
    max pools, global average pool, dropout 0.5, FC."""

    def __init__(self, num_classes: int = 10, channels: int = 1, size: int = 32):
        super().__init__()
        side = ((size // 2 - 4) // 2) - 4
        self.localisation = nn.Sequential(
            nn.MaxPool2d(2, 2), *conv_relu(channels, 20, 5), nn.MaxPool2d(2, 2), *conv_relu(20, 20, 5),
            nn.Flatten(), nn.Linear(20 * side * side, 50), nn.ReLU(),
        )
        self.theta = nn.Linear(50, 6)
        self.classifier = nn.Sequential(
            *conv_relu(channels, 32, 3, padding=1), nn.MaxPool2d(2, 2), *conv_relu(32, 64, 3, padding=1),
            nn.MaxPool2d(2, 2), *conv_relu(64, 128, 3, padding=1),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.5), nn.Linear(128, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        theta = self.theta(self.localisation(x)).view(-1, 2, 3)
        return self.classifier(bilinear_warp(x, theta))
