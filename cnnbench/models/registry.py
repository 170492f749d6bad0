"""The op registry: every name a model YAML may use as a layer.

Adding an op is one decorated function in Python::

    @register_op("swish")
    def swish(ctx: OpContext) -> nn.Module:
        return nn.SiLU()

The function receives an :class:`OpContext` (the inferred input shape(s) and
the run's switches: regularization.dropout/lrn, model.norm, model.lrn_convention) followed by the
layer's YAML arguments as keyword arguments, and returns an ``nn.Module``.
Input shapes are inferred by the builder, so ops never take in-channels or
in-features. An op registered with ``multi_input=True`` reads the tensors a
row names in ``from: [a, b, ...]`` and its module gets them as a list. Raise
``ValueError`` for a bad argument or input shape: the builder adds the model
file, the row and the input shapes to the message.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Tuple

from torch import nn

Shape = Tuple[int, ...]  # one sample's shape, without the batch dimension


NORM_KINDS = ("bn", "gn", "none")
# How an `lrn` row's alpha is read: per term of the sum (AlexNet's printed
# formula) or divided by the window size (cuda-convnet, Caffe, torch).
LRN_CONVENTIONS = ("paper", "cuda_convnet")
# Where initial weights come from: the file's `init:` schemes, or torch's defaults.
INIT_SOURCES = ("paper", "torch")


@dataclass(frozen=True)
class BuildOptions:
    """Switches that reach every layer: the regularization group's, and the model's norm slot."""

    dropout: Optional[float] = None  # None keeps each layer's own rate
    lrn: bool = True
    norm: str = "bn"  # what a `norm` row becomes: bn | gn | none (model.norm)
    norm_groups: int = 32  # groups of a gn `norm` row (model.norm_groups)
    lrn_convention: Optional[str] = None  # overrides every lrn row's convention (model.lrn_convention)
    init: str = "paper"  # paper: apply the file's `init:` schemes; torch: keep torch's defaults (model.init)


@dataclass(frozen=True)
class OpContext:
    in_shapes: Tuple[Shape, ...]
    options: BuildOptions = field(default_factory=BuildOptions)

    @property
    def in_shape(self) -> Shape:
        return self.in_shapes[0]


@dataclass(frozen=True)
class Op:
    name: str
    factory: Callable[..., nn.Module]
    multi_input: bool  # takes a list of tensors (concat, add, ...)

    @property
    def arguments(self) -> Dict[str, inspect.Parameter]:
        params = list(inspect.signature(self.factory).parameters.values())[1:]
        return {p.name: p for p in params}

    def required(self) -> list[str]:
        return [n for n, p in self.arguments.items() if p.default is inspect.Parameter.empty]


OPS: Dict[str, Op] = {}


def register_op(name: str, *, multi_input: bool = False):
    def decorate(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in OPS:
            raise ValueError(f"op '{name}' is registered twice")
        OPS[name] = Op(name, factory, multi_input)
        return factory

    return decorate
