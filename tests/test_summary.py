"""`cnnbench summary`: parameters, MACs and receptive fields."""

from __future__ import annotations

import json

import pytest

from cnnbench.models import build_model, create_model
from cnnbench.models.summary import summarize


def zoo_model(name: str, input_shape, num_classes: int):
    return create_model(name, num_classes, input_size=list(input_shape))


def test_lenet5_rows_by_hand():
    rows = {r.name: r for r in summarize(zoo_model("lenet5", (1, 32, 32), 10), (1, 32, 32))}
    # MACs = output elements x (in-channels x kernel area) for convolutions, in x out for linear layers.
    assert rows["C1"].macs == 6 * 28 * 28 * 1 * 25
    assert rows["C3"].macs == 16 * 10 * 10 * 6 * 25
    assert rows["C5"].macs == 120 * 16 * 25
    assert rows["F6"].macs == 120 * 84
    assert rows["output"].macs == 84 * 10
    assert rows["S2"].other_ops == 6 * 14 * 14 * 4  # 2x2 average pooling: 4 taps per output
    # Receptive fields: 5, then +1 (2x2 pool), +4 x 2 (5x5 conv at stride 2), +1 x 2 (pool).
    assert [rows[n].receptive_field for n in ("C1", "S2", "C3", "S4")] == [5, 6, 14, 16]
    assert rows["C5"].receptive_field is None  # sees the whole 32x32 input
    assert rows["C3"].output == (16, 10, 10) and rows["C3"].params == 2416


@pytest.mark.parametrize("name, gmacs, params", [
    # torchvision's model tables: "GFLOPS" there are multiply-accumulates.
    ("alexnet_owt", 0.71, 61_100_840),
    ("resnet50", 4.09, 25_557_032),
    ("vgg16", 15.47, 138_357_544),
])
def test_macs_agree_with_torchvision(name, gmacs, params):
    rows = summarize(zoo_model(name, (3, 224, 224), 1000), (3, 224, 224))
    assert round(sum(r.macs for r in rows) / 1e9, 2) == gmacs
    assert sum(r.params for r in rows) == params


def test_summary_command_prints_json(run):
    result = run("summary", "summary.format=json", "summary.input_size=[3,32,32]", "model=lenet5")
    report = json.loads(result.stdout)
    assert report["input_size"] == [3, 32, 32]
    assert report["params"] == 61706 + 6 * 5 * 5 * 2  # C1 now reads three channels
    assert report["macs"] == sum(layer["macs"] for layer in report["layers"])
    assert report["flops"] == 2 * report["macs"]
    assert report["layers"][0]["output"] == [6, 28, 28]
    assert not list(run.cwd.iterdir()), "summary writes no files"


def test_summary_sizes_a_model_for_its_own_classes_unless_told(run):
    native = json.loads(run("summary", "summary.format=json", "model=resnet50").stdout)
    assert native["num_classes"] == 1000 and native["params"] == 25_557_032  # torchvision's resnet50
    for chosen in ("data.num_classes=10", "data=cifar10"):
        sized = json.loads(run("summary", "summary.format=json", "model=resnet50", chosen).stdout)
        assert sized["num_classes"] == 10 and sized["params"] == 25_557_032 - 2048 * 990 - 990


def test_summary_table_and_errors(run, main_cli):
    result = run("summary")
    assert "C1" in result.stdout and "MACs 416,520" in result.stdout and "params 61,706" in result.stdout
    bad = main_cli("summary", "summary.format=yaml")
    assert bad.returncode == 2 and "summary.format 'yaml'" in bad.stderr and "Traceback" not in bad.stderr


def test_receptive_fields_of_separable_and_asymmetric_kernels():
    spec = {"name": "rf", "layers": [
        ["sepconv", {"out": 4, "kernel": 3, "padding": 1, "as": "sep"}],        # 3x3 depthwise + 1x1: 3
        ["conv", {"out": 4, "kernel": [1, 7], "padding": [0, 3], "as": "row"}],  # 3x9
        ["conv", {"out": 4, "kernel": [7, 1], "padding": [3, 0], "as": "col"}],  # 9x9
    ]}
    rows = {r.name: r for r in summarize(build_model(spec, (3, 32, 32)), (3, 32, 32))}
    assert rows["sep"].receptive_field == 3
    assert rows["row"].receptive_field == 9 and rows["col"].receptive_field == 9
