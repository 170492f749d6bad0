"""A knob the command line sets that cannot change the run is refused in one line (cnnbench/engine/knobs.py)."""

from __future__ import annotations

import pytest
import torch

from cnnbench import create_model
from cnnbench.engine.knobs import check_knobs_take_effect, knobs_set
from cnnbench.errors import UserError
from cnnbench.models import ModelOutput, build_model, count_parameters
from tests.conftest import run_command
from tests.test_validate import composed


@pytest.mark.parametrize("overrides, message", [
    (("model=lenet5", "regularization.lrn=false"), "regularization.lrn=false has no effect: lenet5 has no LRN layer"),
    # the default value is no better: the arm is a duplicate run
    (("model=lenet5", "regularization.lrn=true"), "regularization.lrn=true has no effect: lenet5 has no LRN layer"),
    (("model=lenet5", "regularization.dropout=0.5"), "regularization.dropout=0.5 has no effect: lenet5 has no dropout layer"),
    (("model=resnet20", "regularization.dropout=0.0"), "regularization.dropout=0.0 has no effect: resnet20 has no dropout"),
    # alexnet_cifar's LRN is within-channel, which has one convention only
    (("model=alexnet_cifar", "model.lrn_convention=paper"), "model.lrn_convention=paper has no effect: alexnet_cifar has no LRN"),
    (("model=lenet5", "model.norm=gn"), "model.norm=gn has no effect: lenet5 has no `norm` rows"),
    (("model=lenet5", "model.norm_groups=8"), "model.norm_groups=8 has no effect: lenet5 has no `norm` rows"),
    (("optim=adamw", "regularization.momentum=0.9"), "regularization.momentum=0.9 has no effect: optim=adamw has no momentum"),
    (("regularization.weight_decay=0", "optim.decoupled_weight_decay=true"),
     "optim.decoupled_weight_decay=true has no effect: regularization.weight_decay=0"),
])
def test_a_knob_that_changes_nothing_is_refused_in_one_line(tmp_path, overrides, message):
    with pytest.raises(UserError) as refused:
        run_command("train", *overrides, "trainer.epochs=1", cwd=tmp_path)
    assert str(refused.value).startswith(message)
    assert "\n" not in str(refused.value)
    assert not any(tmp_path.glob("outputs/*/*"))  # refused before any file was written


def test_nesterov_without_momentum_is_one_line(tmp_path):
    with pytest.raises(UserError, match="optim.nesterov=true needs .* regularization.momentum > 0") as refused:
        run_command("train", "optim.nesterov=true", "regularization.momentum=0", cwd=tmp_path)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize("model, overrides", [
    ("alexnet_cifar", ["regularization.lrn=false"]),  # lrn_within_channel rows
    ("alexnet_cifar", ["regularization.lrn=true"]),
    ("nin_cifar", ["regularization.dropout=0.0"]),
    ("lenet5", ["regularization.label_smoothing=0.1", "regularization.weight_decay=0", "regularization.momentum=0"]),
    ("lenet5", ["optim=adamw", "regularization.weight_decay=0.05", "optim.decoupled_weight_decay=false"]),
])
def test_the_same_knob_on_a_model_that_has_the_layer_is_accepted(model, overrides):
    cfg = composed("train", f"model={model}", *overrides)
    check_knobs_take_effect(cfg, [f"model={model}", *overrides])


def test_a_model_with_norm_rows_takes_model_norm():
    class WithNormRows:
        ops_used = frozenset({"conv", "norm"})

    cfg = composed("train", "model.norm=gn")
    check_knobs_take_effect(cfg, ["model.norm=gn", "model.norm_groups=8"], model=WithNormRows())


def test_only_keys_the_user_set_count():
    # regularization=alexnet brings lrn and dropout values with it: a group's values are not knobs the user set
    check_knobs_take_effect(composed("train", "regularization=alexnet"), ["regularization=alexnet"])
    assert knobs_set(["+a.b=1", "~c", "regularization.lrn=false"]) == {"a.b": "1", "regularization.lrn": "false"}
    assert knobs_set(["regularization.lrn=True"]) == {"regularization.lrn": "true"}  # as Hydra's sweeper writes an arm


def test_an_experiment_files_keys_count(tmp_path):
    keys = knobs_set([], "alexnet_lrn")
    assert keys["optim.lr"] == "0.01" and not any(k.startswith(("hydra", "defaults", "experiment")) for k in keys)
    with pytest.raises(UserError, match="regularization.lrn=false has no effect: nin_cifar has no LRN layer"):
        run_command("train", "experiment=alexnet_lrn", "model=nin_cifar", "data=synthetic",
                    "regularization.lrn=false", cwd=tmp_path)


# --- model.activation and model.aux_heads: one generic switch each, refused where nothing switches ---


@pytest.mark.parametrize("overrides, message", [
    (("model=lenet5", "model.activation=relu"), "model.activation=relu has no effect: lenet5 has no `relu` rows"),
    (("model=nin_cifar", "model.aux_heads=false"), "model.aux_heads=false has no effect: nin_cifar has no `aux_head` rows"),
])
def test_a_switch_with_nothing_to_switch_is_refused(tmp_path, overrides, message):
    with pytest.raises(UserError) as refused:
        run_command("train", *overrides, "trainer.epochs=1", cwd=tmp_path)
    assert str(refused.value).startswith(message) and "\n" not in str(refused.value)


def test_model_activation_rebuilds_every_relu_row():
    cfg = composed("train", "model=alexnet_cifar", "model.activation=tanh")
    check_knobs_take_effect(cfg, ["model=alexnet_cifar", "model.activation=tanh"])
    kinds = {name: {type(m).__name__ for m in create_model("alexnet_cifar", activation=name).modules()}
             for name in (None, "tanh")}
    assert "ReLU" in kinds[None] and "Tanh" not in kinds[None]
    assert "Tanh" in kinds["tanh"] and "ReLU" not in kinds["tanh"]
    with pytest.raises(UserError, match=r"model.activation='gelu' is unknown; choose one of: relu, tanh") as refused:
        create_model("alexnet_cifar", activation="gelu")
    assert "\n" not in str(refused.value)


def test_model_aux_heads_false_leaves_the_heads_out():
    spec = {"name": "tiny", "layers": [
        ["conv", {"out": 4, "kernel": 3, "as": "c1"}],
        ["aux_head", {"from": "c1", "weight": 0.3, "layers": ["gap", "flatten", ["linear", {"out": 3}]]}],
        "relu", "gap", "flatten", ["linear", {"out": 3}]]}
    with_heads = build_model(spec, (3, 8, 8))
    without = build_model({**spec, "aux_heads": False}, (3, 8, 8))
    assert "aux_head" in with_heads.ops_used and "aux_head" in without.ops_used  # the knob acts on both
    assert isinstance(with_heads.train()(torch.zeros(2, 3, 8, 8)), ModelOutput)
    assert without.train()(torch.zeros(2, 3, 8, 8)).shape == (2, 3)  # plain logits: no head
    assert count_parameters(with_heads) - count_parameters(without) == 4 * 3 + 3

    class WithAuxHeads:
        ops_used = frozenset({"conv", "aux_head"})

    check_knobs_take_effect(composed("train", "model.aux_heads=false"), ["model.aux_heads=false"], model=WithAuxHeads())


def test_resnet50_gn_takes_model_norm_and_keeps_resnet50s_parameters():
    with torch.device("meta"):  # shapes only: a ResNet-50 is seconds on the CPU
        gn, bn, plain = create_model("resnet50_gn"), create_model("resnet50_gn", norm="bn"), create_model("resnet50")
    assert {type(m).__name__ for m in gn.modules()} >= {"GroupNorm"} and "BatchNorm2d" not in {type(m).__name__ for m in gn.modules()}
    assert "GroupNorm" not in {type(m).__name__ for m in bn.modules()}
    names = [[(k, tuple(p.shape)) for k, p in m.named_parameters()] for m in (gn, bn, plain)]
    assert names[0] == names[1] == names[2]  # the same parameters, names and shapes as resnet50's
    assert "norm" in gn.ops_used
