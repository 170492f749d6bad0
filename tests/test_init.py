"""`init_spec` (the papers' starting weights) and model.init=paper|torch."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from cnnbench import create_model
from cnnbench.models import ModelBuildError, build_model

CONV = {"name": "t", "layers": [["conv", {"out": 64, "kernel": 3, "as": "a"}], "relu",
                                ["conv", {"out": 64, "kernel": 3, "as": "b"}], "flatten",
                                ["linear", {"out": 10, "as": "fc"}]]}


def layer(model: nn.Module, name: str) -> nn.Module:
    return dict(zip(model.names, model.layers))[name]


def test_alexnet_paper_init_is_section_5s():
    torch.manual_seed(0)
    model = create_model("alexnet")
    conv1, conv2, conv3 = (layer(model, n) for n in ("conv1", "conv2", "conv3"))
    assert abs(conv1.weight.std().item() - 0.01) < 5e-4
    assert abs(layer(model, "fc6").weight.std().item() - 0.01) < 1e-4
    assert torch.equal(conv2.bias, torch.ones_like(conv2.bias))
    for name in ("conv4", "conv5", "fc6", "fc7"):
        assert torch.equal(layer(model, name).bias, torch.ones_like(layer(model, name).bias)), name
    for module in (conv1, conv3, layer(model, "fc8")):
        assert torch.equal(module.bias, torch.zeros_like(module.bias))


def test_alexnet_torch_init_keeps_torchs_defaults():
    torch.manual_seed(0)
    model = create_model("alexnet", init="torch")
    conv1, conv2 = layer(model, "conv1"), layer(model, "conv2")
    # torch: kaiming_uniform(a=sqrt(5)), i.e. uniform(+-1/sqrt(fan_in)), std 1/sqrt(3 fan_in).
    assert abs(conv1.weight.std().item() - 1 / math.sqrt(3 * 3 * 11 * 11)) < 1e-3
    bound = 1 / math.sqrt(48 * 5 * 5)  # conv2 has groups=2: 48 input maps per filter
    assert conv2.bias.abs().max().item() <= bound and conv2.bias.std().item() > bound / 4


def test_torch_init_builds_what_a_file_without_init_spec_builds():
    spec = {**CONV, "init_spec": {"conv": {"weight": ["normal", 0.01]}}}
    torch.manual_seed(0)
    with_spec = build_model({**spec, "init": "torch"}, (3, 8, 8))
    torch.manual_seed(0)
    without = build_model(CONV, (3, 8, 8))
    for a, b in zip(with_spec.parameters(), without.parameters()):
        assert torch.equal(a, b)


def test_row_init_spec_overrides_the_model_kind_and_bias_init_wins():
    spec = {"name": "t", "init_spec": {"conv": {"weight": ["constant", 2], "bias": ["constant", 3]}},
            "layers": [["conv", {"out": 4, "kernel": 1, "as": "a"}],
                       ["conv", {"out": 4, "kernel": 1, "as": "b", "init_spec": {"weight": ["constant", 5]}}],
                       ["conv", {"out": 4, "kernel": 1, "as": "c", "bias_init": -1.0}]]}
    model = build_model(spec, (4, 2, 2))
    a, b, c = (layer(model, n) for n in "abc")
    assert torch.all(a.weight == 2) and torch.all(a.bias == 3)
    assert torch.all(b.weight == 5) and torch.all(b.bias == 3)
    assert torch.all(c.weight == 2) and torch.all(c.bias == -1)


def test_resnet20_is_he_init_and_googlenet_caffes_xavier():
    torch.manual_seed(0)
    resnet = create_model("resnet20")
    convs = [m for m in resnet.modules() if isinstance(m, nn.Conv2d)]
    last = convs[-1]  # fan_out = out channels x 3 x 3
    expected = math.sqrt(2 / (last.out_channels * last.kernel_size[0] * last.kernel_size[1]))
    assert abs(last.weight.std().item() - expected) < 0.05 * expected
    googlenet = create_model("googlenet")
    conv = next(m for m in googlenet.modules() if isinstance(m, nn.Conv2d))
    assert torch.all(conv.bias == 0.2)
    fan_in = conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]
    assert conv.weight.abs().max().item() <= math.sqrt(3 / fan_in)
    assert conv.weight.abs().max().item() > 0.9 * math.sqrt(3 / fan_in)


@pytest.mark.parametrize("init_spec, message", [
    ({"conv": {"weight": ["gaussian", 0.01]}},
     r"^model: init_spec.conv.weight: unknown scheme \['gaussian', 0.01\]; schemes: normal, .*constant$"),
    ({"dense": {"weight": ["normal", 0.01]}},
     r"^model: init_spec: unknown op kind dense; kinds: conv, conv_transpose, linear, norm$"),
    ({"conv": {"weight": ["kaiming_normal", {"mode": "fan_sideways"}]}},
     r"^model: init_spec.conv.weight: bad arguments for kaiming_normal: mode must be fan_in or fan_out"),
    ({"conv": {"bias": ["xavier_uniform"]}}, r"^model: init_spec.conv.bias: bad arguments for xavier_uniform"),
    ({"conv": {"kernel": ["normal"]}}, r"^model: init_spec.conv must be \{weight: scheme, bias: scheme\}"),
])
def test_bad_init_spec_is_one_line(init_spec, message):
    with pytest.raises(ModelBuildError, match=message) as err:
        build_model({**CONV, "init_spec": init_spec}, (3, 8, 8))
    assert "\n" not in str(err.value)


def test_unknown_init_source_is_one_line():
    with pytest.raises(ModelBuildError, match=r"^model: model.init='caffe' is unknown; choose one of: paper, torch$"):
        build_model({**CONV, "init": "caffe"}, (3, 8, 8))
