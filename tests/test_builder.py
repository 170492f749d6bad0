"""The model language: wiring, user-written blocks, `repeat:`, block libraries, auxiliary heads, the norm
slot, error messages."""

from __future__ import annotations

import re
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from cnnbench.models import (
    BuildOptions, ModelBuildError, ModelOutput, build_model, classification_loss, count_parameters, create_model,
    main_logits,
)
from cnnbench.models import builder


def from_yaml(text: str, shape, options: BuildOptions = BuildOptions(), source: str = "my_net.yaml"):
    """Build a model the way the CLI does: YAML -> resolved container -> build_model."""
    spec = OmegaConf.to_container(OmegaConf.create(text), resolve=True)
    return build_model(spec, shape, options, source)


def forward_backward(model: nn.Module, shape, batch: int = 2) -> torch.Tensor:
    x = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(0), requires_grad=True)
    out = main_logits(model(x))
    out.square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    return out


# --- a user's own blocks, in YAML alone ---------------------------------------

USER_MODEL = """
name: tiny_user_net
blocks:
  residual:                 # He et al. 2016, Fig. 2: two 3x3 convs and an identity shortcut
    args: [width]
    layers:
      - [conv, {out: width, kernel: 3, padding: 1, bias: false}]
      - batchnorm
      - relu
      - [conv, {out: width, kernel: 3, padding: 1, bias: false}]
      - [batchnorm, {as: branch}]
      - [add, {from: [input, branch]}]
      - relu
  inception:                # Szegedy et al. 2015, Fig. 2(b), without the pool projection's pool
    args: [c1, c3r, c3, pool_proj]
    layers:
      - [conv, {out: c1, kernel: 1, from: input, as: b1}]
      - [conv, {out: c3r, kernel: 1, from: input}]
      - relu
      - [conv, {out: c3, kernel: 3, padding: 1, as: b3}]
      - [maxpool, {kernel: 3, stride: 1, padding: 1, from: input}]
      - [conv, {out: pool_proj, kernel: 1, as: bp}]
      - [concat, {from: [b1, b3, bp]}]
layers:
  - [conv, {out: 8, kernel: 3, padding: 1}]
  - [residual, {width: 8}]
  - [inception, {c1: 4, c3r: 3, c3: 6, pool_proj: 2, as: mixed}]
  - [residual, {width: 12}]
  - gap
  - flatten
  - [linear, {out: 5}]
"""


def test_a_user_block_written_in_yaml_builds_runs_and_trains():
    model = from_yaml(USER_MODEL, (3, 10, 10))
    assert model.output_shape == (5,)
    # The inception block's concat: 4 + 6 + 2 channels, read by the second residual block.
    inception = model.layers[2]
    assert inception.layers[-1](
        [torch.zeros(1, 4, 10, 10), torch.zeros(1, 6, 10, 10), torch.zeros(1, 2, 10, 10)]).shape == (1, 12, 10, 10)
    assert model.layers[3].layers[0].in_channels == 12
    out = forward_backward(model, (3, 10, 10))
    assert out.shape == (2, 5)


def test_residual_block_adds_its_input():
    model = from_yaml(USER_MODEL, (3, 6, 6))
    block = model.layers[1].eval()
    for layer in block.layers:  # zero the branch: the block becomes relu(x)
        if isinstance(layer, nn.BatchNorm2d):
            nn.init.zeros_(layer.weight)
    x = torch.randn(1, 8, 6, 6)
    assert torch.equal(block(x), torch.relu(x))


def test_squeeze_and_excitation_is_expressible_in_yaml():
    text = """
    name: se_demo
    blocks:
      se:                   # Hu et al. 2018, Fig. 1 / eq. 2-3, with 1x1 convs as the two FC layers
        args: [channels, reduced]
        layers:
          - gap
          - [conv, {out: reduced, kernel: 1}]
          - relu
          - [conv, {out: channels, kernel: 1}]
          - [sigmoid, {as: scale}]
          - [multiply, {from: [input, scale]}]
    layers:
      - [conv, {out: 16, kernel: 3, padding: 1}]
      - [se, {channels: 16, reduced: 4}]
    """
    model = from_yaml(text, (3, 5, 5))
    assert model.output_shape == (16, 5, 5)
    x = torch.randn(2, 3, 5, 5)
    features = model.layers[0](x)
    se = model.layers[1].layers
    scale = torch.sigmoid(se[3](torch.relu(se[1](features.mean((2, 3), keepdim=True)))))
    assert torch.allclose(model(x), features * scale, atol=1e-6)
    forward_backward(model, (3, 5, 5))


def test_rows_without_from_read_the_row_above_and_names_reach_back():
    text = """
    name: wiring
    layers:
      - [conv, {out: 4, kernel: 1, as: a}]
      - relu
      - [conv, {out: 4, kernel: 1, from: input, as: b}]
      - [add, {from: [a, b]}]
    """
    model = from_yaml(text, (2, 3, 3))
    assert model.sources == [("input",), ("a",), ("input",), ("a", "b")]
    x = torch.randn(1, 2, 3, 3)
    assert torch.allclose(model(x), model.layers[0](x) + model.layers[2](x))


# --- the paper models of this part of the zoo ----------------------------------


def zoo_model(name: str, num_classes: int = 10):
    return create_model(name, num_classes, input_size=[3, 32, 32])


def test_highway_cifar_gates_start_closed_and_the_model_trains():
    model = zoo_model("highway_cifar")
    assert model.output_shape == (10,)
    gate_convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and torch.all(m.bias == -2.0)]
    assert len(gate_convs) == 9  # three highway layers in each of three stages
    forward_backward(model, (3, 32, 32))


def test_stn_cifar_starts_by_passing_the_image_through():
    model = zoo_model("stn_cifar", num_classes=100).eval()
    assert model.output_shape == (100,)
    index = model.names.index("warped")
    seen = {}
    model.layers[index].register_forward_hook(lambda module, inputs, output: seen.update(out=output))
    x = torch.randn(2, 3, 32, 32)
    model(x)
    assert torch.allclose(seen["out"], x, atol=1e-5)
    forward_backward(model.train(), (3, 32, 32))


# --- repeat: N copies of a row, in sequence ----------------------------------------

REPEATED = """
name: repeated
layers:
  - [conv, {out: 4, kernel: 1, bias: false, repeat: 3, as: stage}]
  - [add, {from: [stage_1, stage_3]}]
"""


def test_repeat_builds_n_separate_copies_each_reading_the_one_before():
    model = from_yaml(REPEATED, (4, 2, 2))
    assert model.names == ["stage_1", "stage_2", "stage_3", "1"]
    assert model.sources == [("input",), ("stage_1",), ("stage_2",), ("stage_1", "stage_3")]
    first, second, third = model.layers[:3]
    assert len({id(conv.weight) for conv in (first, second, third)}) == 3  # three layers, not one reused
    x = torch.randn(2, 4, 2, 2)
    assert torch.allclose(model(x), third(second(first(x))) + first(x), atol=1e-6)
    assert count_parameters(model) == 3 * 4 * 4


def test_a_repeated_block_continues_a_numbered_name_and_an_unnamed_row_numbers_its_index():
    text = """
    name: stage
    blocks:
      unit: {args: [width], layers: [[conv, {out: width, kernel: 1}], relu]}
    layers:
      - [conv, {out: 3, kernel: 1, as: conv2_1}]
      - [unit, {width: 3, repeat: 2, as: conv2_2}]
      - [unit, {width: 5, repeat: 2}]
      - [unit, {width: 6, repeat: 1, as: last}]
    """
    model = from_yaml(text, (2, 4, 4))
    assert model.names == ["conv2_1", "conv2_2", "conv2_3", "2_1", "2_2", "last_1"]
    assert [graph.layers[0].out_channels for graph in model.layers[1:]] == [3, 3, 5, 5, 6]
    assert model.layers[4].layers[0].in_channels == 5  # the second copy reads the first
    forward_backward(model, (2, 4, 4))


def test_a_block_argument_can_set_repeat():
    text = """
    name: family
    blocks:
      stage: {args: [n], layers: [[conv, {out: 2, kernel: 1, repeat: n}]]}
    layers:
      - [stage, {n: 4}]
    """
    assert len(from_yaml(text, (2, 3, 3)).layers[0].layers) == 4


@pytest.mark.parametrize("layers_yaml, expected", [
    ("  - [relu, {repeat: 0}]", "my_net.yaml, layers[0] (relu): repeat must be a whole number >= 1, got 0"),
    ("  - [relu, {repeat: 2.5}]", "my_net.yaml, layers[0] (relu): repeat must be a whole number >= 1, got 2.5"),
    ("  - [relu, {repeat: '3'}]", "my_net.yaml, layers[0] (relu): repeat must be a whole number >= 1, got '3'"),
    ("  - [relu, {repeat: true}]", "my_net.yaml, layers[0] (relu): repeat must be a whole number >= 1, got True"),
    ("  - [relu, {repeat: null}]", "my_net.yaml, layers[0] (relu): repeat must be a whole number >= 1, got None"),
    ("  - relu\n  - [aux_head, {weight: 0.3, repeat: 2, layers: [flatten]}]\n  - flatten",
     "my_net.yaml, layers[1] (aux_head): an aux_head cannot repeat; it is a side exit"),
    ("  - [relu, {as: a}]\n  - [add, {from: [a, input], repeat: 2}]",
     "my_net.yaml, layers[1] (add): repeat chains copies, each reading the one before, so a row that reads 2 tensors"),
    ("  - [relu, {repeat: 2, as: a}]\n  - [relu, {as: a_2}]",
     "my_net.yaml, layers[1] (relu 'a_2'): the name 'a_2' is already used by an earlier row"),
    ("  - [conv, {out: 3, kernel: 3, repeat: 3, as: shrink}]",
     "my_net.yaml, layers[0] copy 3 (conv 'shrink_3'): "),
])
def test_repeat_mistakes_are_one_line_errors(layers_yaml, expected):
    message = build_error(layers_yaml, shape=(3, 5, 5))
    assert message.startswith(expected) and "\n" not in message


# --- block libraries (conf/blocks/) and block arguments with defaults -------------


def test_a_model_uses_a_library_block_by_name():
    model = from_yaml("name: n\nuses: [resnet]\nlayers: [[basic, {width: 3, repeat: 2, as: stage}]]", (3, 6, 6))
    assert model.names == ["stage_1", "stage_2"]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 4 and all(conv.bias is None for conv in convs)  # resnet.yaml's basic: BN after bias-free convs
    assert count_parameters(model) == 2 * (2 * 3 * 3 * 9 + 2 * 2 * 3)
    forward_backward(model, (3, 6, 6))


def test_library_blocks_reach_a_model_that_hydra_composes():
    from hydra import compose, initialize_config_dir

    from cnnbench.config import CONF_DIR, register_schemas

    register_schemas()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = compose("train", overrides=["model=resnet20"])
    assert list(cfg.model.uses) == ["resnet"]  # `uses` is a ModelConfig key
    model = build_model(OmegaConf.to_container(cfg.model, resolve=True), tuple(cfg.model.input_size))
    assert count_parameters(model) == 269_722  # Table 6: 0.27M


PROJECT_BLOCK = """blocks:
  project: {args: [width, {stride: 1}], layers: [[conv, {out: width, kernel: 1, stride: stride}]]}"""


def test_block_arguments_may_have_defaults():
    rows = "  - [project, {width: 2, as: kept}]\n  - [project, {width: 2, stride: 2, as: halved}]"
    model = from_yaml(f"name: d\n{PROJECT_BLOCK}\nlayers:\n{rows}", (3, 4, 4))
    assert [graph.layers[0].stride for graph in model.layers] == [(1, 1), (2, 2)]
    message = build_error("  - [project, {}]", blocks_yaml=PROJECT_BLOCK)
    assert message.endswith("missing argument width; block project takes: width, stride=1")


def write_library(directory, name: str, text: str) -> None:
    (directory / f"{name}.yaml").write_text(text)


@pytest.mark.parametrize("model_yaml, library_yaml, expected", [
    ("uses: [resnett]", None, "my_net.yaml: uses: unknown block library 'resnett'; available: mine ("),
    ("uses: mine", None, "my_net.yaml: uses must be a list of block library names, e.g. uses: [resnet], got 'mine'"),
    ("uses: [mine, mine]", None, "my_net.yaml: uses lists mine more than once"),
    ("uses: [mine]\nblocks: {unit: {layers: [relu]}}", None,
     "my_net.yaml: block 'unit' is defined in the model's own blocks and in library 'mine' (conf/blocks/mine.yaml)"),
    ("uses: [mine]", "blocks: {relu: {layers: [relu]}}",
     "my_net.yaml: block 'relu' (library 'mine') has the name of a built-in op"),
    ("uses: [mine]", "block: {unit: {layers: [relu]}}",
     "conf/blocks/mine.yaml: a block library holds one key, `blocks:`"),
    ("uses: [mine]", "blocks: {unit: {layers: [[linear, {out: '${data.num_classes}'}]]}}",
     "conf/blocks/mine.yaml: Interpolation key 'data.num_classes' not found; pass such values as block arguments"),
    ("uses: [mine]", "blocks: {unit: {arg: [width], layers: [relu]}}",
     "my_net.yaml, layers[0] (unit): block unit has arg; a block holds only: args, layers"),
])
def test_block_library_mistakes_are_one_line_errors(tmp_path, monkeypatch, model_yaml, library_yaml, expected):
    monkeypatch.setattr(builder, "BLOCK_LIBRARY_DIR", tmp_path)
    write_library(tmp_path, "mine", library_yaml or "blocks: {unit: {layers: [relu]}}")
    with pytest.raises(ModelBuildError) as caught:
        from_yaml(f"name: bad\n{model_yaml}\nlayers: [unit]", (3, 4, 4))
    message = str(caught.value)
    assert message.startswith(expected) and "\n" not in message


# --- auxiliary heads ---------------------------------------------------------

AUX_MODEL = """
name: aux_demo
blocks:
  side_classifier:           # GoogLeNet's auxiliary classifier (section 5), shrunk
    args: [classes]
    layers:
      - [avgpool, {kernel: 2, stride: 2}]
      - [conv, {out: 4, kernel: 1}]
      - relu
      - flatten
      - [linear, {out: classes}]
layers:
  - [conv, {out: 6, kernel: 3, padding: 1, as: stem}]
  - [aux_head, {from: stem, weight: 0.3, layers: [[side_classifier, {classes: 3}]]}]
  - relu
  - [conv, {out: 6, kernel: 3, padding: 1, as: deeper}]
  - [aux_head, {from: deeper, weight: 0.3, layers: [gap, flatten, [linear, {out: 3}]]}]
  - gap
  - flatten
  - [linear, {out: 3}]
"""


def test_aux_heads_give_structured_output_in_training_and_logits_in_eval():
    model = from_yaml(AUX_MODEL, (2, 4, 4))
    assert model.output_shape == (3,)
    # The row after a head reads the row above the head: relu reads the stem.
    assert model.sources[2] == ("stem",)
    x = torch.randn(5, 2, 4, 4)
    out = model.train()(x)
    assert isinstance(out, ModelOutput)
    assert out.logits.shape == (5, 3)
    assert [(logits.shape, weight) for logits, weight in out.aux] == [((5, 3), 0.3), ((5, 3), 0.3)]

    calls = []
    model.layers[1].register_forward_hook(lambda *args: calls.append(1))
    logits = model.eval()(x)
    assert isinstance(logits, torch.Tensor) and logits.shape == (5, 3)
    assert calls == []  # the heads are discarded at inference, not run
    assert torch.allclose(logits, model.train()(x).logits)


def test_loss_adds_weighted_aux_cross_entropy_and_trains_the_heads():
    model = from_yaml(AUX_MODEL, (2, 4, 4)).train()
    x, labels = torch.randn(4, 2, 4, 4), torch.tensor([0, 1, 2, 1])
    out = model(x)
    expected = F.cross_entropy(out.logits, labels) + sum(0.3 * F.cross_entropy(a, labels) for a, _ in out.aux)
    loss = classification_loss(out, labels)
    assert torch.allclose(loss, expected)
    assert not torch.allclose(loss, F.cross_entropy(out.logits, labels))
    loss.backward()
    assert model.layers[1].layers[0].layers[-1].weight.grad.abs().sum() > 0
    assert main_logits(out) is out.logits
    plain = torch.randn(4, 3)
    assert torch.allclose(classification_loss(plain, labels), F.cross_entropy(plain, labels))


def test_training_and_evaluation_loops_accept_aux_models(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    from cnnbench.config import TrainConfig
    from cnnbench.engine.distributed import DistributedContext
    from cnnbench.engine.evaluate import evaluate
    from cnnbench.engine.schedule import make_schedule
    from cnnbench.engine.speed import speed_for
    from cnnbench.engine.state import TrainState
    from cnnbench.engine.train import Run, train_steps

    class Batches(list):
        device = torch.device("cpu")

        def set_epoch(self, epoch):
            pass

    torch.manual_seed(0)
    batches = Batches([(torch.randn(8, 2, 4, 4), torch.randint(0, 3, (8,))) for _ in range(3)])
    model = from_yaml(AUX_MODEL, (2, 4, 4))
    cfg = OmegaConf.structured(TrainConfig)  # the schema's defaults, so new loop options keep working
    cfg.trainer.epochs, cfg.trainer.progress_bar = 1, False
    cfg.schedule.name = "constant"
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    schedule = make_schedule(cfg, optimizer, 0.1, len(batches))
    head_before = model.layers[4].layers[-1].weight.detach().clone()
    speed = speed_for(cfg.trainer, torch.device("cpu"))
    run = Run(cfg, DistributedContext(), tmp_path, speed, batches, batches, None, model, model, optimizer, schedule, 0)
    state = TrainState()
    state.start_epoch(run.device, schedule.lr)
    with SummaryWriter(str(tmp_path)) as writer:
        assert list(train_steps(run, state, 0, writer)) == [1, 2, 3]
    metrics = state.sums.result()
    assert metrics["loss"] > 0 and 0 <= metrics["top1"] <= 100
    assert not torch.equal(model.layers[4].layers[-1].weight, head_before)  # the aux loss reached the head
    result = evaluate(model, batches, 3)
    assert result["samples"] == 24 and model.training  # evaluate restores the mode it found

    class AlwaysStructured(nn.Module):  # even a model that returns ModelOutput in eval is scored on its logits
        def forward(self, x):
            logits = x.flatten(1)[:, :3]
            return ModelOutput(logits, [(torch.zeros_like(logits), 0.3)])

    x, labels = batches[0]
    expected = (x.flatten(1)[:, :3].argmax(1) == labels).float().mean().item() * 100
    assert evaluate(AlwaysStructured(), [(x, labels)], 3)["top1"] == pytest.approx(expected)


def aux_error(layers_yaml: str, blocks_yaml: str = "") -> str:
    with pytest.raises(ModelBuildError) as caught:
        from_yaml(f"name: bad\n{blocks_yaml}\nlayers:\n{layers_yaml}", (2, 4, 4))
    return str(caught.value)


def test_aux_head_mistakes_are_explained():
    message = aux_error("""
  - [conv, {out: 4, kernel: 1, as: c}]
  - [aux_head, {from: c, weight: 0.3, layers: [gap, flatten, [linear, {out: 7}]]}]
  - [gap]
  - [flatten]
  - [linear, {out: 3}]""")
    assert message.startswith("my_net.yaml, layers[1] (aux_head): the head's output (7,) differs from the model's output (3,)")
    assert "missing argument weight" in aux_error("  - [aux_head, {layers: [flatten]}]\n  - flatten")
    assert "remove `as`" in aux_error("  - [aux_head, {weight: 0.3, as: x, layers: [flatten]}]\n  - flatten")
    assert "weight must be a number" in aux_error("  - [aux_head, {weight: high, layers: [flatten]}]\n  - flatten")
    nested = aux_error("  - [b, {}]", """blocks:
  b:
    layers:
      - [aux_head, {weight: 0.3, layers: [flatten]}]
      - flatten""")
    assert nested.startswith("my_net.yaml, layers[0] > b.layers[0] (aux_head): aux_head rows belong in the model's top-level")


# --- the norm slot and the schema ------------------------------------------------


def test_model_norm_key_is_checked_and_in_the_schema():
    from cnnbench.config import ModelConfig

    schema = OmegaConf.structured(ModelConfig)
    assert (schema.norm, schema.norm_groups) == ("bn", 32)
    with pytest.raises(ModelBuildError, match=re.escape("my_net.yaml: model.norm='ln' is unknown; choose one of: bn, gn, none")):
        from_yaml("name: n\nnorm: ln\nlayers: [norm]", (4, 2, 2))


def test_bn_vs_gn_ablation_is_one_key():
    text = "name: n\nlayers: [[conv, {out: 64, kernel: 3}], norm, relu]"
    bn = from_yaml(text, (3, 5, 5))
    gn = from_yaml(text.replace("name: n", "name: n\nnorm: gn"), (3, 5, 5))
    none = from_yaml(text.replace("name: n", "name: n\nnorm: none"), (3, 5, 5))
    assert [type(m.layers[1]) for m in (bn, gn, none)] == [nn.BatchNorm2d, nn.GroupNorm, nn.Identity]
    assert count_parameters(bn) == count_parameters(gn) == count_parameters(none) + 128


# --- error messages name the file, the row and the shapes ------------------------


def build_error(layers_yaml: str, shape=(3, 8, 8), blocks_yaml: str = "") -> str:
    with pytest.raises(ModelBuildError) as caught:
        from_yaml(f"name: bad\n{blocks_yaml}\nlayers:\n{layers_yaml}", shape)
    return str(caught.value)


@pytest.mark.parametrize("layers_yaml, expected", [
    ("  - [sepconv, {out: 8, kernel: 3, groups: 2}]",
     "my_net.yaml, layers[0] (sepconv): unknown argument groups; sepconv takes: out, kernel, stride, padding, dilation, bias"),
    ("  - dwconv", "my_net.yaml, layers[0] (dwconv): missing argument kernel"),
    ("  - [convv, {out: 8}]", "my_net.yaml, layers[0]: unknown op 'convv'; ops: "),
    ("  - [conv, {out: 8, kernel: 1, as: x}]\n  - [multiply, {from: [x, nope]}]",
     "my_net.yaml, layers[1] (multiply): reads 'nope', which no earlier row names; known: input, x"),
    ("  - [conv, {out: 4, kernel: 1, as: x}]\n  - [gap, {from: input, as: s}]\n  - [multiply, {from: [x, s], as: scaled}]",
     "my_net.yaml, layers[2] (multiply 'scaled'): multiply: the shapes do not broadcast; each size must match or be 1 "
     "(input shape (4, 8, 8) and (3, 1, 1))"),
    ("  - [dropconnect, {out: 10}]",
     "my_net.yaml, layers[0] (dropconnect): dropconnect needs a flat input, got (3, 8, 8); put `flatten` before it "
     "(input shape (3, 8, 8))"),
    ("  - [highway_gate, {from: [input, input]}]",
     "my_net.yaml, layers[0] (highway_gate): highway_gate reads [H, T, x]: transform, gate, carry with `from: [...]`; "
     "it got 2 tensors"),
    ("  - [spatial_transform, {from: [input, input]}]",
     "my_net.yaml, layers[0] (spatial_transform): spatial_transform reads [image (C, H, W), features (N,)], "
     "got (3, 8, 8) and (3, 8, 8); end the localisation net with `flatten`"),
    ("  - [conv_transpose, {out: 4, kernel: 3, stride: 1, output_padding: 2}]",
     "my_net.yaml, layers[0] (conv_transpose): output padding must be smaller than either stride or dilation"),
    ("  - [prelu, {from: [input, input]}]",
     "my_net.yaml, layers[0] (prelu): reads 2 tensors, but prelu takes one"),
])
def test_errors_name_file_row_and_shapes(layers_yaml, expected):
    assert build_error(layers_yaml).startswith(expected)


def test_errors_inside_a_block_give_the_path_through_it():
    blocks = """blocks:
  squeeze:
    args: [channels]
    layers:
      - gap
      - [conv, {out: channels, kernel: 1, as: s}]
      - [multiply, {from: [input, s]}]"""
    message = build_error("  - [conv, {out: 8, kernel: 1}]\n  - [squeeze, {channels: 5}]", blocks_yaml=blocks)
    assert message.startswith(
        "my_net.yaml, layers[1] > squeeze.layers[2] (multiply): multiply: the shapes do not broadcast")
    assert message.endswith("(input shape (8, 8, 8) and (5, 1, 1))")


def test_a_new_op_is_one_decorated_function():
    from cnnbench.models import OPS, register_op

    @register_op("scaled_tanh")  # LeCun et al. 1998, appendix A: f(a) = A tanh(S a)
    def scaled_tanh(ctx, amplitude: float = 1.7159, slope: float = 2 / 3):
        class ScaledTanh(nn.Module):
            def forward(self, x):
                return amplitude * torch.tanh(slope * x)

        return ScaledTanh()

    try:
        model = from_yaml("name: n\nlayers: [flatten, [linear, {out: 3}], [scaled_tanh, {slope: 1.0}]]", (2, 2))
        x = torch.randn(4, 2, 2)
        assert torch.allclose(model(x), 1.7159 * torch.tanh(model.layers[1](x.flatten(1))))
        assert "scaled_tanh takes: amplitude, slope" in build_error("  - [scaled_tanh, {gain: 2}]")
    finally:
        del OPS["scaled_tanh"]
