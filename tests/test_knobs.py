"""A knob the command line sets that cannot change the run is refused in one line (cnnbench/engine/knobs.py)."""

from __future__ import annotations

import pytest

from cnnbench.engine.knobs import check_knobs_take_effect, knobs_set
from cnnbench.errors import UserError
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
