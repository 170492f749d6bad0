"""Every model in conf/model/: it builds at its own input size, takes a training step, and keeps its size.

``tests/model_table.json`` holds each model's input, classes, parameters and
MACs (summed over `cnnbench summary`'s rows), written when the model was
added and checked against its paper or library then. A model file, a block
library or a builder change that alters any of them fails here, and so does
a model file without an entry. To add one, check the numbers, then run
``python tests/test_model_registry.py NAME``.

This is also the zoo's one training step at full size (forward and backward
in training mode, batch 1; the paper and torchvision tests check shapes and
weights at smaller cost), so each model's full-size work is done once.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from cnnbench import create_model, list_models, model_spec
from cnnbench.models import ModelOutput, classification_loss, count_parameters, main_logits
from cnnbench.models.summary import summarize

TABLE_PATH = Path(__file__).resolve().parent / "model_table.json"
TABLE = json.loads(TABLE_PATH.read_text())


def measure(name: str) -> dict:
    """A model's table entry: what `python -m cnnbench.models.zoo` prints, unrounded.

    Counted on a copy built on the meta device, where tensors have shapes but
    no data: the same layers and counts, without the cost of a real forward.
    """
    with torch.device("meta"):
        model = create_model(name)
    rows = summarize(model, model.input_shape)
    return {
        "input": list(model.input_shape),
        "classes": model.output_shape[0],
        "params": sum(r.params for r in rows),
        "macs": sum(r.macs for r in rows),
    }


def batch_size(model: nn.Module) -> int:
    # One image, except where a BatchNorm1d (on a flat vector) would normalise
    # each feature over a single value, which training mode refuses.
    return 2 if any(isinstance(m, nn.BatchNorm1d) for m in model.modules()) else 1


def every_model() -> list:
    """Each model's name; ImageNet-size ones take seconds each, so `pytest -m "not slow"` leaves them out."""
    return [
        pytest.param(name, marks=pytest.mark.slow) if TABLE.get(name, {}).get("input", [0])[-1] >= 128 else name
        for name in list_models()
    ]


@pytest.mark.parametrize("name", every_model())
def test_model_builds_trains_and_keeps_its_size(name):
    if name not in TABLE:
        pytest.fail(
            f"conf/model/{name}.yaml has no entry in {TABLE_PATH.name}; check its parameters and MACs "
            f"against its paper, then add them with `python tests/test_model_registry.py {name}`"
        )
    assert measure(name) == TABLE[name]
    torch.manual_seed(0)
    model = create_model(name)
    assert count_parameters(model) == TABLE[name]["params"]  # the real build is the one measured

    batch = batch_size(model)
    x = torch.randn(batch, *model.input_shape)
    labels = torch.zeros(batch, dtype=torch.long)
    output = model.train()(x)
    has_aux_heads = any(weight is not None for weight in model.aux_weights)
    assert isinstance(output, ModelOutput) == has_aux_heads
    assert main_logits(output).shape == (batch, TABLE[name]["classes"])
    classification_loss(output, labels).backward()
    no_gradient = [key for key, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not no_gradient, f"no finite gradient reaches: {', '.join(no_gradient[:5])}"


def test_the_table_lists_no_model_that_is_gone():
    assert sorted(set(TABLE) - set(list_models())) == []


# --- the Python API: cnnbench.create_model / list_models / model_spec ---------------


def test_list_models_filters_with_a_glob():
    assert list_models("resnet1*") == ["resnet101", "resnet110", "resnet18"]
    everything = list_models()
    assert everything == sorted(everything) and "lenet5" in everything
    assert "resnet" not in everything and "vgg" not in everything  # block libraries are not models


def test_create_model_takes_model_keys_and_regularization_switches():
    assert model_spec("resnet20")["layers"][-1] == ["linear", {"out": 10, "as": "fc"}]  # 32x32: CIFAR-10's classes
    assert model_spec("resnet18")["layers"][-1] == ["linear", {"out": 1000, "as": "fc"}]  # 224: ImageNet's
    model = create_model("lenet5", num_classes=7, input_size=[3, 32, 32])
    assert model.layers[0].in_channels == 3 and model.output_shape == (7,)
    without = create_model("alexnet_cifar", lrn=False)
    assert "WithinChannelLRN" not in {type(m).__name__ for m in without.modules()}
    assert "Dropout" not in {type(m).__name__ for m in create_model("nin_cifar", dropout=0.0).modules()}


@pytest.mark.parametrize("call, expected", [
    (lambda: create_model("resnet20", nrom="gn"),
     r"model 'resnet20': unknown keyword nrom; valid: paper, .*, dropout, lrn$"),
    (lambda: model_spec("resnet20", dropout=0.5), r"unknown keyword dropout; valid: paper, .*norm_groups$"),
    (lambda: create_model("resnet_20"), r"unknown model 'resnet_20'; did you mean 'resnet20'\? models: alexnet, "),
    (lambda: create_model("lenet5", dropout=1.5), r"dropout must be a rate in \[0, 1\)"),
    (lambda: create_model("lenet5", norm_groups="many"), r"model 'lenet5' with norm_groups overridden: Value 'many'"),
    (lambda: create_model("lenet5", num_classes=0), r"num_classes must be a whole number >= 1, got 0"),
])
def test_create_model_refuses_what_it_cannot_use_in_one_line(call, expected):
    with pytest.raises(ValueError, match=expected) as caught:
        call()
    assert "\n" not in str(caught.value)


def test_importing_cnnbench_does_not_import_torch():
    # `cnnbench --help` imports the package for __version__; the API comes on first use.
    code = "import sys, cnnbench; assert 'torch' not in sys.modules; cnnbench.create_model"
    code += "; assert 'torch' in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def format_table(table: dict) -> str:
    """One model per line, so an added model is a one-line diff."""
    lines = [f"  {json.dumps(name)}: {json.dumps(entry)}" for name, entry in sorted(table.items())]
    return "{\n" + ",\n".join(lines) + "\n}\n"


if __name__ == "__main__":
    # python tests/test_model_registry.py NAME ...: write NAME's entry, as built now.
    names = sys.argv[1:] or sys.exit("usage: python tests/test_model_registry.py NAME [NAME ...]")
    torch.set_grad_enabled(False)
    for model_name in names:
        TABLE[model_name] = measure(model_name)
        print(model_name, TABLE[model_name])
    TABLE_PATH.write_text(format_table(TABLE))
