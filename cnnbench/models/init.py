"""Initialisation schemes a model file may name: the papers' starting weights.

A model's ``init_spec`` maps an op kind to a scheme per parameter::

    init_spec:
      conv:   {weight: [kaiming_normal, {mode: fan_out}], bias: [constant, 0]}
      linear: {weight: [normal, 0.01], bias: [constant, 0]}
      norm:   {weight: [constant, 1], bias: [constant, 0]}

and a row's ``init_spec: {weight: ..., bias: ...}`` overrides it for that
row's layers. A scheme is ``[name]``, ``[name, number]`` (normal's std,
uniform's bound a, constant's value, xavier's gain) or ``[name, {args}]``
(kaiming's ``mode: fan_in|fan_out`` and ``nonlinearity``). Kinds are matched
by module type, so ``conv`` also reaches depthwise and separable convolutions
and ``linear`` the linear part of any layer. The schemes run only with
model.init=paper; model.init=torch keeps torch's defaults, which is also what
any parameter the spec does not name keeps.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Mapping, Tuple

import torch
from torch import nn

KINDS: Dict[str, Tuple[type, ...]] = {
    "conv": (nn.Conv2d,),
    "conv_transpose": (nn.ConvTranspose2d,),
    "linear": (nn.Linear,),
    "norm": (nn.modules.batchnorm._BatchNorm, nn.GroupNorm),
}
PARAMS = ("weight", "bias")


def _normal(t: torch.Tensor, std: float = 0.01) -> None:
    nn.init.normal_(t, 0.0, std)


def _uniform(t: torch.Tensor, a: float = 0.01) -> None:
    nn.init.uniform_(t, -a, a)


def _kaiming(fill: Callable) -> Callable:
    def scheme(t: torch.Tensor, mode: str = "fan_in", nonlinearity: str = "relu") -> None:
        if mode not in ("fan_in", "fan_out"):
            raise ValueError(f"mode must be fan_in or fan_out, got {mode!r}")
        fill(t, mode=mode, nonlinearity=nonlinearity)

    return scheme


SCHEMES: Dict[str, Callable[..., None]] = {
    "normal": _normal,
    "uniform": _uniform,
    "xavier_uniform": lambda t, gain=1.0: nn.init.xavier_uniform_(t, gain),
    "xavier_normal": lambda t, gain=1.0: nn.init.xavier_normal_(t, gain),
    "kaiming_normal": _kaiming(nn.init.kaiming_normal_),
    "kaiming_uniform": _kaiming(nn.init.kaiming_uniform_),
    "constant": lambda t, value=0.0: nn.init.constant_(t, float(value)),
}


def check_model_spec(spec: Any) -> Dict[str, Dict[str, list]]:
    """A model's ``init_spec``, checked: op kinds to checked per-parameter schemes."""
    if not isinstance(spec, Mapping):
        raise ValueError(f"init_spec must map op kinds ({', '.join(KINDS)}) to schemes, got {spec!r}")
    unknown = sorted(set(spec) - set(KINDS))
    if unknown:
        raise ValueError(f"init_spec: unknown op kind {', '.join(map(str, unknown))}; kinds: {', '.join(KINDS)}")
    return {kind: check_row_spec(value, f"init_spec.{kind}", kind == "norm") for kind, value in spec.items()}


def check_row_spec(spec: Any, where: str = "init_spec", flat_weight: bool = False) -> Dict[str, list]:
    """``{weight: scheme, bias: scheme}``, each scheme checked (name known, arguments accepted).

    Each scheme is tried on a tensor of its parameter's rank, so a bad one
    (an unknown name, xavier on a bias, whose fans are undefined) fails here,
    once, with the model's name, rather than halfway through a build.
    """
    if not isinstance(spec, Mapping) or not set(spec) <= set(PARAMS):
        raise ValueError(f"{where} must be {{weight: scheme, bias: scheme}}, got {spec!r}")
    for param, scheme in spec.items():
        flat = param == "bias" or flat_weight
        # On the CPU even inside `with torch.device("meta")`: meta init goes through torch's
        # reference kernels, whose first use imports the compiler stack (over a second).
        probe = torch.empty(4, device="cpu") if flat else torch.empty(4, 4, 3, 3, device="cpu")
        _apply(scheme, probe, f"{where}.{param}")
    return dict(spec)


def _apply(scheme: Any, tensor: torch.Tensor, where: str) -> None:
    parts = list(scheme) if isinstance(scheme, (list, tuple)) else [scheme]
    if not parts or parts[0] not in SCHEMES or len(parts) > 2:
        raise ValueError(f"{where}: unknown scheme {scheme!r}; schemes: {', '.join(SCHEMES)}")
    args = parts[1] if len(parts) == 2 else None
    try:
        with torch.no_grad():
            if isinstance(args, Mapping):
                SCHEMES[parts[0]](tensor, **args)
            else:
                SCHEMES[parts[0]](tensor, *([] if args is None else [float(args)]))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: bad arguments for {parts[0]}: {str(err).splitlines()[0]}") from err


def initialise(module: nn.Module, model_spec: Mapping[str, Mapping], row_spec: Mapping, keep_bias: bool) -> None:
    """Apply the schemes to every layer inside ``module``; ``row_spec`` wins over the model's kind.

    ``keep_bias``: the row sets its bias itself (``bias_init``), which neither spec overrides.
    """
    for layer in module.modules():
        kind = next((k for k, types in KINDS.items() if isinstance(layer, types)), None)
        if kind is None:
            continue
        spec = {**model_spec.get(kind, {}), **row_spec}
        for param in PARAMS:
            tensor = getattr(layer, param, None)
            if tensor is None or tensor.is_meta:  # a meta model (summary, counting) has no values to draw
                continue
            if param in spec and isinstance(tensor, torch.Tensor) and not (param == "bias" and keep_bias):
                _apply(spec[param], tensor, f"init_spec.{kind}.{param}")
