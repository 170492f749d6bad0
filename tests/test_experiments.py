"""Every prepared ablation in conf/experiment/ composes, validates, sweeps knobs that act on
its model, and names a swept value as its baseline."""

from __future__ import annotations

import functools
import itertools

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from cnnbench.config import CONF_DIR, register_schemas
from cnnbench.engine.knobs import check_knobs_take_effect
from cnnbench.validate import validate

EXPERIMENTS = sorted(path.stem for path in (CONF_DIR / "experiment").glob("*.yaml"))
PAPER_EXPERIMENTS = [name for name in EXPERIMENTS if name != "lenet5_momentum"]


@functools.lru_cache(maxsize=None)  # each test reads the same compositions; none changes them
def composed(*overrides: str, hydra: bool = False):
    register_schemas()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return compose("train", overrides=list(overrides), return_hydra_config=hydra)


@functools.lru_cache(maxsize=None)
def sweep(name: str) -> dict:
    """key -> its swept values as override strings, from the file's hydra.sweeper.params."""
    params = composed(f"experiment={name}", hydra=True).hydra.sweeper.params or {}
    parser = OverridesParser.create()
    parsed = parser.parse_overrides([f"{key}={value}" for key, value in params.items()])
    return {o.key_or_group: list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.get_value_element_as_str()]
            for o in parsed}


def arms(name: str) -> list:
    """Every job's overrides but the seed (seeds do not change what a knob acts on)."""
    swept = {key: values for key, values in sweep(name).items() if key != "seed"}
    return [[f"{key}={value}" for key, value in zip(swept, values)] for values in itertools.product(*swept.values())]


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_each_experiment_composes_validates_and_sweeps_seeds(name):
    validate(composed(f"experiment={name}"))
    swept = sweep(name)
    assert swept, f"{name}: no hydra.sweeper.params"
    if name in PAPER_EXPERIMENTS:
        assert swept.get("seed") == ["0", "1", "2"], f"{name}: sweep seed: 0,1,2"


@pytest.mark.parametrize("name", PAPER_EXPERIMENTS)
def test_each_experiment_says_paper_claim_figure_baseline_and_quick_command(name):
    info = composed(f"experiment={name}").experiment
    for field in ("paper", "claim", "baseline", "metric", "quick"):
        assert info[field], f"{name}: experiment.{field} is empty"
    assert info.published, f"{name}: experiment.published is empty"
    assert "protocol" in OmegaConf.to_yaml(info.published), f"{name}: published says no protocol"
    assert info.quick.startswith(f"cnnbench train -m experiment={name} ")
    # KEY=VALUE, or KEY=VALUE,KEY=VALUE where the arms vary in two keys (report.baseline's form)
    for part in info.baseline.split(","):
        baseline = OverridesParser.create().parse_override(part)  # true and True alike
        swept = [OverridesParser.create().parse_override(f"{baseline.key_or_group}={v}").value()
                 for v in sweep(name).get(baseline.key_or_group, [])]
        assert baseline.value() in swept, f"{name}: baseline {part} is not a swept value"


@pytest.mark.parametrize("name", PAPER_EXPERIMENTS)
def test_every_arm_validates_and_its_knob_acts_on_its_model(name):
    for arm in arms(name):
        cfg = composed(f"experiment={name}", *arm)
        validate(cfg)
        # It builds the model if a knob needs it: on the meta device, shapes without values,
        # since only which rows it has matters (a ResNet-50 per arm would take seconds each).
        with torch.device("meta"):
            check_knobs_take_effect(cfg, [f"experiment={name}", *arm], name)
