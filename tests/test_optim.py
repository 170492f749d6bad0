"""Optimizers, weight-decay conventions and learning-rate schedules."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf
from omegaconf.errors import ValidationError
from torch import nn

from cnnbench.config import TrainConfig
from cnnbench.engine.optim import base_lr, make_optimizer, parameter_groups
from cnnbench.engine.schedule import make_schedule
from cnnbench.errors import UserError
from cnnbench.validate import validate


def config(**overrides):
    cfg = OmegaConf.structured(TrainConfig)
    cfg.data.batch_size = 64
    cfg.trainer.epochs = 10
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value)
    return cfg


def lrs(schedule_name, steps_per_epoch=10, **overrides):
    cfg = config(**{"schedule.name": schedule_name, **overrides})
    param = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    schedule = make_schedule(cfg, optimizer, 1.0, steps_per_epoch)
    out = []
    for _ in range(steps_per_epoch * cfg.trainer.epochs):
        out.append(optimizer.param_groups[0]["lr"])
        schedule.step()
    return out


def test_step_schedule_drops_at_epoch_boundaries():
    values = lrs("step", **{"schedule.step_size": 3, "schedule.gamma": 0.1})
    assert values[29] == 1.0 and values[30] == pytest.approx(0.1) and values[60] == pytest.approx(0.01)


def test_multistep_drops_at_each_milestone():
    values = lrs("multistep", **{"schedule.milestones": [2, 5], "schedule.gamma": 0.5})
    assert [values[i * 10] for i in range(7)] == [1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25]


def test_cosine_runs_from_the_lr_to_the_final_fraction():
    values = lrs("cosine", **{"schedule.final_lr_fraction": 0.1})
    assert values[0] == 1.0
    assert values[50] == pytest.approx(0.1 + 0.9 * 0.5)
    assert values[-1] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 99 / 100)))
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_linear_warmup_then_schedule():
    values = lrs("constant", **{"schedule.warmup_epochs": 0.5})
    assert values[:6] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0, 1.0])


def test_poly_decay():
    values = lrs("poly", **{"schedule.power": 2.0})
    assert values[50] == pytest.approx(0.25)


def test_one_cycle_rises_then_falls():
    values = lrs("onecycle", **{"schedule.peak_fraction": 0.3})
    assert values[0] == pytest.approx(1 / 25)
    assert max(values) == pytest.approx(1.0) and values.index(max(values)) == 30
    assert values[-1] < 0.01


def test_plateau_divides_when_validation_stops_improving():
    cfg = config(**{"schedule.name": "plateau", "schedule.patience": 1, "schedule.gamma": 0.1})
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.5)
    schedule = make_schedule(cfg, optimizer, 0.5, 10)
    for top1 in (50, 60, 60, 59):  # improves, improves, stalls once (within patience), stalls again
        schedule.end_epoch(top1)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.05)
    state = schedule.state_dict()
    fresh = make_schedule(cfg, optimizer, 0.5, 10)
    fresh.load_state_dict(state)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.05) and fresh.best == 60


def test_unknown_schedule_is_refused_by_the_schema_and_by_make_schedule():
    # The schema's ScheduleName refuses it in a composed config (tests/test_validate.py checks the
    # CLI's message); make_schedule refuses it from a plain config rather than running a constant lr.
    with pytest.raises(ValidationError, match="'cosin'"):
        lrs("cosin")
    cfg = OmegaConf.create(OmegaConf.to_container(config()))
    cfg.schedule.name = "cosin"
    with pytest.raises(ValueError, match="no schedule named 'cosin'"):
        make_schedule(cfg, torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0), 1.0, 10)


def test_linear_scaling_rule():
    assert base_lr(config(**{"optim.lr": 0.1})) == 0.1
    assert base_lr(config(**{"optim.lr": 0.1, "optim.reference_batch_size": 256})) == pytest.approx(0.1 * 64 / 256)


class WithNamedBias(nn.Module):
    """A parameter called `bias` that is not a layer's bias must still decay."""

    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(3))


def test_no_decay_is_chosen_by_module_type():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(4, 2), nn.GroupNorm(2, 4), WithNamedBias())
    decay, exempt = parameter_groups(model, 1e-4, no_decay_norm_bias=True)
    exempt_ids = {id(p) for p in exempt["params"]}
    expected = {id(model[0].bias), id(model[1].weight), id(model[1].bias), id(model[2].bias),
                id(model[3].weight), id(model[3].bias)}
    assert exempt_ids == expected and exempt["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(model[0].weight), id(model[2].weight), id(model[4].bias)}
    assert len(parameter_groups(model, 1e-4, no_decay_norm_bias=False)) == 1


def two_sgd_steps(decoupled):
    """Two steps with zero gradients: only weight decay moves the weight."""
    param = nn.Parameter(torch.ones(1))
    model = nn.Module()
    model.weight = param
    cfg = config(**{"optim.lr": 0.1, "optim.decoupled_weight_decay": decoupled,
                    "regularization.momentum": 0.9, "regularization.weight_decay": 0.5})
    optimizer = make_optimizer(cfg, model)
    for _ in range(2):
        param.grad = torch.zeros(1)
        optimizer.step()
    return param.item()


def test_coupled_and_decoupled_weight_decay():
    lr, wd, mu = 0.1, 0.5, 0.9
    # Coupled (L2): the decay term goes through momentum.
    p1 = 1 - lr * wd
    buf = mu * wd * 1.0 + wd * p1
    assert two_sgd_steps(False) == pytest.approx(p1 - lr * buf)
    # Decoupled: the weight shrinks by lr * wd each step, momentum never sees it.
    assert two_sgd_steps(True) == pytest.approx((1 - lr * wd) ** 2)


def test_adamw_is_decoupled_by_default():
    model = nn.Linear(2, 2)
    optimizer = make_optimizer(config(**{"optim.name": "adamw", "optim.lr": 1e-3}), model)
    assert isinstance(optimizer, torch.optim.AdamW)
    coupled = make_optimizer(config(**{"optim.name": "adamw", "optim.decoupled_weight_decay": False}), model)
    assert type(coupled) is torch.optim.Adam


@pytest.mark.parametrize("key, value, message", [
    ("optim.lr", 0.0, "optim.lr must be positive"),
    ("regularization.momentum", 1.0, "regularization.momentum"),
    ("optim.nesterov", True, "nesterov"),
])
def test_bad_optimizer_settings(key, value, message):
    """Checked by validate() before any optimizer is made (every rule: tests/test_validate.py)."""
    overrides = {key: value}
    if key == "optim.nesterov":
        overrides["regularization.momentum"] = 0.0
    with pytest.raises(UserError, match=message):
        validate(config(**overrides))


def test_unknown_optimizer_is_refused_by_the_schema():
    with pytest.raises(ValidationError, match="'rmsprop'"):
        config(**{"optim.name": "rmsprop"})


def test_caffe_lr_and_decay_multipliers_from_the_model_file():
    """bvlc_alexnet style: biases learn twice as fast and do not decay; a block's multipliers reach its layers."""
    from cnnbench.models import build_model

    spec = {
        "name": "mults",
        "blocks": {"frozen": {"args": [], "layers": [[ "conv", {"out": 4, "kernel": 1}]]}},
        "layers": [
            ["conv", {"out": 4, "kernel": 3, "lr_mult": [1, 2], "decay_mult": [1, 0], "as": "conv1"}],
            ["frozen", {"lr_mult": 0, "decay_mult": 0}],
            "flatten",
            ["linear", {"out": 2}],
        ],
    }
    model = build_model(spec, (3, 5, 5))
    cfg = config(**{"optim.lr": 0.1, "regularization.weight_decay": 5e-4, "schedule.name": "constant"})
    optimizer = make_optimizer(cfg, model)
    make_schedule(cfg, optimizer, 0.1, 10)
    conv1, frozen, linear = model.layers[0], model.layers[1].layers[0], model.layers[3]
    by_param = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    settings = lambda p: (by_param[id(p)]["lr"], by_param[id(p)]["weight_decay"])  # noqa: E731
    assert settings(conv1.weight) == (pytest.approx(0.1), 5e-4)
    assert settings(conv1.bias) == (pytest.approx(0.2), 0.0)
    assert settings(frozen.weight) == (0.0, 0.0) and settings(frozen.bias) == (0.0, 0.0)
    assert settings(linear.weight) == (pytest.approx(0.1), 5e-4) and settings(linear.bias) == (pytest.approx(0.1), 5e-4)


def test_bad_multiplier_names_the_row():
    from cnnbench.models import ModelBuildError, build_model

    with pytest.raises(ModelBuildError, match=r"layers\[0\].*lr_mult must be a number >= 0 or \[weights, biases\]"):
        build_model({"name": "bad", "layers": [["conv", {"out": 2, "kernel": 1, "lr_mult": [1, 2, 3]}]]}, (1, 2, 2))
