"""Refuse a run whose command line sets a knob that changes nothing.

`cnnbench train -m regularization.lrn=true,false model=lenet5` would train two identical arms
(LeNet-5 has no LRN layer) and report a difference of zero as if it were a finding. A knob
counts when the user set it: on the command line (a sweep's arm values are on each job's
command line) or in the chosen `conf/experiment/` file; the values config groups bring
(`regularization=standard`, a model file's `norm:`) never do. A knob that cannot act is
refused whatever its value, the default included: an arm that sets it is a duplicate run.

Never no-ops: regularization.label_smoothing, regularization.weight_decay (every model has
weights) and regularization.momentum with SGD. optim.nesterov=true without momentum, or with
AdamW, is refused by cnnbench.validate already.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

from omegaconf import DictConfig, OmegaConf

from cnnbench.config import CONF_DIR
from cnnbench.errors import UserError
from cnnbench.models.api import model_from_config

# knob -> (the ops it acts on, what the message says the model lacks)
MODEL_KNOBS = {
    "regularization.lrn": (("lrn", "lrn_within_channel"), "no LRN layer"),
    "regularization.dropout": (("dropout",), "no dropout layer"),
    # Only the cross-channel `lrn` op has the two conventions.
    "model.lrn_convention": (("lrn",), "no LRN layer"),
    "model.norm": (("norm",), "no `norm` rows (its normalisation layers are fixed by its file)"),
    "model.norm_groups": (("norm",), "no `norm` rows (its normalisation layers are fixed by its file)"),
    # model.activation rebuilds relu rows only (the builder records rows as written).
    "model.activation": (("relu",), "no `relu` rows (its activations are fixed by its file)"),
    "model.aux_heads": (("aux_head",), "no `aux_head` rows"),
}
# Keys of an experiment file that are not knobs of the run.
NOT_KNOBS = ("defaults", "hydra", "experiment")


def check_knobs_take_effect(cfg: DictConfig, overrides: Sequence[str], experiment: Optional[str] = None,
                            model=None) -> None:
    """Raise a one-line UserError for the first knob set in ``overrides`` (Hydra's task
    overrides) or in ``conf/experiment/<experiment>.yaml`` that cannot change this run.
    ``model`` is the built network; None builds it, only when a model knob was set."""
    knobs = knobs_set(overrides, experiment)
    for key, value in knobs.items():
        reason = optimizer_no_op(cfg, key)
        if reason:
            raise UserError(f"{key}={value} has no effect: {reason}; drop it or change the sweep")
    model_knobs = [key for key in knobs if key in MODEL_KNOBS]
    if not model_knobs:
        return
    if model is None:
        model = model_from_config(cfg)
    for key in model_knobs:
        ops, lacks = MODEL_KNOBS[key]
        if not set(ops) & set(getattr(model, "ops_used", ops)):
            raise UserError(
                f"{key}={knobs[key]} has no effect: {cfg.model.name} has {lacks}; "
                f"every value of {key} trains the same network, so drop it or pick a model that has one"
            )


def optimizer_no_op(cfg: DictConfig, key: str) -> Optional[str]:
    """Why the optimizer ignores ``key`` in this run, or None when it uses it."""
    if key == "regularization.momentum" and cfg.optim.name == "adamw":
        return "optim=adamw has no momentum knob (its first moment is optim.betas[0])"
    if key == "optim.decoupled_weight_decay" and cfg.regularization.weight_decay == 0:
        return "regularization.weight_decay=0, so there is no decay to couple or decouple"
    return None


def knobs_set(overrides: Sequence[str], experiment: Optional[str] = None) -> Dict[str, str]:
    """Dotted key -> the value as written, of the experiment file's keys then the overrides
    (which win); group choices such as ``model=lenet5`` are keys too, and match no knob."""
    knobs = experiment_keys(experiment) if experiment else {}
    for override in overrides:
        key, sep, value = override.partition("=")
        if sep and not key.startswith("~"):
            # Hydra's sweeper writes an arm's booleans as True/False; say them as YAML does
            knobs[key.lstrip("+")] = value.lower() if value.lower() in ("true", "false") else value
    return knobs


def experiment_keys(name: str) -> Dict[str, str]:
    """The dotted keys ``conf/experiment/<name>.yaml`` sets, with their values as YAML text."""
    path = CONF_DIR / "experiment" / f"{name}.yaml"
    if not path.is_file():  # an experiment from hydra.searchpath: its keys are not checked
        return {}
    content = OmegaConf.to_container(OmegaConf.load(path)) or {}
    keys: Dict[str, str] = {}
    flatten({k: v for k, v in content.items() if k not in NOT_KNOBS}, [], keys)
    return keys


def flatten(node: Any, path: List[str], out: Dict[str, str]) -> None:
    if isinstance(node, dict) and node:
        for key, value in node.items():
            flatten(value, [*path, str(key)], out)
    else:
        out[".".join(path)] = value_text(node)


def value_text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return "null" if value is None else str(value)
