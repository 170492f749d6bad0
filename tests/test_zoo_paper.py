"""Zoo models that only a paper defines: shapes and parameter counts derived from the papers' own tables."""

from __future__ import annotations

import pytest
import torch

from cnnbench.models import count_parameters, create_model


def zoo(name: str, num_classes: int = 1000, **options):
    return create_model(name, num_classes, **options)


def conv(c_in, c_out, k, groups=1):
    return c_out * (c_in // groups) * k * k + c_out


def fc(n_in, n_out):
    return n_in * n_out + n_out


def named_shapes(model, x):
    """Output shape of every named top-level row."""
    shapes = {}
    model.eval()
    with torch.no_grad():
        values = {"input": x}
        for layer, name, sources, multi in zip(model.layers, model.names, model.sources, model.multi):
            out = layer([values[s] for s in sources] if multi else values[sources[0]])
            values[name] = out
            shapes[name] = tuple(out.shape[1:])
    return shapes


def test_alexnet_2012_two_towers():
    """Krizhevsky et al. 2012, section 3.5 and Figure 2 (two GPUs as groups=2)."""
    model = zoo("alexnet")
    shapes = named_shapes(model, torch.zeros(1, 3, 227, 227))
    assert shapes["conv1"] == (96, 55, 55) and shapes["pool1"] == (96, 27, 27)
    assert shapes["conv2"] == (256, 27, 27) and shapes["pool2"] == (256, 13, 13)
    assert shapes["conv3"] == shapes["conv4"] == (384, 13, 13)
    assert shapes["conv5"] == (256, 13, 13) and shapes["pool5"] == (256, 6, 6)
    # "The kernels of the second, fourth, and fifth convolutional layers are connected only to those
    # kernel maps in the previous layer which reside on the same GPU": 5x5x48, 3x3x192, 3x3x192.
    layers = dict(zip(model.names, model.layers))
    assert layers["conv2"].weight.shape == (256, 48, 5, 5)
    assert layers["conv3"].weight.shape == (384, 256, 3, 3)
    assert layers["conv4"].weight.shape == (384, 192, 3, 3)
    expected = (conv(3, 96, 11) + conv(96, 256, 5, 2) + conv(256, 384, 3) + conv(384, 384, 3, 2)
                + conv(384, 256, 3, 2) + fc(9216, 4096) + fc(4096, 4096) + fc(4096, 1000))
    assert count_parameters(model) == expected == 60_965_224


def test_alexnet_lrn_is_the_papers_formula():
    """Section 3.3: b = a / (k + alpha * sum over 5 neighbouring maps of a^2)^beta, alpha = 1e-4."""
    model = zoo("alexnet")
    lrn = dict(zip(model.names, model.layers))["norm1"]
    a = torch.rand(1, 7, 2, 2)
    i = 3
    expected = a[0, i] / (2.0 + 1e-4 * (a[0, i - 2 : i + 3] ** 2).sum(0)) ** 0.75
    assert torch.allclose(lrn(a)[0, i], expected)


def test_alexnet_ablation_switches():
    model = zoo("alexnet", dropout=0.0, lrn=False)
    kinds = [type(m).__name__ for m in model.layers]
    assert "LocalResponseNorm" not in kinds and "Dropout" not in kinds
    assert count_parameters(model) == 60_965_224


def test_zfnet_figure_3():
    """Zeiler & Fergus 2014, Figure 3: 110 -> 55 -> 26 -> 13 -> 13 -> 13 -> 6."""
    model = zoo("zfnet")
    shapes = named_shapes(model, torch.zeros(1, 3, 224, 224))
    assert shapes["conv1"] == (96, 110, 110) and shapes["pool1"] == (96, 55, 55)
    assert shapes["conv2"] == (256, 26, 26) and shapes["pool2"] == (256, 13, 13)
    assert shapes["conv5"] == (256, 13, 13) and shapes["pool5"] == (256, 6, 6)
    expected = (conv(3, 96, 7) + conv(96, 256, 5) + conv(256, 384, 3) + conv(384, 384, 3)
                + conv(384, 256, 3) + fc(9216, 4096) + fc(4096, 4096) + fc(4096, 1000))
    assert count_parameters(model) == expected == 62_357_608


def test_nin_cifar():
    """Lin et al. 2014: three mlpconv layers, global average pooling over 10 class maps."""
    model = zoo("nin_cifar", num_classes=10)
    shapes = named_shapes(model, torch.zeros(1, 3, 32, 32))
    assert shapes["mlpconv1"] == (96, 32, 32) and shapes["mlpconv2"] == (192, 16, 16)
    assert shapes["mlpconv3"] == (10, 8, 8)
    expected = (conv(3, 192, 5) + conv(192, 160, 1) + conv(160, 96, 1)
                + conv(96, 192, 5) + conv(192, 192, 1) + conv(192, 192, 1)
                + conv(192, 192, 3) + conv(192, 192, 1) + conv(192, 10, 1))
    assert count_parameters(model) == expected == 966_986
    assert not any(isinstance(m, torch.nn.Linear) for m in model.modules()), "NIN has no fully connected layer"


def test_nin_imagenet_caffe_table():
    """The authors' Caffe model (crop 224): maps 54 -> 27 -> 13 -> 6, then a 6x6 average."""
    model = zoo("nin_imagenet")
    shapes = named_shapes(model, torch.zeros(1, 3, 224, 224))
    assert shapes["mlpconv1"] == (96, 54, 54) and shapes["pool1"] == (96, 27, 27)
    assert shapes["pool2"] == (256, 13, 13) and shapes["pool3"] == (384, 6, 6)
    assert shapes["mlpconv4"] == (1000, 6, 6)
    expected = (conv(3, 96, 11) + 2 * conv(96, 96, 1) + conv(96, 256, 5) + 2 * conv(256, 256, 1)
                + conv(256, 384, 3) + 2 * conv(384, 384, 1) + conv(384, 1024, 3) + conv(1024, 1024, 1)
                + conv(1024, 1000, 1))
    assert count_parameters(model) == expected


@pytest.mark.parametrize("name, table_2_millions, layers_with_weights", [("vgg_a_lrn", 133, 11), ("vgg_c", 134, 16)])
def test_vgg_table_1_and_2(name, table_2_millions, layers_with_weights):
    """Simonyan & Zisserman 2015: Table 1 (configurations) and Table 2 (parameters, millions)."""
    model = zoo(name)
    weighted = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert len(weighted) == layers_with_weights
    assert round(count_parameters(model) / 1e6) == table_2_millions
    assert named_shapes(model, torch.zeros(1, 3, 224, 224))["pool5"] == (512, 7, 7)


def test_vgg_c_has_1x1_layers_in_stages_3_to_5():
    model = zoo("vgg_c")
    layers = dict(zip(model.names, model.layers))
    for stage, width in (("conv3_3", 256), ("conv4_3", 512), ("conv5_3", 512)):
        conv1x1 = layers[stage].layers[0]
        assert conv1x1.kernel_size == (1, 1) and conv1x1.out_channels == width
