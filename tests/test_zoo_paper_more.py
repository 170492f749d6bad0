"""More zoo models that papers (or well-known CIFAR ports) define: counts derived from the papers' own tables.

For each model: the parameter count, computed here by formula from the
paper's table (named in each test), equals the built network's; and the
output shape of every named stage, in a training-mode forward at the real
input size, is the table's (the backward pass at that size is
tests/test_model_registry.py's). Also the two ops these models added:
`pad_channels` (ResNet's option A shortcut) and `lrn_within_channel`
(cuda-convnet's response normalisation).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cnnbench.models import ModelBuildError, ModelOutput, build_model, count_parameters, create_model


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Batch-1 passes of these small layers gain little from intra-op threads
    # and lose a lot when other processes share the cores.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def zoo(name: str, num_classes: int = 1000, **options):
    return create_model(name, num_classes, **options)


def conv(c_in, c_out, k, groups=1, bias=True):
    return c_out * (c_in // groups) * k * k + (c_out if bias else 0)


def conv_bn(c_in, c_out, k, groups=1):
    """A conv without bias, then batchnorm's scale and shift."""
    return conv(c_in, c_out, k, groups, bias=False) + 2 * c_out


def fc(n_in, n_out):
    return n_in * n_out + n_out


def weights(module: nn.Module) -> int:
    """Weights only (no biases, no BN): what the papers' params columns count."""
    return sum(p.numel() for p in module.parameters() if p.dim() > 1)


def training_forward(model, batch: int = 1, count_macs: bool = False):
    """One forward in training mode (aux heads included) at the model's input size.

    Returns the output, the shape of every named top-level row and, when
    asked, the forward's multiply-adds (torch counts FLOPs = 2 x MACs).
    """
    shapes = {}
    hooks = [
        layer.register_forward_hook(lambda _m, _i, out, name=name: shapes.__setitem__(name, tuple(out.shape[1:])))
        for layer, name, aux in zip(model.layers, model.names, model.aux_weights) if aux is None
    ]
    counter = FlopCounterMode(display=False)
    model.train()
    try:
        x = torch.randn(batch, *model.input_shape, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            if count_macs:
                with counter:
                    output = model(x)
            else:
                output = model(x)
    finally:
        for hook in hooks:
            hook.remove()
    macs = counter.get_total_flops() // 2 if count_macs else None
    return output, shapes, macs


# --- GoogLeNet: Szegedy et al. 2015, Table 1 and section 5 --------------------------------------

# Table 1, one row per inception module: input channels, the six width columns
# (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj), the output size
# column, and the params column (weights, in units of 1024).
TABLE_1 = {
    "inception_3a": (192, (64, 96, 128, 16, 32, 32), (256, 28, 28), 159),
    "inception_3b": (256, (128, 128, 192, 32, 96, 64), (480, 28, 28), 380),
    "inception_4a": (480, (192, 96, 208, 16, 48, 64), (512, 14, 14), 364),
    "inception_4b": (512, (160, 112, 224, 24, 64, 64), (512, 14, 14), 437),
    "inception_4c": (512, (128, 128, 256, 24, 64, 64), (512, 14, 14), 463),
    "inception_4d": (512, (112, 144, 288, 32, 64, 64), (528, 14, 14), 580),
    "inception_4e": (528, (256, 160, 320, 32, 128, 128), (832, 14, 14), 840),
    "inception_5a": (832, (256, 160, 320, 32, 128, 128), (832, 7, 7), 1072),
    "inception_5b": (832, (384, 192, 384, 48, 128, 128), (1024, 7, 7), 1388),
}
# Rows where Table 1's params column disagrees with its own widths by more
# than its loose rounding (up to 2%): the true weight counts.
TABLE_1_ERRATA = {"inception_4c": 509_440, "inception_5a": 1_042_432}


def inception_v1_weights(c_in, c1, r3, c3, r5, c5, pool_proj):
    return c_in * c1 + c_in * r3 + r3 * c3 * 9 + c_in * r5 + r5 * c5 * 25 + c_in * pool_proj


@pytest.fixture(scope="module")
def googlenet():
    return zoo("googlenet")


def test_googlenet_table_1_params_column(googlenet):
    layers = dict(zip(googlenet.names, googlenet.layers))
    for name, (c_in, widths, _, table_k) in TABLE_1.items():
        expected = inception_v1_weights(c_in, *widths)
        assert weights(layers[name]) == expected, name
        if name in TABLE_1_ERRATA:
            assert expected == TABLE_1_ERRATA[name] and abs(expected / 1024 - table_k) > 0.02 * table_k
        else:
            assert abs(expected / 1024 - table_k) <= 0.02 * table_k, name
    # conv2 (1x1 reduce + 3x3) is Table 1's 112K exactly. conv1 is listed as 2.7K
    # params and 34M ops, but a 7x7x3x64 conv has 9,408 weights (118M mult-adds);
    # the listed numbers are a 7x7 depthwise conv with depth multiplier 8 and a
    # 1x1 conv to 64 (BN-Inception's first layer). The file keeps the text's conv.
    assert weights(layers["conv2_reduce"]) + weights(layers["conv2"]) == 112 * 1024
    assert weights(layers["conv1"]) == 9_408
    separable = 7 * 7 * 3 * 8 + 3 * 8 * 64
    assert round(separable / 1000, 1) == 2.7 and round(separable * 112 * 112 / 1e6) == 34


def test_googlenet_parameters_and_shapes(googlenet):
    main = conv(3, 64, 7) + conv(64, 64, 1) + conv(64, 192, 3)
    main += sum(inception_v1_weights(c_in, *w) + sum(w) for c_in, w, _, _ in TABLE_1.values()) + fc(1024, 1000)
    aux = sum(conv(c, 128, 1) + fc(4 * 4 * 128, 1024) + fc(1024, 1000) for c in (512, 528))  # section 5
    assert main == 6_998_552 and aux == 6_379_728
    assert count_parameters(googlenet) == main + aux
    output, shapes, macs = training_forward(googlenet, count_macs=True)
    assert shapes["conv1"] == (64, 112, 112) and shapes["pool1"] == shapes["norm1"] == (64, 56, 56)
    assert shapes["conv2"] == (192, 56, 56) and shapes["pool2"] == (192, 28, 28)
    for name, (_, _, out_shape, _) in TABLE_1.items():
        assert shapes[name] == out_shape, name
    assert shapes["pool3"] == (480, 14, 14) and shapes["pool4"] == (832, 7, 7) and shapes["pool5"] == (1024, 1, 1)
    # The paper's design budget: "1.5 billion multiply-adds at inference time" (the aux heads add ~7 M).
    assert 1.5e9 < macs < 1.6e9


def test_googlenet_aux_heads_in_training_and_logits_in_eval(googlenet):
    x = torch.randn(1, 3, 224, 224)
    googlenet.train()
    out = googlenet(x)
    assert isinstance(out, ModelOutput) and out.logits.shape == (1, 1000)
    assert [(tuple(logits.shape), weight) for logits, weight in out.aux] == [((1, 1000), 0.3), ((1, 1000), 0.3)]
    heads = [layer for layer, aux in zip(googlenet.layers, googlenet.aux_weights) if aux is not None]
    assert [type(m).__name__ for m in heads[0].modules() if isinstance(m, (nn.AvgPool2d, nn.Dropout))] == [
        "AvgPool2d", "Dropout"]
    assert next(m for m in heads[0].modules() if isinstance(m, nn.Dropout)).p == 0.7
    assert next(m for m in heads[0].modules() if isinstance(m, nn.AvgPool2d)).kernel_size == 5
    googlenet.eval()
    with torch.no_grad():
        logits = googlenet(x)
    assert isinstance(logits, torch.Tensor) and logits.shape == (1, 1000)
    kinds = [type(m).__name__ for m in googlenet.modules()]
    assert kinds.count("LocalResponseNorm") == 2 and "BatchNorm2d" not in kinds


# --- BN-Inception: Ioffe & Szegedy 2015, Figure 5 -----------------------------------------------

# Figure 5, one row per module: input channels, widths (#1x1, #3x3 reduce, #3x3,
# double #3x3 reduce, double #3x3, pool proj; None for the stride-2 modules'
# missing columns) and the output shape these widths give.
FIGURE_5 = {
    "inception_3a": (192, (64, 64, 64, 64, 96, 32), (256, 28, 28)),
    "inception_3b": (256, (64, 64, 96, 64, 96, 64), (320, 28, 28)),
    "inception_3c": (320, (None, 128, 160, 64, 96, None), (576, 14, 14)),
    "inception_4a": (576, (224, 64, 96, 96, 128, 128), (576, 14, 14)),
    "inception_4b": (576, (192, 96, 128, 96, 128, 128), (576, 14, 14)),
    # 4c, 4d: pool proj 96 (the figure's width column says 128), which gives the 576 of its output column
    # (the authors' TensorFlow code, as the model file documents)
    "inception_4c": (576, (160, 128, 160, 128, 160, 96), (576, 14, 14)),
    "inception_4d": (576, (96, 128, 192, 160, 192, 96), (576, 14, 14)),
    "inception_4e": (576, (None, 128, 192, 192, 256, None), (1024, 7, 7)),  # the figure says 14x14x1024
    "inception_5a": (1024, (352, 192, 320, 160, 224, 128), (1024, 7, 7)),
    "inception_5b": (1024, (352, 192, 320, 192, 224, 128), (1024, 7, 7)),
}


def inception_v2_params(c_in, c1, r3, c3, rd, d, pool_proj):
    """Every conv without bias and followed by BN; stride-2 modules have no 1x1 or projection branch."""
    total = conv_bn(c_in, r3, 1) + conv_bn(r3, c3, 3) + conv_bn(c_in, rd, 1) + conv_bn(rd, d, 3) + conv_bn(d, d, 3)
    if c1 is not None:
        total += conv_bn(c_in, c1, 1) + conv_bn(c_in, pool_proj, 1)
    return total


def test_inception_bn_figure_5():
    model = zoo("inception_bn")
    layers = dict(zip(model.names, model.layers))
    for name, (c_in, widths, _) in FIGURE_5.items():
        assert count_parameters(layers[name]) == inception_v2_params(c_in, *widths), name
    # The first conv is separable with depth multiplier 8 (the appendix): 7x7 depthwise to 24 maps, 1x1 to 64.
    stem = conv(3, 24, 7, groups=3, bias=False) + conv_bn(24, 64, 1) + conv_bn(64, 64, 1) + conv_bn(64, 192, 3)
    expected = stem + sum(inception_v2_params(c_in, *w) for c_in, w, _ in FIGURE_5.values()) + fc(1024, 1000)
    assert count_parameters(model) == expected == 11_188_288
    output, shapes, _ = training_forward(model)
    assert output.shape == (1, 1000)
    assert shapes["conv1"] == (64, 112, 112) and shapes["pool1"] == (64, 56, 56)
    assert shapes["conv2"] == (192, 56, 56) and shapes["pool2"] == (192, 28, 28)
    for name, (_, _, out_shape) in FIGURE_5.items():
        assert shapes[name] == out_shape, name
    assert shapes["pool5"] == (1024, 1, 1)
    # The pool column: average pooling in every module but 5b (max); 3c and 4e pass a max pool through.
    max_pooled = {"inception_3c", "inception_4e", "inception_5b"}
    for name in FIGURE_5:
        pools = [type(m) for m in layers[name].modules() if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d))]
        assert pools == [nn.MaxPool2d if name in max_pooled else nn.AvgPool2d], name
    kinds = [type(m).__name__ for m in model.modules()]
    assert kinds.count("Conv2d") == kinds.count("BatchNorm2d") + 1  # BN after every conv; the depthwise half shares one
    assert "LocalResponseNorm" not in kinds and "Dropout" not in kinds


# --- CIFAR ResNets and plain nets: He et al. 2016, section 4.2 and Table 6 -------------------


def cifar_resnet_params(n: int, classes: int = 10) -> int:
    """Section 4.2: a 3x3 conv (16), 2n 3x3 convs at each of 16, 32, 64 filters, fc; BN after every conv.

    Option A shortcuts have no parameters, so plain nets count the same.
    """
    convs = conv_bn(3, 16, 3) + 2 * n * conv_bn(16, 16, 3)
    convs += conv_bn(16, 32, 3) + (2 * n - 1) * conv_bn(32, 32, 3)
    convs += conv_bn(32, 64, 3) + (2 * n - 1) * conv_bn(64, 64, 3)
    return convs + fc(64, classes)


@pytest.mark.parametrize(
    "name, n, table_6",
    [("resnet20", 3, "0.27M"), ("resnet32", 5, "0.46M"), ("resnet44", 7, "0.66M"), ("resnet56", 9, "0.85M"),
     ("resnet110", 18, "1.7M"), ("plain20", 3, None), ("plain56", 9, None)],
)
def test_cifar_resnets_section_4_2(name, n, table_6):
    model = zoo(name, num_classes=10)
    params = count_parameters(model)
    assert params == cifar_resnet_params(n)
    if table_6 is not None:
        digits = len(table_6.split(".")[1]) - 1  # "0.27M": 2
        assert f"{params / 1e6:.{digits}f}M" == table_6
    depth = sum(isinstance(m, nn.Conv2d) for m in model.modules()) + 1  # + the fc layer
    assert depth == 6 * n + 2 == int(name.removeprefix("resnet").removeprefix("plain"))
    output, shapes, _ = training_forward(model)
    assert output.shape == (1, 10)
    assert shapes["conv1"] == (16, 32, 32)
    assert shapes[f"stage1_{n}"] == (16, 32, 32) and shapes["stage2_1"] == (32, 16, 16)
    assert shapes[f"stage2_{n}"] == (32, 16, 16) and shapes[f"stage3_{n}"] == (64, 8, 8)
    adds = sum(type(m).__name__ == "Add" for m in model.modules())
    assert adds == (3 * n if name.startswith("resnet") else 0)


def test_pad_channels_is_the_option_a_shortcut():
    model = build_model({"name": "t", "layers": [["pad_channels", {"out": 8, "stride": 2}]]}, (3, 5, 5))
    x = torch.randn(2, 3, 5, 5)
    y = model(x)
    assert model.output_shape == (8, 3, 3) and y.shape == (2, 8, 3, 3)
    assert torch.equal(y[:, :3], x[:, :, ::2, ::2]) and not y[:, 3:].any()
    assert count_parameters(model) == 0
    with pytest.raises(ModelBuildError, match=r"out \(2\) must be at least the input's 3 channels"):
        build_model({"name": "t", "layers": [["pad_channels", {"out": 2}]]}, (3, 5, 5))


# --- SE-ResNet-50: Hu et al. 2018, Table 1 ------------------------------------------------------


def bottleneck(c_in, width, out, stride_change: bool) -> int:
    body = conv_bn(c_in, width, 1) + conv_bn(width, width, 3) + conv_bn(width, out, 1)
    return body + (conv_bn(c_in, out, 1) if stride_change else 0)


def se_block(c, r=16):
    return fc(c, c // r) + fc(c // r, c)


def test_se_resnet50_table_1():
    model = zoo("se_resnet50")
    stages = [(3, 64, 256), (4, 128, 512), (6, 256, 1024), (3, 512, 2048)]  # He et al. 2016, Table 1, 50-layer
    resnet50, se, c_in = conv_bn(3, 64, 7) + fc(2048, 1000), 0, 64
    for blocks, width, out in stages:
        resnet50 += bottleneck(c_in, width, out, True) + (blocks - 1) * bottleneck(out, width, out, False)
        se += blocks * se_block(out)
        c_in = out
    assert resnet50 == 25_557_032
    # The paper's count of the SE weights, 2/r * sum over stages of N_s * C_s^2, is se without the biases.
    se_biases = sum(n * (c + c // 16) for n, _, c in stages)
    assert sum(2 * n * c * c // 16 for n, _, c in stages) == 2_514_944 == se - se_biases
    assert count_parameters(model) == resnet50 + se == 28_088_024
    layers = dict(zip(model.names, model.layers))
    first_conv = next(m for m in layers["conv3_1"].modules() if isinstance(m, nn.Conv2d))
    assert first_conv.kernel_size == (1, 1) and first_conv.stride == (2, 2)  # the original ResNet's stride position
    assert sum(isinstance(m, nn.Sigmoid) for m in model.modules()) == 16
    output, shapes, macs = training_forward(model, count_macs=True)
    assert output.shape == (1, 1000)
    assert shapes["pool1"] == (64, 56, 56) and shapes["conv2_3"] == (256, 56, 56) and shapes["conv3_4"] == (512, 28, 28)
    assert shapes["conv4_6"] == (1024, 14, 14) and shapes["conv5_3"] == (2048, 7, 7)
    # Table 2: 3.87 GFLOPs, which also counts the SE's pooling and scaling
    # (about 11 M operations); its convolutions and fc layers make 3.86 G.
    assert round(macs / 1e9, 2) == 3.86


# --- MobileNet v1: Howard et al. 2017, Table 1 ------------------------------------------------

# Table 1 after the first conv: (stride, output channels) of each depthwise separable layer,
# with the misprinted stride of the last one read as 1.
TABLE_1_MOBILENET = [(1, 64), (2, 128), (1, 128), (2, 256), (1, 256), (2, 512)] + [(1, 512)] * 5
TABLE_1_MOBILENET += [(2, 1024), (1, 1024)]


def test_mobilenet_v1_table_1():
    model = zoo("mobilenet_v1")
    params, c, side, macs = conv_bn(3, 32, 3), 32, 112, conv(3, 32, 3, bias=False) * 112 * 112
    for stride, out in TABLE_1_MOBILENET:
        params += conv_bn(c, c, 3, groups=c) + conv_bn(c, out, 1)
        side //= stride
        macs += (9 * c + c * out) * side * side
        c = out
    params += fc(1024, 1000)
    macs += 1024 * 1000
    assert count_parameters(model) == params == 4_231_976  # Table 8: 4.2 million
    assert round(macs / 1e6) == 569  # Table 8: 569 million mult-adds
    output, shapes, counted = training_forward(model, count_macs=True)
    assert counted == macs
    assert shapes["conv1"] == (32, 112, 112) and shapes["conv2"] == (64, 112, 112) and shapes["conv3"] == (128, 56, 56)
    assert shapes["conv5"] == (256, 28, 28) and shapes["conv7"] == (512, 14, 14) and shapes["conv8_5"] == (512, 14, 14)
    assert shapes["conv13"] == shapes["conv14"] == (1024, 7, 7) and shapes["pool"] == (1024, 1, 1)


# --- Xception: Chollet 2017, Figure 5 and Table 3 ---------------------------------------------


def sep_bn(c_in, c_out):
    """A 3x3 separable conv (depth multiplier 1, no bias) and its BN."""
    return 9 * c_in + c_in * c_out + 2 * c_out


def test_xception_figure_5_and_table_3():
    model = zoo("xception")
    entry = conv_bn(3, 32, 3) + conv_bn(32, 64, 3)
    for c_in, c_out in ((64, 128), (128, 256), (256, 728)):
        entry += sep_bn(c_in, c_out) + sep_bn(c_out, c_out) + conv_bn(c_in, c_out, 1)
    middle = 8 * 3 * sep_bn(728, 728)
    exit_flow = sep_bn(728, 728) + sep_bn(728, 1024) + conv_bn(728, 1024, 1) + sep_bn(1024, 1536) + sep_bn(1536, 2048)
    assert count_parameters(model) == entry + middle + exit_flow + fc(2048, 1000) == 22_855_952  # Table 3
    output, shapes, _ = training_forward(model)
    assert output.shape == (1, 1000)
    assert shapes["conv1"] == (32, 149, 149) and shapes["conv2"] == (64, 147, 147)
    assert shapes["entry1"] == (128, 74, 74) and shapes["entry2"] == (256, 37, 37) and shapes["entry3"] == (728, 19, 19)
    assert shapes["middle_8"] == (728, 19, 19) and shapes["exit"] == (1024, 10, 10) and shapes["conv4"] == (2048, 10, 10)


# --- ShuffleNet 1x (g = 3): Zhang et al. 2018, Table 1 --------------------------------------


def test_shufflenet_v1_g3_table_1():
    model = zoo("shufflenet_v1_g3")
    params, c = conv_bn(3, 24, 3), 24
    for out, repeats in ((240, 3), (480, 7), (960, 3)):  # Table 1, g = 3
        mid, first_groups = out // 4, 1 if c == 24 else 3
        params += conv_bn(c, mid, 1, first_groups) + conv_bn(mid, mid, 3, mid) + conv_bn(mid, out - c, 1, 3)
        params += repeats * (conv_bn(out, mid, 1, 3) + conv_bn(mid, mid, 3, mid) + conv_bn(mid, out, 1, 3))
        c = out
    assert count_parameters(model) == params + fc(960, 1000) == 1_865_728
    output, shapes, macs = training_forward(model, count_macs=True)
    assert round(macs / 1e6) == 137  # Table 1's complexity row, g = 3
    assert shapes["conv1"] == (24, 112, 112) and shapes["pool1"] == (24, 56, 56)
    assert shapes["stage2_1"] == shapes["stage2_4"] == (240, 28, 28)
    assert shapes["stage3_1"] == shapes["stage3_8"] == (480, 14, 14)
    assert shapes["stage4_1"] == shapes["stage4_4"] == (960, 7, 7) and shapes["pool"] == (960, 1, 1)
    groups = [m.groups for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)]
    assert groups[0] == 1 and set(groups[1:]) == {3}  # only stage 2's first pointwise conv is dense


# --- CIFAR variants from well-known ports ---------------------------------------------------


def test_alexnet_cifar_is_cuda_convnet_layers_18pct():
    model = zoo("alexnet_cifar", num_classes=10)
    expected = conv(3, 32, 5) + conv(32, 32, 5) + conv(32, 64, 5) + fc(64 * 4 * 4, 10)
    assert count_parameters(model) == expected == 89_578
    output, shapes, _ = training_forward(model)
    assert shapes["conv1"] == (32, 32, 32) and shapes["pool1"] == shapes["rnorm1"] == (32, 16, 16)
    assert shapes["pool2"] == (32, 8, 8) and shapes["pool3"] == (64, 4, 4) and output.shape == (1, 10)
    without = zoo("alexnet_cifar", num_classes=10, lrn=False)
    assert "WithinChannelLRN" not in [type(m).__name__ for m in without.modules()]


def test_lrn_within_channel_is_cuda_convnets_rnorm():
    """b = a / (1 + scale / size^2 * sum of a^2 over the size x size window of the same map)^pow."""
    row = ["lrn_within_channel", {"size": 3, "alpha": 0.5, "beta": 0.75}]
    model = build_model({"name": "t", "layers": [row]}, (2, 4, 4))
    a = torch.rand(1, 2, 4, 4) * 3
    b = model(a)
    padded = torch.nn.functional.pad(a, (1, 1, 1, 1))
    for c, i, j in [(0, 0, 0), (1, 2, 1), (0, 3, 3)]:  # corners see zeros beyond the border
        window = padded[0, c, i : i + 3, j : j + 3]
        assert torch.allclose(b[0, c, i, j], a[0, c, i, j] / (1 + 0.5 / 9 * (window**2).sum()) ** 0.75)
    with pytest.raises(ModelBuildError, match="size must be odd"):
        build_model({"name": "t", "layers": [["lrn_within_channel", {"size": 2}]]}, (2, 4, 4))


def test_vgg16_cifar_is_cifar_torch_vgg_bn_drop():
    model = zoo("vgg16_cifar", num_classes=10)
    widths = [3, 64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    convs = sum(conv(c_in, c_out, 3) + 2 * c_out for c_in, c_out in zip(widths, widths[1:]))
    assert count_parameters(model) == convs + fc(512, 512) + 2 * 512 + fc(512, 10) == 14_991_946
    # batch 2: the classifier's BatchNorm1d has no batch statistics for one sample
    output, shapes, _ = training_forward(model, batch=2)
    assert shapes["pool1"] == (64, 16, 16) and shapes["pool3"] == (256, 4, 4) and shapes["pool5"] == (512, 1, 1)
    assert output.shape == (2, 10)
    rates = [m.p for m in model.modules() if isinstance(m, nn.Dropout)]
    assert rates == [0.3, 0.4] + [0.4] * 2 + [0.4] * 2 + [0.4] * 2 + [0.5, 0.5]


def test_googlenet_cifar_is_the_pytorch_cifar_port():
    model = zoo("googlenet_cifar", num_classes=10)
    def module(c_in, c1, r3, c3, r5, c5, pool_proj):  # BN after each conv; the 5x5 as two 3x3s
        return (conv(c_in, c1, 1) + conv(c_in, r3, 1) + conv(r3, c3, 3) + conv(c_in, r5, 1) + conv(r5, c5, 3)
                + conv(c5, c5, 3) + conv(c_in, pool_proj, 1) + 2 * (c1 + r3 + c3 + r5 + 2 * c5 + pool_proj))
    expected = conv(3, 192, 3) + 2 * 192 + sum(module(c_in, *w) for c_in, w, _, _ in TABLE_1.values()) + fc(1024, 10)
    assert count_parameters(model) == expected == 6_166_250
    output, shapes, _ = training_forward(model)
    assert shapes["stem"] == (192, 32, 32) and shapes["inception_3b"] == (480, 32, 32)
    assert shapes["inception_4e"] == (832, 16, 16) and shapes["inception_5b"] == (1024, 8, 8)
    assert output.shape == (1, 10)
