"""`cnnbench summary`: per-layer output shape, parameters, MACs and receptive field.

MACs (multiply-accumulates) of convolutions and linear layers come from
``torch.utils.flop_counter`` (which counts FLOPs = 2 x MACs for them);
that is what torchvision's model tables call "GFLOPS". Everything else
(pooling, LRN, normalisation, activations, additions) is counted
separately, analytically, as "other ops": one per output element per
kernel tap for pooling, and one per output element for the rest.

The receptive field of a layer is the side of the input square one of its
output elements can see, followed along the graph's wiring (for merges, the
largest of the inputs); "all" once a layer sees the whole input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cnnbench.models.builder import Graph
from cnnbench.models.layers import Add, HighwayGate, Multiply, PadChannels, WithinChannelLRN

POOL_TYPES = (nn.MaxPool2d, nn.AvgPool2d)
# Ops whose arithmetic flop_counter does not see: one op per output element.
ELEMENTWISE_TYPES = (
    nn.ReLU, nn.Tanh, nn.Sigmoid, nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LocalResponseNorm,
    nn.AdaptiveAvgPool2d, Add, Multiply, HighwayGate, PadChannels, WithinChannelLRN,
)


@dataclass
class LayerRow:
    name: str
    op: str
    output: Tuple[int, ...]
    params: int
    macs: int
    other_ops: int
    receptive_field: Optional[int]  # the field's larger side; None: the whole input


@dataclass
class Field:
    """Receptive field (height, width), and the input-pixel distance between adjacent
    outputs along each axis; ``size`` None once the field covers the whole input."""

    size: Optional[Tuple[int, int]]
    jump: Tuple[int, int]


def summarize(model: Graph, input_shape: Tuple[int, ...]) -> List[LayerRow]:
    """One row per leaf layer, in execution order."""
    leaves: Dict[nn.Module, Tuple[str, str]] = {}
    collect_leaves(model, "", "", leaves)
    shapes: Dict[nn.Module, Tuple[int, ...]] = {}
    hooks = [m.register_forward_hook(lambda mod, _inp, out: shapes.__setitem__(mod, tuple(out.shape[1:])))
             for m in leaves]
    counter = FlopCounterMode(display=False, depth=None)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), counter:
            device = next(model.parameters(), torch.zeros(())).device
            model(torch.zeros(1, *input_shape, device=device))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    flops = counter.get_flop_counts()
    fields: Dict[nn.Module, Field] = {}
    receptive_fields(model, Field((1, 1), (1, 1)), input_shape, fields)
    rows = []
    root = type(model).__name__
    for module, (fqn, label) in leaves.items():
        output = shapes.get(module, ())
        module_flops = sum(flops.get(f"{root}.{fqn}", {}).values())
        field = fields.get(module, Field(None, (0, 0)))
        rows.append(LayerRow(
            name=label, op=type(module).__name__, output=output,
            params=sum(p.numel() for p in module.parameters()),
            macs=int(module_flops // 2), other_ops=other_ops(module, output),
            receptive_field=None if field.size is None else max(field.size),
        ))
    return rows


def collect_leaves(graph: Graph, fqn: str, label: str, leaves: Dict[nn.Module, Tuple[str, str]]) -> None:
    """Every layer that is not itself a graph, with its module path and its
    display label (the rows' `as` names, or their indices, joined by '/')."""
    for index, (layer, name) in enumerate(zip(graph.layers, graph.names)):
        child_fqn = f"{fqn}.layers.{index}" if fqn else f"layers.{index}"
        child_label = f"{label}/{name}" if label else name
        if isinstance(layer, Graph):
            collect_leaves(layer, child_fqn, child_label, leaves)
        else:
            leaves[layer] = (child_fqn, child_label)


def other_ops(module: nn.Module, output: Tuple[int, ...]) -> int:
    elements = math.prod(output) if output else 0
    if isinstance(module, POOL_TYPES):
        kernel = module.kernel_size if isinstance(module.kernel_size, tuple) else (module.kernel_size,) * 2
        return elements * kernel[0] * kernel[1]
    if isinstance(module, ELEMENTWISE_TYPES):
        return elements
    return 0


def receptive_fields(graph: Graph, start: Field, input_shape: Tuple[int, ...], out: Dict[nn.Module, Field]) -> Field:
    """Follow the wiring: each row's field from the fields of the rows it reads."""
    values = {"input": start}
    field = start
    extent = tuple(input_shape[1:]) if len(input_shape) == 3 else None
    for layer, name, sources in zip(graph.layers, graph.names, graph.sources):
        inputs = [values[s] for s in sources]
        widest = max(inputs, key=lambda f: math.inf if f.size is None else f.size[0] * f.size[1])
        if isinstance(layer, Graph):
            field = receptive_fields(layer, widest, input_shape, out)
        else:
            field = layer_field(layer, widest, extent)
            out[layer] = field
        values[name] = field
    return field


def pair(value) -> Tuple[int, int]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def layer_field(layer: nn.Module, field: Field, extent: Optional[Tuple[int, int]]) -> Field:
    if field.size is None:
        return field
    if isinstance(layer, nn.Sequential):  # a composite op (sepconv): its parts in order
        for part in layer:
            field = layer_field(part, field, extent)
        return field
    if isinstance(layer, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
        kernel, stride = pair(layer.kernel_size), pair(layer.stride)
        dilation = pair(getattr(layer, "dilation", 1))
        size = tuple(field.size[i] + dilation[i] * (kernel[i] - 1) * field.jump[i] for i in range(2))
        jump = (field.jump[0] * stride[0], field.jump[1] * stride[1])
        if extent is not None and size[0] >= extent[0] and size[1] >= extent[1]:
            return Field(None, jump)
        return Field(size, jump)
    if isinstance(layer, (nn.AdaptiveAvgPool2d, nn.Flatten, nn.Linear)):
        return Field(None, field.jump)
    return field


def format_table(model_name: str, input_shape, rows: List[LayerRow]) -> str:
    header = ("layer", "op", "output", "params", "MACs", "other ops", "RF")
    body = [
        (r.name, r.op, "x".join(map(str, r.output)), f"{r.params:,}", f"{r.macs:,}", f"{r.other_ops:,}",
         "all" if r.receptive_field is None else str(r.receptive_field))
        for r in rows
    ]
    widths = [max(len(str(line[i])) for line in [header, *body]) for i in range(len(header))]
    align = ["<", "<", ">", ">", ">", ">", ">"]
    fmt = "  ".join(f"{{:{a}{w}}}" for a, w in zip(align, widths))
    lines = [f"{model_name}, input {'x'.join(map(str, input_shape))}", fmt.format(*header), fmt.format(*["-" * w for w in widths])]
    lines += [fmt.format(*line) for line in body]
    params, macs, other = (sum(getattr(r, k) for r in rows) for k in ("params", "macs", "other_ops"))
    lines.append("")
    lines.append(f"params {params:,} ({scaled(params)})   MACs {macs:,} ({scaled(macs)}; "
                 f"FLOPs = 2 x MACs = {scaled(2 * macs)})   other ops {other:,}")
    return "\n".join(lines)


def scaled(count: int) -> str:
    for factor, unit in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if count >= factor:
            return f"{count / factor:.2f} {unit}"
    return str(count)
