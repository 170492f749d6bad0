"""Model YAML -> nn.Module, with every shape inferred by a dry run.

A model file lists ``layers``; each row is one of

    relu                                 # an op (or block) with no arguments
    [conv, {out: 64, kernel: 3}]         # an op (or block) and its arguments

Two argument names are the wiring, not the op's: ``as: NAME`` names the
row's output, and ``from: NAME`` (or a list of names, for ops that merge
tensors: ``concat``, ``add``, ``multiply``, ``highway_gate``,
``spatial_transform``) says what the row reads. Without ``from`` a row reads
the row above it; the first row reads ``input``; a row without ``as`` is
named by its index. ``blocks`` define reusable sub-networks with their own
argument names, used like ops; inside a block, ``input`` is the block's
input and a string equal to one of the block's argument names is replaced
by that argument's value.

An auxiliary classifier (GoogLeNet, Szegedy et al. 2015, section 5) is a
top-level row

    [aux_head, {from: NAME, weight: 0.3, layers: [...rows...]}]

a side exit: its rows read NAME, its output must have the model's output
shape, and the row after it goes on from the row above it. In training
mode such a model returns ``ModelOutput(logits, aux=[(logits, weight)])``
and the loss adds weight x cross-entropy per head; in eval mode the heads
are skipped and the model returns its logits.

A model's ``norm: bn|gn|none`` (and ``norm_groups``) says what its ``norm``
rows are.

Two model keys switch one generic thing a paper ablates, without a file
per arm: ``activation: relu|tanh`` builds every ``relu`` row as that
activation (null keeps each row's own; AlexNet's Figure 1 is ReLU against
tanh in one network), and ``aux_heads: false`` leaves out every
``aux_head`` row (GoogLeNet, section 5: the heads' effect is about 0.5%).
Both are recorded in ``ops_used`` as the rows were written (``relu``,
``aux_head``), so a knob that finds no such row can be refused.

A model's ``init_spec: {conv: {weight: [normal, 0.01], bias: [constant, 0]}, ...}``
gives its paper's starting weights per op kind, and a row's ``init_spec:
{weight: ..., bias: ...}`` overrides it for that row (cnnbench/models/init.py);
``init: torch`` (model.init=torch) ignores both and keeps torch's defaults.
``lrn_convention: paper|cuda_convnet`` says how every ``lrn`` row reads alpha.

Caffe's per-layer learning-rate and weight-decay multipliers are two more
keys any row (a block too: they reach every layer inside) may carry:
``lr_mult`` and ``decay_mult``, each a number or a ``[weights, biases]``
pair, e.g. ``[conv, {out: 96, kernel: 11, lr_mult: [1, 2], decay_mult: [1, 0]}]``
as in Caffe's bvlc_alexnet. They are kept on the module as
``param_mults`` for the optimizer.

``repeat: N`` (any op or block row but an aux_head) builds the row N times
in sequence, each copy reading the one before; the copies are N separate
rows of the graph, numbered: ``as: stage1`` names them stage1_1 ...
stage1_N, and a name that already ends in ``_K`` is the first copy's, the
others counting on (``as: conv2_2`` with ``repeat: 2`` names conv2_2 and
conv2_3), so a stage whose first block differs is one row for that block
and one repeated row. A row without ``as`` numbers its index the same way.

A block's ``args`` are names, or ``{name: default}`` for an optional one.
A model's ``uses: [resnet, ...]`` adds the blocks of the libraries
``conf/blocks/resnet.yaml``, ...; a block name defined twice (in the file
and a library, or in two libraries) is an error, never a silent choice.

Each row is built, then run once on a zero tensor of the inferred shape to
learn its output shape, so no file ever writes in-channels or in-features.
"""

from __future__ import annotations

import re
import typing
import warnings
from dataclasses import dataclass, field, replace
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from torch import nn

from cnnbench.config import CONF_DIR
from cnnbench.errors import UserError, yaml_syntax_message
from cnnbench.models import init as init_schemes
from cnnbench.models import layers as _builtin_ops  # noqa: F401 - registers the built-in ops
from cnnbench.models.outputs import ModelOutput
from cnnbench.models.registry import INIT_SOURCES, LRN_CONVENTIONS, NORM_KINDS, OPS, BuildOptions, OpContext, Shape

WIRING_KEYS = ("as", "from")
MULT_KEYS = ("lr_mult", "decay_mult")
INPUT = "input"
AUX_HEAD = "aux_head"  # a builder row, not an op: it adds an output instead of a layer
# model.activation: the ops a `relu` row may be built as instead (null keeps relu rows as written).
ACTIVATIONS = ("relu", "tanh")
BLOCK_LIBRARY_DIR = CONF_DIR / "blocks"
BLOCK_KEYS = ("args", "layers")
REQUIRED = object()  # the default of a block argument that has none
NUMBERED_NAME = re.compile(r"(.*_)([1-9][0-9]*)")  # conv2_2: its copies count on from 2
# Op arguments that are sizes or counts: 0 is never meaningful (torch would warn, then fail).
POSITIVE_ARGS = ("out", "kernel", "stride", "dilation", "groups", "size", "parts", "multiplier", "samples")


class ModelBuildError(UserError):
    pass


class Graph(nn.Module):
    """Runs its layers in order, each reading the named outputs it was wired to.

    ``aux_weights[i]`` is None for an ordinary layer and the loss weight for
    an auxiliary head, which runs in training mode only and is returned
    beside the logits instead of feeding later layers.
    """

    def __init__(
        self,
        layers: List[nn.Module],
        names: List[str],
        sources: List[Tuple[str, ...]],
        multi: List[bool],
        aux_weights: Optional[List[Optional[float]]] = None,
    ):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.names = names
        self.sources = sources
        self.multi = multi
        self.aux_weights = aux_weights or [None] * len(layers)
        # Drop each intermediate as soon as nothing later reads it.
        last_use = {}
        for index, source in enumerate(sources):
            for name in source:
                last_use[name] = index
        self.release = [[n for n, i in last_use.items() if i == index] for index in range(len(layers))]

    def forward(self, x: torch.Tensor) -> Union[torch.Tensor, ModelOutput]:
        values = {INPUT: x}
        out = x
        aux = []
        rows = zip(self.layers, self.names, self.sources, self.multi, self.aux_weights, self.release)
        for layer, name, source, multi, aux_weight, release in rows:
            if aux_weight is None:
                out = layer([values[s] for s in source] if multi else values[source[0]])
            elif self.training:
                aux.append((layer(values[source[0]]), aux_weight))
            for done in release:
                del values[done]
            if aux_weight is None:
                values[name] = out
        return ModelOutput(out, aux) if aux else out


class Network(Graph):
    """A whole model: a Graph that also knows its name and shapes."""

    model_name: str
    input_shape: Shape
    output_shape: Shape
    # The ops its rows used (block rows expanded), e.g. {"conv", "lrn", ...}: whether a run's
    # regularization.lrn/dropout or model.norm can change it (cnnbench/engine/knobs.py).
    ops_used: frozenset


@dataclass
class Row:
    op: str
    args: Dict[str, Any]
    name: Optional[str]
    sources: Optional[Tuple[str, ...]]
    mults: Dict[str, Tuple[float, float]] = field(default_factory=dict)  # lr_mult / decay_mult: (weights, biases)
    repeat: Optional[int] = None  # `repeat: N`; None when the row has no repeat key
    init: Optional[Dict[str, Any]] = None  # the row's `init_spec`: {weight: scheme, bias: scheme}


@dataclass
class GraphParts:
    """What build_graph has built so far: the layers, their names and wiring, and every named output's shape."""

    shapes: Dict[str, Shape]
    previous: str = INPUT  # the row a row without `from` reads
    modules: List[nn.Module] = field(default_factory=list)
    names: List[str] = field(default_factory=list)
    sources: List[Tuple[str, ...]] = field(default_factory=list)
    multi: List[bool] = field(default_factory=list)
    aux_weights: List[Optional[float]] = field(default_factory=list)
    aux_shapes: List[Tuple[str, Shape]] = field(default_factory=list)  # (label, output shape) of each aux head

    def add(self, module: nn.Module, name: str, sources: Tuple[str, ...], multi: bool,
            aux_weight: Optional[float] = None) -> None:
        self.modules.append(module)
        self.names.append(name)
        self.sources.append(sources)
        self.multi.append(multi)
        self.aux_weights.append(aux_weight)


def build_model(
    spec: Mapping[str, Any],
    input_shape: Sequence[int],
    options: BuildOptions = BuildOptions(),
    source: str = "model",
) -> Network:
    """Build the network a model config describes, for inputs of ``input_shape`` (C, H, W).

    ``spec`` is the resolved model config (``name``, ``layers``, optional
    ``blocks`` and ``uses``); ``source`` names it in error messages (e.g. its file).
    """
    blocks = model_blocks(spec, source)
    options = init_options(spec, norm_options(spec, options, source), source)
    builder = _Builder(blocks, options, source)
    builder.activation, builder.aux_heads = switch_options(spec, source)
    if options.init == "paper":
        builder.init_spec = model_init_spec(spec, source)
    shape = tuple(int(s) for s in input_shape)
    network, out_shape = builder.build_graph(spec.get("layers") or [], shape, path="layers", top_level=True)
    network.model_name = str(spec.get("name", "model"))
    network.input_shape = shape
    network.output_shape = out_shape
    network.ops_used = frozenset(builder.ops_used)
    return network


def model_blocks(spec: Mapping[str, Any], source: str) -> Dict[str, Any]:
    """The blocks a model's rows may use: its own ``blocks:`` and those of the libraries in ``uses:``."""
    blocks = dict(spec.get("blocks") or {})
    origin = {name: "the model's own blocks" for name in blocks}
    uses = spec.get("uses") or []
    if not isinstance(uses, (list, tuple)) or not all(isinstance(u, str) for u in uses):
        raise ModelBuildError(
            f"{source}: uses must be a list of block library names, e.g. uses: [resnet], got {uses!r}"
        )
    twice = sorted({library for library in uses if uses.count(library) > 1})
    if twice:
        raise ModelBuildError(f"{source}: uses lists {', '.join(twice)} more than once")
    for library in uses:
        for name, block in load_block_library(library, source).items():
            if name in origin:
                raise ModelBuildError(
                    f"{source}: block '{name}' is defined in {origin[name]} and in library '{library}' "
                    f"(conf/blocks/{library}.yaml); rename one"
                )
            origin[name] = f"library '{library}'"
            blocks[name] = block
    for block_name in blocks:
        if block_name in OPS or block_name == AUX_HEAD:
            raise ModelBuildError(
                f"{source}: block '{block_name}' ({origin[block_name]}) has the name of a built-in op; rename the block"
            )
    return blocks


def block_libraries() -> List[str]:
    """The names ``uses:`` accepts: the files in conf/blocks/."""
    return sorted(path.stem for path in BLOCK_LIBRARY_DIR.glob("*.yaml"))


def load_block_library(library: str, source: str) -> Dict[str, Any]:
    """The ``blocks:`` of conf/blocks/<library>.yaml."""
    available = block_libraries()
    if library not in available:
        raise ModelBuildError(
            f"{source}: uses: unknown block library '{library}'; available: {', '.join(available) or 'none'} "
            f"(the files in {BLOCK_LIBRARY_DIR})"
        )
    where = f"conf/blocks/{library}.yaml"
    try:
        # Resolved on its own: a library is shared by every model, so it cannot
        # read one run's config (${data.num_classes}); such values are block arguments.
        content = OmegaConf.to_container(OmegaConf.load(BLOCK_LIBRARY_DIR / f"{library}.yaml"), resolve=True)
    except yaml.YAMLError as err:
        raise ModelBuildError(yaml_syntax_message(err) or f"{where}: {err}") from err
    except OmegaConfBaseException as err:
        message = str(err).strip().splitlines()[0]
        raise ModelBuildError(f"{where}: {message}; pass such values as block arguments") from err
    if not isinstance(content, dict) or set(content) != {"blocks"} or not isinstance(content["blocks"], dict):
        raise ModelBuildError(
            f"{where}: a block library holds one key, `blocks:`, mapping block names to args and layers"
        )
    return content["blocks"]


def norm_options(spec: Mapping[str, Any], options: BuildOptions, source: str) -> BuildOptions:
    """The model's ``norm``/``norm_groups`` keys, checked, in the options every op sees."""
    kind = spec.get("norm")
    groups = spec.get("norm_groups")
    if kind is not None and kind not in NORM_KINDS:
        raise ModelBuildError(f"{source}: model.norm={kind!r} is unknown; choose one of: {', '.join(NORM_KINDS)}")
    if groups is not None and (not isinstance(groups, int) or groups < 1):
        raise ModelBuildError(f"{source}: model.norm_groups must be a positive integer, got {groups!r}")
    return replace(options, norm=kind or options.norm, norm_groups=groups or options.norm_groups)


def init_options(spec: Mapping[str, Any], options: BuildOptions, source: str) -> BuildOptions:
    """The model's ``lrn_convention`` and ``init`` keys, checked, in the options every op sees."""
    convention = spec.get("lrn_convention")
    if convention is not None and convention not in LRN_CONVENTIONS:
        raise ModelBuildError(
            f"{source}: model.lrn_convention={convention!r} is unknown; choose one of: {', '.join(LRN_CONVENTIONS)}"
        )
    init = spec.get("init") or options.init
    if init not in INIT_SOURCES:
        raise ModelBuildError(f"{source}: model.init={init!r} is unknown; choose one of: {', '.join(INIT_SOURCES)}")
    return replace(options, lrn_convention=convention or options.lrn_convention, init=init)


def switch_options(spec: Mapping[str, Any], source: str) -> Tuple[Optional[str], bool]:
    """The model's ``activation`` (what a relu row becomes; None: relu) and ``aux_heads`` keys, checked."""
    activation = spec.get("activation")
    if activation is not None and activation not in ACTIVATIONS:
        raise ModelBuildError(
            f"{source}: model.activation={activation!r} is unknown; choose one of: {', '.join(ACTIVATIONS)} (or null)"
        )
    aux_heads = spec.get("aux_heads", True)
    if not isinstance(aux_heads, bool):
        raise ModelBuildError(f"{source}: model.aux_heads must be true or false, got {aux_heads!r}")
    return activation, aux_heads


def model_init_spec(spec: Mapping[str, Any], source: str) -> Dict[str, Dict[str, Any]]:
    try:
        return init_schemes.check_model_spec(spec.get("init_spec") or {})
    except ValueError as err:
        raise ModelBuildError(f"{source}: {err}") from err


class _Builder:
    def __init__(self, blocks: Dict[str, Any], options: BuildOptions, source: str):
        self.blocks = blocks
        self.options = options
        self.source = source
        # The model's `init_spec` per op kind; stays empty with model.init=torch.
        self.init_spec: Dict[str, Dict[str, Any]] = {}
        self.expanding: List[str] = []  # the blocks being built, outermost first (a block may not use itself)
        self.ops_used: set = set()
        self.activation: Optional[str] = None  # model.activation: what a relu row is built as
        self.aux_heads = True  # model.aux_heads: false leaves the aux_head rows out

    def build_graph(
        self, rows: Sequence[Any], input_shape: Shape, path: str, top_level: bool = False
    ) -> Tuple[Graph, Shape]:
        if not rows:
            raise ModelBuildError(f"{self.source}: {path} is empty; list at least one layer")
        if not isinstance(rows, (list, tuple)):
            raise ModelBuildError(f"{self.source}: {path} must be a list of layers, got {rows!r}")
        parts = GraphParts({INPUT: input_shape})
        for index, raw in enumerate(rows):
            where = f"{path}[{index}]"
            row = self.parse_row(raw, where)
            if row.op == AUX_HEAD:
                self.ops_used.add(AUX_HEAD)
                if self.aux_heads or not top_level:  # one inside a block is an error either way
                    self.add_aux_head(parts, row, index, where, top_level)
                continue
            for copy, copy_where in copies(row, index, where):
                self.add_layer(parts, copy, index, copy_where)
        output_shape = parts.shapes[parts.previous]
        for label, aux_shape in parts.aux_shapes:
            if aux_shape != output_shape:
                raise ModelBuildError(
                    f"{label}: the head's output {aux_shape} differs from the model's output {output_shape}; "
                    "end the head with the same classifier size"
                )
        graph_type = Network if top_level else Graph
        graph = graph_type(parts.modules, parts.names, parts.sources, parts.multi, parts.aux_weights)
        return graph, output_shape

    def label(self, row: Row, where: str) -> str:
        return f"{self.source}, {where} ({row.op}{' ' + repr(row.name) if row.name else ''})"

    def read(self, parts: GraphParts, row: Row, label: str) -> Tuple[Tuple[str, ...], Tuple[Shape, ...]]:
        """The names a row reads (``from``, else the row above) and their shapes."""
        row_sources = row.sources or (parts.previous,)
        for s in row_sources:
            if s not in parts.shapes:
                known = ", ".join(parts.shapes)
                raise ModelBuildError(f"{label}: reads '{s}', which no earlier row names; known: {known}")
        return row_sources, tuple(parts.shapes[s] for s in row_sources)

    def add_layer(self, parts: GraphParts, row: Row, index: int, where: str) -> None:
        label = self.label(row, where)
        row_sources, in_shapes = self.read(parts, row, label)
        is_multi = row.op in OPS and OPS[row.op].multi_input
        if len(in_shapes) > 1 and not is_multi:
            raise ModelBuildError(f"{label}: reads {len(in_shapes)} tensors, but {row.op} takes one")
        module, out_shape = self.build_row(row, in_shapes, where, label)
        if row.mults:
            module.param_mults = row.mults
        name = row.name or str(index)
        if name in parts.shapes and name != str(index):
            raise ModelBuildError(f"{label}: the name '{name}' is already used by an earlier row")
        parts.shapes[name] = out_shape
        parts.add(module, name, row_sources, is_multi)
        parts.previous = name

    def add_aux_head(self, parts: GraphParts, row: Row, index: int, where: str, top_level: bool) -> None:
        """A side exit: no name, and the next row reads the row above this one."""
        label = self.label(row, where)
        row_sources, in_shapes = self.read(parts, row, label)
        if not top_level:
            raise ModelBuildError(f"{label}: aux_head rows belong in the model's top-level layers, not in a block")
        module, out_shape, weight = self.build_aux_head(row, in_shapes, where, label)
        parts.aux_shapes.append((label, out_shape))
        parts.add(module, str(index), row_sources, False, weight)

    def build_aux_head(
        self, row: Row, in_shapes: Tuple[Shape, ...], where: str, label: str
    ) -> Tuple[Graph, Shape, float]:
        unknown = sorted(set(row.args) - {"weight", "layers"})
        missing = [a for a in ("weight", "layers") if a not in row.args]
        if unknown or missing:
            problem = f"unknown argument {', '.join(unknown)}" if unknown else f"missing argument {', '.join(missing)}"
            raise ModelBuildError(f"{label}: {problem}; aux_head takes: from, weight, layers")
        if row.name is not None:
            raise ModelBuildError(f"{label}: an aux_head's output goes to the loss, not to later rows; remove `as`")
        if len(in_shapes) != 1:
            raise ModelBuildError(f"{label}: an aux_head reads one tensor, got {len(in_shapes)}")
        weight = row.args["weight"]
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
            raise ModelBuildError(f"{label}: weight must be a number >= 0 (GoogLeNet uses 0.3), got {weight!r}")
        head, out_shape = self.build_graph(row.args["layers"], in_shapes[0], path=f"{where} > aux_head.layers")
        return head, out_shape, float(weight)

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
        if op not in OPS and op not in self.blocks and op != AUX_HEAD:
            raise ModelBuildError(
                f"{self.source}, {where}: unknown op '{op}'; ops: {', '.join(sorted(OPS))}, {AUX_HEAD}"
                + (f"; blocks: {', '.join(sorted(self.blocks))}" if self.blocks else "")
            )
        name = args.pop("as", None)
        sources = args.pop("from", None)
        if sources is not None:
            if isinstance(sources, (str, int)) and not isinstance(sources, bool):
                sources = (str(sources),)  # a row without `as` is named by its index
            elif isinstance(sources, (list, tuple)):
                sources = tuple(str(s) for s in sources)
            else:
                raise ModelBuildError(f"{self.source}, {where}: from must be a row name or a list of them, got {sources!r}")
        mults = {key: self.multiplier(args.pop(key), key, where) for key in MULT_KEYS if key in args}
        repeat = self.repeat_count(args.pop("repeat"), op, sources, where) if "repeat" in args else None
        init = self.row_init_spec(args.pop("init_spec"), op, where) if "init_spec" in args else None
        return Row(op, args, None if name is None else str(name), sources, mults, repeat, init)

    def row_init_spec(self, value: Any, op: str, where: str) -> Dict[str, Any]:
        try:
            return init_schemes.check_row_spec(value, "init_spec")
        except ValueError as err:
            raise ModelBuildError(f"{self.source}, {where} ({op}): {err}") from err

    def initialise(self, module: nn.Module, row: Row) -> None:
        """The paper's starting weights (model.init=paper): the model's kinds, the row's spec over them."""
        if self.options.init == "paper" and (self.init_spec or row.init):
            init_schemes.initialise(module, self.init_spec, row.init or {}, keep_bias="bias_init" in row.args)

    def repeat_count(self, value: Any, op: str, sources: Optional[Tuple[str, ...]], where: str) -> int:
        """A row's ``repeat``, checked: a whole number >= 1 on a row that can be chained to itself."""
        label = f"{self.source}, {where} ({op})"
        if op == AUX_HEAD:
            raise ModelBuildError(f"{label}: an aux_head cannot repeat; it is a side exit, so write one row per head")
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ModelBuildError(f"{label}: repeat must be a whole number >= 1, got {value!r}")
        if value > 1 and sources is not None and len(sources) > 1:
            raise ModelBuildError(
                f"{label}: repeat chains copies, each reading the one before, so a row that reads "
                f"{len(sources)} tensors (from: [{', '.join(sources)}]) cannot repeat"
            )
        return value

    def multiplier(self, value: Any, key: str, where: str) -> Tuple[float, float]:
        """A number, or [weights, biases], as a (weights, biases) pair."""
        pair = value if isinstance(value, (list, tuple)) else [value, value]
        if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 for v in pair):
            raise ModelBuildError(
                f"{self.source}, {where}: {key} must be a number >= 0 or [weights, biases], got {value!r}"
            )
        return float(pair[0]), float(pair[1])

    def build_row(self, row: Row, in_shapes: Tuple[Shape, ...], where: str, label: str) -> Tuple[nn.Module, Shape]:
        shapes_text = " and ".join(str(s) for s in in_shapes)
        if row.op in self.blocks:
            module, out_shape = self.build_block(row, in_shapes, where, label)
            if row.init:  # the block's layers were initialised row by row; its own spec goes over them
                self.initialise(module, row)
            return module, out_shape
        # model.activation swaps the op a relu row builds; ops_used keeps the row as written.
        op = OPS[self.activation if row.op == "relu" and self.activation else row.op]
        self.ops_used.add(row.op)
        unknown = sorted(set(row.args) - set(op.arguments))
        if unknown:
            raise ModelBuildError(
                f"{label}: unknown argument {', '.join(unknown)}; {row.op} takes: {', '.join(op.arguments) or 'nothing'}"
            )
        missing = [name for name in op.required() if name not in row.args]
        if missing:
            raise ModelBuildError(f"{label}: missing argument {', '.join(missing)}")
        check_argument_types(op.factory, row.args, label)
        # torch warns about some bad arguments before it fails on them: keep the
        # warnings of a row that fails, so its error is the one line printed.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                module = op.factory(OpContext(in_shapes, self.options), **row.args)
                self.initialise(module, row)
                out_shape = dry_run(module, in_shapes, op.multi_input)
            except (ValueError, TypeError, RuntimeError) as err:
                message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                raise ModelBuildError(f"{label}: {message} (input shape {shapes_text})") from err
        for warning in caught:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
        return module, out_shape

    def build_block(self, row: Row, in_shapes: Tuple[Shape, ...], where: str, label: str) -> Tuple[nn.Module, Shape]:
        block = self.blocks[row.op] or {}
        if not isinstance(block, Mapping):
            raise ModelBuildError(f"{label}: block {row.op} must be a mapping of args and layers, got {block!r}")
        strange = sorted(set(block) - set(BLOCK_KEYS))
        if strange:
            raise ModelBuildError(
                f"{label}: block {row.op} has {', '.join(strange)}; a block holds only: {', '.join(BLOCK_KEYS)}"
            )
        signature = self.block_signature(row.op, block, label)
        unknown = sorted(set(row.args) - set(signature))
        missing = [a for a, default in signature.items() if default is REQUIRED and a not in row.args]
        if unknown or missing:
            problem = f"unknown argument {', '.join(unknown)}" if unknown else f"missing argument {', '.join(missing)}"
            takes = ", ".join(a if d is REQUIRED else f"{a}={d}" for a, d in signature.items()) or "nothing"
            raise ModelBuildError(f"{label}: {problem}; block {row.op} takes: {takes}")
        if len(in_shapes) != 1:
            raise ModelBuildError(f"{label}: a block reads one tensor, got {len(in_shapes)}")
        if row.op in self.expanding:
            chain = " > ".join([*self.expanding, row.op])
            raise ModelBuildError(f"{label}: block {row.op} uses itself ({chain}); a block cannot contain itself")
        bindings = {a: default for a, default in signature.items() if default is not REQUIRED}
        bindings.update(row.args)
        layers = substitute(block.get("layers") or [], bindings)
        self.expanding.append(row.op)
        try:
            return self.build_graph(layers, in_shapes[0], path=f"{where} > {row.op}.layers")
        finally:
            self.expanding.pop()

    def block_signature(self, block_name: str, block: Mapping[str, Any], label: str) -> Dict[str, Any]:
        """A block's ``args`` in order: name -> default, REQUIRED for an argument without one."""
        signature = {}
        for entry in block.get("args") or []:
            if isinstance(entry, Mapping) and len(entry) == 1:
                (name, default), = entry.items()
                signature[str(name)] = default
            elif isinstance(entry, (str, int)) and not isinstance(entry, bool):
                signature[str(entry)] = REQUIRED
            else:
                raise ModelBuildError(
                    f"{label}: block {block_name}'s args are names or {{name: default}}, got {entry!r}"
                )
        return signature


def check_argument_types(factory, args: Mapping[str, Any], label: str) -> None:
    """Each argument of an op row against the op's annotation (``kernel: 5.5`` or ``out: six``
    is refused here, naming the argument, not deep inside torch); sizes and counts must be >= 1."""
    hints = typing.get_type_hints(factory)
    for name, value in args.items():
        expected = hints.get(name, Any)
        if not fits(value, expected):
            raise ModelBuildError(f"{label}: argument {name} must be {describe(expected)}, got {value!r}")
        if name in POSITIVE_ARGS and any(v < 1 for v in whole_numbers(value)):
            raise ModelBuildError(f"{label}: argument {name} must be at least 1, got {value!r}")


def fits(value: Any, expected: Any) -> bool:
    """Whether a YAML value is of an op argument's annotated type (int accepted for float)."""
    origin, parts = typing.get_origin(expected), typing.get_args(expected)
    if expected is Any:
        return True
    if origin is Union:
        return any(fits(value, part) for part in parts)
    if origin in (list, List, tuple):
        return isinstance(value, (list, tuple)) and all(fits(v, parts[0] if parts else Any) for v in value)
    if expected is type(None):
        return value is None
    if expected is bool:
        return isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return not isinstance(expected, type) or isinstance(value, expected)


def describe(expected: Any) -> str:
    origin, parts = typing.get_origin(expected), typing.get_args(expected)
    if origin is Union:
        return " or ".join(describe(part) for part in parts)
    if origin in (list, List, tuple):
        plurals = {int: "whole numbers", float: "numbers", str: "strings"}
        return f"a list of {plurals.get(parts[0], 'values') if parts else 'values'}"
    names = {int: "a whole number", float: "a number", bool: "true or false", str: "a string", type(None): "null"}
    return names.get(expected, getattr(expected, "__name__", str(expected)))


def whole_numbers(value: Any) -> List[int]:
    values = value if isinstance(value, (list, tuple)) else [value]
    return [v for v in values if isinstance(v, int) and not isinstance(v, bool)]


def copies(row: Row, index: int, where: str) -> Iterator[Tuple[Row, str]]:
    """The row itself, or its ``repeat`` copies: numbered names, each copy reading the one before."""
    if row.repeat is None:
        yield row, where
        return
    names = numbered(row.name or str(index), row.repeat)
    for k, name in enumerate(names):
        sources = row.sources if k == 0 else (names[k - 1],)
        yield replace(row, name=name, sources=sources), f"{where} copy {k + 1}"


def numbered(name: str, count: int) -> List[str]:
    """``stage1`` -> stage1_1, stage1_2, ...; ``conv2_2`` -> conv2_2, conv2_3, ... (the first copy's name)."""
    match = NUMBERED_NAME.fullmatch(name)
    prefix, first = (match.group(1), int(match.group(2))) if match else (f"{name}_", 1)
    return [f"{prefix}{first + k}" for k in range(count)]


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
