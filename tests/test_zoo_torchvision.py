"""The zoo files that torchvision also has are torchvision's networks, weight for weight.

For each file: our network, built from the YAML, has the same number of
parameters as torchvision's (and as torchvision's model card says); then
torchvision's freshly initialised weights and buffers are loaded into ours
by order (``load_torchvision_state_dict``) and, in eval mode, both give the
same logits for the same random input (within 1e-5). Equal logits after
loading every tensor by position is the check that our YAML *is*
torchvision's network: same layers, same order, same shapes, same wiring.

The comparison runs at a small input (64 px; 80 for Inception-v3, whose
minimum is 75) to keep the file fast; the adaptive/global pools make that a
valid input for every model, and both networks see the same one. The
training step at each model's real input size is tests/test_model_registry.py's.
"""

from __future__ import annotations

import pytest
import torch
import torchvision

from cnnbench.errors import UserError
from cnnbench.models import build_model, count_parameters, model_spec
from cnnbench.models.convert import load_torchvision_state_dict

# zoo file -> (torchvision builder, its extra arguments, parameters on torchvision's model card)
ZOO = {
    "alexnet_owt": ("alexnet", {}, 61_100_840),
    "vgg11": ("vgg11", {}, 132_863_336),
    "vgg13": ("vgg13", {}, 133_047_848),
    "vgg16": ("vgg16", {}, 138_357_544),
    "vgg19": ("vgg19", {}, 143_667_240),
    "vgg11_bn": ("vgg11_bn", {}, 132_868_840),
    "vgg13_bn": ("vgg13_bn", {}, 133_053_736),
    "vgg16_bn": ("vgg16_bn", {}, 138_365_992),
    "vgg19_bn": ("vgg19_bn", {}, 143_678_248),
    "resnet18": ("resnet18", {}, 11_689_512),
    "resnet34": ("resnet34", {}, 21_797_672),
    "resnet50": ("resnet50", {}, 25_557_032),
    "resnet101": ("resnet101", {}, 44_549_160),
    "resnext50_32x4d": ("resnext50_32x4d", {}, 25_028_904),
    "googlenet_bn": ("googlenet", {"aux_logits": False, "init_weights": True}, 6_624_904),
    # The model card's 27,161,264 includes the auxiliary head (3,326,696), which this file leaves out.
    "inception_v3": ("inception_v3", {"aux_logits": False, "transform_input": False, "init_weights": True}, 23_834_568),
    "shufflenet_v2_x1_0": ("shufflenet_v2_x1_0", {}, 2_278_604),
    "dilated_resnet50": ("resnet50", {"replace_stride_with_dilation": [False, True, True]}, 25_557_032),
}

SMALL_INPUT = {"inception_v3": 80}  # others: 64


def build_uninitialised(spec: dict, size: int, name: str) -> torch.nn.Module:
    """Our network with its tensors allocated but not initialised.

    Every tensor is then overwritten by torchvision's, and drawing random
    initial values for the VGGs' 130M+ parameters a second time would
    dominate this file's run time. Shapes are inferred on the meta device,
    by the same dry run as on the CPU.
    """
    with torch.device("meta"):
        network = build_model(spec, [3, size, size], source=f"{name}.yaml")
    return network.to_empty(device="cpu")


def torchvision_model(name: str) -> torch.nn.Module:
    builder, kwargs, _ = ZOO[name]
    torch.manual_seed(0)
    return getattr(torchvision.models, builder)(weights=None, num_classes=1000, **kwargs)


@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_file_is_torchvisions_network(name):
    spec = model_spec(name, 1000)
    assert spec["name"] == name
    size = SMALL_INPUT.get(name, 64)
    ours = build_uninitialised(spec, size, name)
    theirs = torchvision_model(name)

    assert count_parameters(ours) == count_parameters(theirs) == ZOO[name][2]
    load_torchvision_state_dict(ours, theirs.state_dict())
    for (key, value), expected in zip(ours.state_dict().items(), theirs.state_dict().values()):
        assert torch.equal(value, expected), key

    ours.eval()
    theirs.eval()
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got, want = ours(x), theirs(x)
    assert got.shape == want.shape == (2, 1000)
    # Untrained BN statistics let activations grow with depth (to ~1e9 in
    # Inception-v3), so the tolerance is 1e-5 absolute plus 1e-5 relative.
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_file_names_its_source_and_published_accuracy(name):
    spec = model_spec(name)  # merged onto the ModelConfig schema, as the CLI does: a stray key fails here
    assert spec["name"] == name
    assert spec["paper"] and spec["source"]
    assert len(spec["input_size"]) == 3
    if spec["published"]:
        assert {"top1", "top5", "protocol", "source"} <= set(spec["published"])


def test_loading_weights_of_another_shape_names_both_tensors():
    ours = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8))
    theirs = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    with pytest.raises(UserError, match=r"'0\.weight' \(8, 3, 3, 3\) and torchvision's '0\.weight' \(4, 3, 3, 3\)"):
        load_torchvision_state_dict(ours, theirs.state_dict())


def test_loading_weights_in_another_order_is_refused():
    # A conv with a bias where torchvision has none: shapes alone would pair
    # our conv bias with torchvision's BN weight.
    ours = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, bias=True), torch.nn.BatchNorm2d(4))
    theirs = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, bias=False), torch.nn.BatchNorm2d(4))
    with pytest.raises(UserError, match=r"'0\.bias'.*'1\.weight'.*different kinds"):
        load_torchvision_state_dict(ours, theirs.state_dict())


def test_loading_weights_with_missing_tensors_is_refused():
    ours = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    theirs = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3))
    with pytest.raises(UserError, match="the model has 7 tensors, torchvision's state dict 2"):
        load_torchvision_state_dict(ours, theirs.state_dict())
