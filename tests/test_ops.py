"""Each op: the shape the builder infers and the numbers it computes, against torch.nn.functional."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnbench.models import OPS, BuildOptions, ModelBuildError, OpContext, build_model
from cnnbench.models.dropconnect import DropConnectLinear


def one_layer(op: str, shape, options: BuildOptions = BuildOptions(), **args):
    """A model of the single row `[op, args]`, built for inputs of `shape`."""
    model = build_model({"name": "t", "layers": [[op, args]]}, shape, options)
    return model, model.layers[0]


def seeded_input(*shape):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(0))


# --- convolutions ----------------------------------------------------------


def test_conv_transpose_doubles_the_size_and_matches_functional():
    model, layer = one_layer("conv_transpose", (3, 5, 5), out=4, kernel=4, stride=2, padding=1)
    x = seeded_input(2, 3, 5, 5)
    assert model.output_shape == (4, 10, 10)  # (5 - 1) * 2 - 2 + 4
    assert torch.allclose(model(x), F.conv_transpose2d(x, layer.weight, layer.bias, stride=2, padding=1), atol=1e-6)


def test_dwconv_has_one_filter_per_channel():
    model, layer = one_layer("dwconv", (6, 8, 8), kernel=3, padding=1, multiplier=2, bias=False)
    assert layer.groups == 6 and layer.weight.shape == (12, 1, 3, 3)
    assert model.output_shape == (12, 8, 8)
    x = seeded_input(1, 6, 8, 8)
    assert torch.allclose(model(x), F.conv2d(x, layer.weight, padding=1, groups=6), atol=1e-6)


def test_sepconv_is_depthwise_then_pointwise():
    model, layer = one_layer("sepconv", (4, 9, 9), out=7, kernel=3, stride=2, padding=1)
    assert model.output_shape == (7, 5, 5)
    assert layer.depthwise.weight.shape == (4, 1, 3, 3) and layer.depthwise.bias is None
    assert layer.pointwise.weight.shape == (7, 4, 1, 1)
    x = seeded_input(2, 4, 9, 9)
    expected = F.conv2d(F.conv2d(x, layer.depthwise.weight, stride=2, padding=1, groups=4),
                        layer.pointwise.weight, layer.pointwise.bias)
    assert torch.allclose(model(x), expected, atol=1e-5)
    # Far fewer weights than the full convolution it factorises: 4*9 + 7*4 + 7 vs 7*4*9 + 7.
    assert sum(p.numel() for p in layer.parameters()) == 36 + 28 + 7


def test_spatially_separable_conv_with_list_kernels_equals_the_rank_one_3x3():
    # A 3x1 then a 1x3 conv (Inception-v3's factorisation) is one 3x3 conv whose
    # kernel is the outer product of the two.
    spec = {"name": "t", "layers": [
        ["conv", {"out": 1, "kernel": [3, 1], "padding": [1, 0], "bias": False}],
        ["conv", {"out": 1, "kernel": [1, 3], "padding": [0, 1], "bias": False}],
    ]}
    model = build_model(spec, (1, 6, 7))
    column, row = model.layers[0].weight, model.layers[1].weight
    assert column.shape == (1, 1, 3, 1) and row.shape == (1, 1, 1, 3)
    assert model.output_shape == (1, 6, 7)
    full = column[0, 0] @ row[0, 0]  # (3, 1) @ (1, 3) -> (3, 3)
    x = seeded_input(2, 1, 6, 7)
    assert torch.allclose(model(x), F.conv2d(x, full.view(1, 1, 3, 3), padding=1), atol=1e-5)


def test_bias_init_sets_every_bias_and_needs_a_bias():
    _, layer = one_layer("conv", (3, 4, 4), out=5, kernel=1, bias_init=-2.0)
    assert torch.equal(layer.bias, torch.full((5,), -2.0))
    _, layer = one_layer("linear", (3,), out=2, bias_init=1.5)
    assert torch.equal(layer.bias, torch.full((2,), 1.5))
    with pytest.raises(ModelBuildError, match="bias_init=-2.0 needs bias: true"):
        one_layer("linear", (3,), out=2, bias=False, bias_init=-2.0)


# --- activations -----------------------------------------------------------


@pytest.mark.parametrize("op, args, reference", [
    ("leaky_relu", {}, lambda x: F.leaky_relu(x, 0.01)),
    ("leaky_relu", {"slope": 0.2}, lambda x: torch.where(x > 0, x, 0.2 * x)),
    ("elu", {"alpha": 0.5}, lambda x: torch.where(x > 0, x, 0.5 * (torch.exp(x) - 1))),
    ("gelu", {}, lambda x: x * 0.5 * (1 + torch.erf(x / math.sqrt(2)))),
    ("gelu", {"approximate": "tanh"}, lambda x: F.gelu(x, approximate="tanh")),
    ("identity", {}, lambda x: x),
])
def test_activations_match_their_formulas(op, args, reference):
    model, _ = one_layer(op, (3, 4, 4), **args)
    x = seeded_input(2, 3, 4, 4)
    assert model.output_shape == (3, 4, 4)
    assert torch.allclose(model(x), reference(x), atol=1e-6)


def test_prelu_learns_one_slope_per_channel_from_a_quarter():
    model, layer = one_layer("prelu", (5, 2, 2))
    assert torch.equal(layer.weight, torch.full((5,), 0.25))
    with torch.no_grad():
        layer.weight.copy_(torch.arange(5.0))
    x = -torch.ones(1, 5, 2, 2)
    assert torch.equal(model(x)[0, :, 0, 0], -torch.arange(5.0))
    _, shared = one_layer("prelu", (5, 2, 2), shared=True)
    assert shared.weight.numel() == 1


# --- normalisation ----------------------------------------------------------


def test_groupnorm_matches_functional_and_rejects_uneven_groups():
    model, layer = one_layer("groupnorm", (64, 3, 3))
    assert layer.num_groups == 32  # Wu & He's default
    x = seeded_input(2, 64, 3, 3)
    assert torch.allclose(model(x), F.group_norm(x, 32, layer.weight, layer.bias), atol=1e-5)
    # Each group of 2 channels of each sample is normalised on its own.
    assert abs(model(x)[0, :2].mean().item()) < 1e-5
    with pytest.raises(ModelBuildError, match="48 channels are not divisible into 32 groups"):
        one_layer("groupnorm", (48, 3, 3))


@pytest.mark.parametrize("kind, expected", [("bn", nn.BatchNorm2d), ("gn", nn.GroupNorm), ("none", nn.Identity)])
def test_norm_row_follows_the_models_norm_key(kind, expected):
    spec = {"name": "t", "norm": kind, "layers": ["norm"]}
    layer = build_model(spec, (64, 4, 4)).layers[0]
    assert type(layer) is expected
    if kind == "gn":
        assert layer.num_groups == 32


def test_norm_groups_come_from_the_row_then_the_model():
    spec = {"name": "t", "norm": "gn", "norm_groups": 8, "layers": ["norm", ["norm", {"groups": 4}]]}
    model = build_model(spec, (16, 2, 2))
    assert [m.num_groups for m in model.layers] == [8, 4]


def test_norm_slot_on_a_flat_input_is_batchnorm1d():
    assert type(build_model({"name": "t", "layers": ["norm"]}, (10,)).layers[0]) is nn.BatchNorm1d


# --- regularisation switches ------------------------------------------------


def test_lrn_switch_turns_every_lrn_into_identity():
    spec = {"name": "t", "layers": ["lrn", "relu", ["lrn", {"size": 3}]]}
    on = build_model(spec, (8, 4, 4), BuildOptions(lrn=True))
    off = build_model(spec, (8, 4, 4), BuildOptions(lrn=False))
    assert [type(m) for m in on.layers] == [nn.LocalResponseNorm, nn.ReLU, nn.LocalResponseNorm]
    assert [type(m) for m in off.layers] == [nn.Identity, nn.ReLU, nn.Identity]


def test_lrn_conventions_read_alpha_per_term_or_divided_by_the_window():
    a = seeded_input(1, 8 * 3 * 3).view(1, 8, 3, 3) * 10
    spec = {"name": "t", "layers": [["lrn", {"size": 5, "alpha": 1e-4, "k": 2.0, "convention": "paper"}]]}
    squares = nn.functional.pad(a * a, (0, 0, 0, 0, 2, 2))
    window = sum(squares[:, c:c + 8] for c in range(5))  # sum over the 5 channels centred on each
    paper = build_model(spec, (8, 3, 3))
    assert torch.allclose(paper(a), a / (2.0 + 1e-4 * window) ** 0.75, atol=1e-6)
    cuda_convnet = build_model({**spec, "lrn_convention": "cuda_convnet"}, (8, 3, 3))
    assert torch.allclose(cuda_convnet(a), a / (2.0 + 1e-4 / 5 * window) ** 0.75, atol=1e-6)
    assert not torch.allclose(paper(a), cuda_convnet(a), atol=1e-4)
    # The op's own default is cuda-convnet's (and torch's) reading; the model key overrides rows.
    plain = {"name": "t", "layers": [["lrn", {"alpha": 1e-4}]]}
    assert build_model(plain, (8, 3, 3)).layers[0].alpha == 1e-4
    assert build_model({**plain, "lrn_convention": "paper"}, (8, 3, 3)).layers[0].alpha == 5e-4


def test_lrn_convention_unknown_is_one_line():
    spec = {"name": "t", "layers": ["lrn"]}
    with pytest.raises(ModelBuildError, match=r"model.lrn_convention='caffe' is unknown; choose one of: paper, cuda_convnet$"):
        build_model({**spec, "lrn_convention": "caffe"}, (8, 3, 3))
    with pytest.raises(ModelBuildError, match=r"lrn: convention must be one of paper, cuda_convnet, got 'x'"):
        build_model({"name": "t", "layers": [["lrn", {"convention": "x"}]]}, (8, 3, 3))


def test_alexnet_lrn_ablation_runs_both_conventions():
    from cnnbench import create_model

    def alphas(**kw):
        return [m.alpha for m in create_model("alexnet", **kw).modules() if isinstance(m, nn.LocalResponseNorm)]

    assert alphas() == [5e-4, 5e-4]  # the printed formula by default
    assert alphas(lrn_convention="cuda_convnet") == [1e-4, 1e-4]


def test_dropout_switch_sets_or_removes_every_dropout():
    spec = {"name": "t", "layers": [["dropout", {"p": 0.5}], "relu", "dropout"]}
    own = build_model(spec, (4,))
    assert [m.p for m in own.layers if isinstance(m, nn.Dropout)] == [0.5, 0.5]
    assert [m.p for m in build_model(spec, (4,), BuildOptions(dropout=0.2)).layers
            if isinstance(m, nn.Dropout)] == [0.2, 0.2]
    removed = build_model(spec, (4,), BuildOptions(dropout=0.0))
    assert not any(isinstance(m, nn.Dropout) for m in removed.modules())


# --- DropConnect ------------------------------------------------------------


def dropconnect_layer(inputs=100, outputs=8, **kwargs) -> DropConnectLinear:
    _, layer = one_layer("dropconnect", (inputs,), out=outputs, **kwargs)
    return layer


def test_dropconnect_training_masks_weights_not_outputs():
    torch.manual_seed(0)
    layer = dropconnect_layer(inputs=50, outputs=4, p=0.5, activation="none").train()
    with torch.no_grad():
        layer.linear.weight.fill_(1.0)
        layer.linear.bias.zero_()
    u = layer(torch.ones(300, 50))
    # u = number of kept weights in the row: Binomial(50, 0.5), values between
    # 0 and 50. Dropout would give only 0 or the whole (rescaled) sum.
    assert torch.equal(u, u.round())
    assert ((u > 5) & (u < 45)).float().mean() > 0.99
    assert abs(u.mean().item() - 25.0) < 1.0
    # Every example draws its own mask.
    assert len(torch.unique(u[:, 0])) > 5


def test_dropconnect_one_mask_per_batch_when_asked():
    torch.manual_seed(0)
    layer = dropconnect_layer(inputs=50, outputs=4, activation="none", per_example=False).train()
    u = layer(torch.ones(10, 50))
    assert torch.allclose(u, u[:1].expand_as(u))


def test_dropconnect_inference_is_the_gaussian_moment_match():
    torch.manual_seed(0)
    layer = dropconnect_layer(inputs=100, outputs=6, p=0.5, activation="none").eval()
    v = seeded_input(3, 100)
    weight, bias = layer.linear.weight, layer.linear.bias
    # With no non-linearity the average is the mean exactly: q (W v + b).
    assert torch.allclose(layer(v), 0.5 * (v @ weight.T + bias), atol=1e-6)


def test_dropconnect_relu_inference_averages_relu_over_the_gaussian_and_is_deterministic():
    torch.manual_seed(0)
    layer = dropconnect_layer(inputs=100, outputs=6, p=0.5, activation="relu", samples=4000).eval()
    v = seeded_input(3, 100)
    weight, bias = layer.linear.weight, layer.linear.bias
    mean = 0.5 * (v @ weight.T + bias)
    std = (0.25 * ((v * v) @ (weight * weight).T + bias * bias)).sqrt()
    # E[relu(u)] for u ~ N(mean, std^2), in closed form.
    z = mean / std
    normal = torch.distributions.Normal(0.0, 1.0)
    expected = mean * normal.cdf(z) + std * normal.log_prob(z).exp()
    with torch.no_grad():
        first, second = layer(v), layer(v)
        assert torch.equal(first, second)  # the same input, the same answer
        assert torch.allclose(first, expected, atol=4 * std.max().item() / math.sqrt(4000))
        # ... and different from the dropout-style mean network relu(q W v).
        assert not torch.allclose(first, torch.relu(mean), atol=1e-3)
        # ... and close to the average of the training-mode network over many masks.
        layer.train()
        masked = layer(v.repeat_interleave(4000, 0)).view(3, 4000, 6).mean(1)
        assert torch.allclose(first, masked, atol=0.05 * std.max().item() + 0.02)
        layer.eval()
        layer.seed = 1
        assert not torch.equal(layer(v), first)  # the seed is what fixes the draws


def test_dropconnect_inference_of_an_example_does_not_depend_on_its_batchmates():
    torch.manual_seed(0)
    layer = dropconnect_layer(inputs=100, outputs=6, p=0.5, activation="relu", samples=1000).eval()
    batch = seeded_input(8, 100)
    with torch.no_grad():
        together = layer(batch)
        for i in (0, 5):  # first and elsewhere in the batch, alone and in a batch of another size
            assert torch.allclose(layer(batch[i:i + 1]), together[i:i + 1], atol=1e-6)
            assert torch.allclose(layer(batch[i:i + 3]), together[i:i + 3], atol=1e-6)
        assert torch.allclose(layer(batch.flip(0)), together.flip(0), atol=1e-6)


def test_dropconnect_with_p_zero_is_a_plain_layer():
    layer = dropconnect_layer(p=0.0, activation="tanh", samples=10).train()
    v = seeded_input(4, 100)
    expected = torch.tanh(layer.linear(v))
    assert torch.allclose(layer(v), expected, atol=1e-6)
    assert torch.allclose(layer.eval()(v), expected, atol=1e-6)


# --- merging ----------------------------------------------------------------


def two_inputs(op: str, first, second, **args):
    spec = {"name": "t", "layers": [
        ["identity", {"as": "a"}],
        ["adaptive_avgpool", {"size": list(second[1:]), "from": "input", "as": "b"}],
        [op, {"from": ["a", "b"], **args}],
    ]}
    return build_model(spec, first)


def test_multiply_broadcasts_a_channel_scale():
    model = two_inputs("multiply", (4, 6, 6), (4, 1, 1))
    assert model.output_shape == (4, 6, 6)
    x = seeded_input(2, 4, 6, 6)
    assert torch.allclose(model(x), x * x.mean((2, 3), keepdim=True), atol=1e-6)


def test_highway_gate_mixes_transform_and_carry():
    gate = OPS["highway_gate"].factory(OpContext(((3, 2, 2),) * 3))
    h, x = seeded_input(1, 3, 2, 2), seeded_input(1, 3, 2, 2) + 1
    t = torch.rand(1, 3, 2, 2)
    assert torch.equal(gate([h, torch.ones_like(t), x]), h)
    assert torch.equal(gate([h, torch.zeros_like(t), x]), x)
    assert torch.allclose(gate([h, t, x]), t * h + (1 - t) * x, atol=1e-6)
    with pytest.raises(ValueError, match="must have the shape of x"):
        OPS["highway_gate"].factory(OpContext(((3, 2, 2), (3, 2, 2), (4, 2, 2))))
    with pytest.raises(ValueError, match="reads \\[H, T, x\\]"):
        OPS["highway_gate"].factory(OpContext(((3, 2, 2), (3, 2, 2))))


def stn(size=None):
    args = {"from": ["input", "loc"]} | ({"size": size} if size else {})
    spec = {"name": "t", "layers": [
        "flatten", ["linear", {"out": 5}], ["tanh", {"as": "loc"}], ["spatial_transform", args],
    ]}
    return build_model(spec, (2, 6, 8))


def test_spatial_transformer_starts_as_the_identity():
    model = stn()
    sampler = model.layers[3]
    assert torch.equal(sampler.regressor.weight, torch.zeros(6, 5))
    assert torch.equal(sampler.regressor.bias, torch.tensor([1.0, 0, 0, 0, 1, 0]))
    x = seeded_input(3, 2, 6, 8)
    assert model.output_shape == (2, 6, 8)
    assert torch.allclose(model(x), x, atol=1e-5)


def test_spatial_transformer_samples_where_theta_points_and_passes_gradients():
    model = stn()
    sampler = model.layers[3]
    with torch.no_grad():
        sampler.regressor.bias.copy_(torch.tensor([-1.0, 0, 0, 0, 1, 0]))  # x_s = -x_t: a mirror
    x = seeded_input(1, 2, 6, 8)
    assert torch.allclose(model(x), x.flip(-1), atol=1e-5)
    model(x).square().sum().backward()
    # The sampler is differentiable in theta (section 3.3), so the regression layer learns.
    assert sampler.regressor.weight.grad.abs().sum() > 0


def test_spatial_transformer_output_size_resamples_bilinearly():
    model = stn(size=[3, 4])
    assert model.output_shape == (2, 3, 4)
    x = seeded_input(1, 2, 6, 8)
    assert torch.allclose(model(x), F.interpolate(x, size=(3, 4), mode="bilinear", align_corners=False), atol=1e-5)
