"""Every `published:` block (conf/model/*.yaml, and conf/experiment/*.yaml's `experiment.published`)
follows cnnbench/models/published.py: a figure, a `source` naming the table, figure, section or
weights entry that prints it, and a `protocol` from the fixed vocabulary PROTOCOLS, each entry of
which either gives the `cnnbench eval` settings that measure the same thing or says why none does.

Read as plain YAML (no composition, no model built): the whole file runs in well under a second.
Which table of a paper holds a figure is for people to check (the model files name it); here, that
it is named in a form one can look up, that the cited work is the file's paper or source, and, for
torchvision's weights, that the entry exists and documents exactly the figures and crop given.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from cnnbench.config import CROP_COUNTS, EvalConfig
from cnnbench.models.published import PROTOCOLS, block_problems, parse_source

CONF = Path(__file__).resolve().parents[1] / "conf"
MODEL_FILES = sorted((CONF / "model").glob("*.yaml"))
EXPERIMENT_FILES = sorted((CONF / "experiment").glob("*.yaml"))
EVAL_KEYS = {"data", *(f"eval.{name}" for name in EvalConfig.__dataclass_fields__)}


def model_block(path: Path) -> dict:
    return yaml.safe_load(path.read_text()).get("published") or {}


def experiment_info(path: Path) -> dict:
    return (yaml.safe_load(path.read_text()) or {}).get("experiment") or {}


def cites(who: str, work: str) -> bool:
    """Whether "Szegedy et al. 2015" names ``work`` (a paper or source line): its first name, and its year if any."""
    name, year = who.split()[0].lower(), re.search(r"\b(19|20)\d\d\b", who)
    return name in work.lower() and (year is None or year.group(0) in work)


@pytest.mark.parametrize("path", MODEL_FILES, ids=lambda p: p.stem)
def test_each_model_files_published_block_conforms(path):
    block = model_block(path)
    if not block:
        return  # a model without a published figure (a demonstration, a backbone) says nothing
    assert block_problems(block) == [], path.name
    who, _, _ = parse_source(block["source"])
    spec = yaml.safe_load(path.read_text())
    work = f"{spec.get('paper') or ''} {spec.get('source') or ''}"
    assert cites(who, work), f"{path.name}: source cites {who!r}, neither its paper nor its source: {work}"


@pytest.mark.parametrize("path", EXPERIMENT_FILES, ids=lambda p: p.stem)
def test_each_experiments_published_block_conforms(path):
    info = experiment_info(path)
    if not info.get("paper"):
        assert not info.get("published"), f"{path.name}: a published figure needs experiment.paper"
        return  # an ablation of cnnbench's own, not a paper's
    block = info.get("published") or {}
    assert block_problems(block, experiment=True) == [], path.name
    who, _, _ = parse_source(block["source"])
    assert cites(who, info["paper"]), f"{path.name}: source cites {who!r}, not its paper: {info['paper']}"


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_each_protocol_is_runnable_with_real_settings_or_says_why_not(name):
    protocol = PROTOCOLS[name]
    assert protocol.summary
    assert (protocol.eval is None) == bool(protocol.not_runnable), name
    if protocol.eval is not None:
        assert set(protocol.eval) <= EVAL_KEYS, f"{name}: {sorted(set(protocol.eval) - EVAL_KEYS)} are not eval settings"
        assert protocol.eval.get("eval.crops") in CROP_COUNTS


def torchvision_blocks():
    for path in MODEL_FILES:
        block = model_block(path)
        if block and parse_source(block["source"])[0] == "torchvision":
            yield pytest.param(path, block, id=path.stem)


@pytest.mark.parametrize("path, block", list(torchvision_blocks()))
def test_torchvision_figures_are_what_the_weights_document(path, block):
    """The cited weights entry exists, its metrics are the figures, and its preprocessing is the protocol's."""
    from torchvision.models import get_weight  # reads metadata only; nothing is downloaded

    (entry,) = parse_source(block["source"])[1]
    weights = get_weight(entry)
    metrics = weights.meta["_metrics"]["ImageNet-1K"]
    assert (block["top1"], block["top5"]) == (metrics["acc@1"], metrics["acc@5"]), path.name
    transform, settings = weights.transforms(), PROTOCOLS[block["protocol"]].eval
    assert list(transform.resize_size) == [settings["eval.resize"]], path.name
    assert list(transform.crop_size) == yaml.safe_load(path.read_text())["input_size"][1:2], path.name


@pytest.mark.parametrize("change, expected", [
    ({"protocol": "imagenet_val_1crop_resize265"}, r"protocol 'imagenet_val_1crop_resize265' is not one of"),
    ({"protocol": "ILSVRC-2012 val, one crop"}, r"is not one of"),
    ({"source": "He et al. 2016"}, r"source must be '<who>, <place>'"),
    ({"source": "He et al. 2016, Tab. 6"}, r"source must be"),
    ({"top1_eror": 8.75}, r"unknown key top1_eror"),
    ({"top1_error": 108.75}, r"top1_error: a figure is a percentage"),
])
def test_a_wrong_block_is_refused(change, expected):
    block = {"top1_error": 8.75, "protocol": "cifar10_test", "source": "He et al. 2016, Table 6", **change}
    problems = block_problems(block)
    assert problems and re.search(expected, "; ".join(problems))


def test_a_block_without_figure_or_note_and_a_wrong_citation_are_refused():
    assert block_problems({"protocol": "cifar10_test", "source": "He et al. 2016, Table 6"}, experiment=True)
    assert block_problems({"note": "qualitative", "protocol": "cifar10_test", "source": "He et al. 2016, section 4.2"},
                          experiment=True) == []
    assert not cites("Szegedy et al. 2015", "He, Zhang, Ren, Sun. Deep Residual Learning. CVPR 2016")
    assert not cites("He et al. 2015", "He, Zhang, Ren, Sun. Deep Residual Learning. CVPR 2016")


def test_sources_parse_into_who_where_and_detail():
    assert parse_source("He et al. 2016, Table 6 (best of 5 runs; mean 6.61 +- 0.16)") == (
        "He et al. 2016", ["Table 6"], "best of 5 runs; mean 6.61 +- 0.16")
    assert parse_source("He et al. 2016, Table 6 and Figure 6")[1] == ["Table 6", "Figure 6"]
    assert parse_source("torchvision, ResNet50_Weights.IMAGENET1K_V1")[1] == ["ResNet50_Weights.IMAGENET1K_V1"]
    assert parse_source("cuda-convnet, file layers-18pct.cfg (its title line)")[1] == ["file layers-18pct.cfg"]
