"""LeNet-5 against the paper (LeCun et al. 1998, Fig. 2 and section II.B)."""

import torch

from cnnbench.models import count_parameters, create_model


def lenet5(num_classes: int = 10):
    return create_model("lenet5", num_classes)  # 1x32x32: the file takes its dataset's size, digits by default


def test_feature_maps_match_figure_2():
    model = lenet5().eval()
    shapes = {}
    x = torch.zeros(1, 1, 32, 32)
    for name, layer in zip(model.names, model.layers):
        x = layer(x)
        shapes[name] = tuple(x.shape[1:])
    assert shapes["C1"] == (6, 28, 28)
    assert shapes["S2"] == (6, 14, 14)
    assert shapes["C3"] == (16, 10, 10)
    assert shapes["S4"] == (16, 5, 5)
    assert shapes["C5"] == (120, 1, 1)
    assert shapes["F6"] == (84,)
    assert shapes["output"] == (10,)


def test_parameter_count():
    # Section II.B: C1 156, C5 48,120, F6 10,164 trainable parameters, as in
    # the paper. C3 here connects to all six S2 maps: 16*(6*25+1) = 2,416
    # (the paper's Table I wiring gives 1,516); the output layer is 84*10+10
    # = 850 weights and biases (the paper's RBF units have 840 fixed ones);
    # S2/S4 are parameter-free (the paper's have 12 and 32).
    model = lenet5()
    layers = dict(zip(model.names, model.layers))
    counts = {name: count_parameters(layers[name]) for name in ("C1", "C3", "C5", "F6", "output")}
    assert counts == {"C1": 156, "C3": 2416, "C5": 48120, "F6": 10164, "output": 850}
    assert count_parameters(model) == 61706


def test_forward_and_backward():
    model = lenet5()
    out = model(torch.randn(4, 1, 32, 32))
    assert out.shape == (4, 10)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
