"""Model YAML -> nn.Module, with every shape inferred by a dry run.

A model file lists ``layers``; each row is one of

    relu                                 # an op (or block) with no arguments
    [conv, {out: 64, kernel: 3}]         # an op (or block) and its arguments

Two argument names are the wiring, not the op's: ``as: NAME`` names the
row's output, and ``from: NAME`` (or a list of names, for ``concat``/``add``)
says what the row reads. Without ``from`` a row reads the row above it; the
first row reads ``input``. ``blocks`` define reusable sub-networks with
their own argument names, used like ops; inside a block, ``input`` is the
block's input and a string equal to one of the block's argument names is
replaced by that argument's value.

Each row is built, then run once on a zero tensor of the inferred shape to
learn its output shape, so no file ever writes in-channels or in-features.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from cnnbench.errors import UserError
from cnnbench.models import layers as _builtin_ops  # noqa: F401 - registers the built-in ops
from cnnbench.models.registry import OPS, BuildOptions, OpContext, Shape

WIRING_KEYS = ("as", "from")
INPUT = "input"


class ModelBuildError(UserError):
    pass


class Graph(nn.Module):
    """Runs its layers in order, each reading the named outputs it was wired to."""

    def __init__(self, layers: List[nn.Module], names: List[str], sources: List[Tuple[str, ...]], multi: List[bool]):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.names = names
        self.sources = sources
        self.multi = multi
        # Drop each intermediate as soon as nothing later reads it.
        last_use = {}
        for index, source in enumerate(sources):
            for name in source:
                last_use[name] = index
        self.release = [[n for n, i in last_use.items() if i == index] for index in range(len(layers))]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values = {INPUT: x}
        out = x
        for layer, name, source, multi, release in zip(self.layers, self.names, self.sources, self.multi, self.release):
            out = layer([values[s] for s in source] if multi else values[source[0]])
            for done in release:
                del values[done]
            values[name] = out
        return out


class Network(Graph):
    """A whole model: a Graph that also knows its name and shapes."""

    model_name: str
    input_shape: Shape
    output_shape: Shape


@dataclass
class Row:
    op: str
    args: Dict[str, Any]
    name: Optional[str]
    sources: Optional[Tuple[str, ...]]


def build_model(
    spec: Mapping[str, Any],
    input_shape: Sequence[int],
    options: BuildOptions = BuildOptions(),
    source: str = "model",
) -> Network:
    """Build the network a model config describes, for inputs of ``input_shape`` (C, H, W).

    ``spec`` is the resolved model config (``name``, ``layers``, optional
    ``blocks``); ``source`` names it in error messages (e.g. its file).
    """
    blocks = dict(spec.get("blocks") or {})
    for block_name in blocks:
        if block_name in OPS:
            raise ModelBuildError(f"{source}: block '{block_name}' has the name of a built-in op; rename the block")
    builder = _Builder(blocks, options, source)
    shape = tuple(int(s) for s in input_shape)
    network, out_shape = builder.build_graph(spec.get("layers") or [], shape, path="layers", graph_type=Network)
    network.model_name = str(spec.get("name", "model"))
    network.input_shape = shape
    network.output_shape = out_shape
    return network


class _Builder:
    def __init__(self, blocks: Dict[str, Any], options: BuildOptions, source: str):
        self.blocks = blocks
        self.options = options
        self.source = source

    def build_graph(self, rows: Sequence[Any], input_shape: Shape, path: str, graph_type=Graph) -> Tuple[Graph, Shape]:
        if not rows:
            raise ModelBuildError(f"{self.source}: {path} is empty; list at least one layer")
        shapes: Dict[str, Shape] = {INPUT: input_shape}
        previous = INPUT
        modules, names, sources, multi = [], [], [], []
        for index, raw in enumerate(rows):
            where = f"{path}[{index}]"
            row = self.parse_row(raw, where)
            label = f"{self.source}, {where} ({row.op}{' ' + repr(row.name) if row.name else ''})"
            row_sources = row.sources or (previous,)
            for s in row_sources:
                if s not in shapes:
                    known = ", ".join(shapes)
                    raise ModelBuildError(f"{label}: reads '{s}', which no earlier row names; known: {known}")
            in_shapes = tuple(shapes[s] for s in row_sources)
            is_multi = row.op in OPS and OPS[row.op].multi_input
            if len(in_shapes) > 1 and not is_multi:
                raise ModelBuildError(f"{label}: reads {len(in_shapes)} tensors, but {row.op} takes one")
            module, out_shape = self.build_row(row, in_shapes, where, label)
            name = row.name or str(index)
            if name in shapes and name != str(index):
                raise ModelBuildError(f"{label}: the name '{name}' is already used by an earlier row")
            shapes[name] = out_shape
            modules.append(module)
            names.append(name)
            sources.append(row_sources)
            multi.append(is_multi)
            previous = name
        return graph_type(modules, names, sources, multi), shapes[previous]

    def parse_row(self, raw: Any, where: str) -> Row:
        if isinstance(raw, str):
            op, args = raw, {}
        elif isinstance(raw, (list, tuple)) and 1 <= len(raw) <= 2 and isinstance(raw[0], str):
            op, args = raw[0], dict(raw[1]) if len(raw) == 2 and raw[1] is not None else {}
            if len(raw) == 2 and not isinstance(raw[1], Mapping) and raw[1] is not None:
                raise ModelBuildError(f"{self.source}, {where}: arguments must be a mapping, got {raw[1]!r}")
        else:
            raise ModelBuildError(
                f"{self.source}, {where}: a layer is `op` or `[op, {{arg: value}}]`, got {raw!r}"
            )
        if op not in OPS and op not in self.blocks:
            raise ModelBuildError(
                f"{self.source}, {where}: unknown op '{op}'; ops: {', '.join(sorted(OPS))}"
                + (f"; blocks: {', '.join(sorted(self.blocks))}" if self.blocks else "")
            )
        name = args.pop("as", None)
        sources = args.pop("from", None)
        if sources is not None:
            sources = (sources,) if isinstance(sources, str) else tuple(str(s) for s in sources)
        return Row(op, args, None if name is None else str(name), sources)

    def build_row(self, row: Row, in_shapes: Tuple[Shape, ...], where: str, label: str) -> Tuple[nn.Module, Shape]:
        shapes_text = " and ".join(str(s) for s in in_shapes)
        if row.op in self.blocks:
            return self.build_block(row, in_shapes, where, label)
        op = OPS[row.op]
        unknown = sorted(set(row.args) - set(op.arguments))
        if unknown:
            raise ModelBuildError(
                f"{label}: unknown argument {', '.join(unknown)}; {row.op} takes: {', '.join(op.arguments) or 'nothing'}"
            )
        missing = [name for name in op.required() if name not in row.args]
        if missing:
            raise ModelBuildError(f"{label}: missing argument {', '.join(missing)}")
        try:
            module = op.factory(OpContext(in_shapes, self.options), **row.args)
            out_shape = dry_run(module, in_shapes, op.multi_input)
        except (ValueError, TypeError, RuntimeError) as err:
            message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ModelBuildError(f"{label}: {message} (input shape {shapes_text})") from err
        return module, out_shape

    def build_block(self, row: Row, in_shapes: Tuple[Shape, ...], where: str, label: str) -> Tuple[nn.Module, Shape]:
        block = self.blocks[row.op] or {}
        declared = [str(a) for a in block.get("args") or []]
        unknown = sorted(set(row.args) - set(declared))
        missing = [a for a in declared if a not in row.args]
        if unknown or missing:
            problem = f"unknown argument {', '.join(unknown)}" if unknown else f"missing argument {', '.join(missing)}"
            raise ModelBuildError(f"{label}: {problem}; block {row.op} takes: {', '.join(declared) or 'nothing'}")
        if len(in_shapes) != 1:
            raise ModelBuildError(f"{label}: a block reads one tensor, got {len(in_shapes)}")
        layers = substitute(block.get("layers") or [], row.args)
        return self.build_graph(layers, in_shapes[0], path=f"{where} > {row.op}.layers")


def substitute(value: Any, bindings: Mapping[str, Any]) -> Any:
    """Replace every string equal to a block argument's name by its value."""
    if isinstance(value, str):
        return bindings.get(value, value)
    if isinstance(value, Mapping):
        return {k: (v if k in WIRING_KEYS else substitute(v, bindings)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [substitute(v, bindings) for v in value]
    return value


def dry_run(module: nn.Module, in_shapes: Tuple[Shape, ...], multi_input: bool) -> Shape:
    inputs = [torch.zeros(1, *shape) for shape in in_shapes]
    was_training = module.training
    module.eval()  # batch statistics of one sample are undefined for batchnorm
    try:
        with torch.no_grad():
            out = module(inputs if multi_input else inputs[0])
    finally:
        module.train(was_training)
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"the layer returned {type(out).__name__}, not a tensor")
    if out.numel() == 0 or 0 in out.shape:
        raise ValueError(f"the output is empty ({tuple(out.shape[1:])}); the input is too small for this layer")
    return tuple(out.shape[1:])


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


