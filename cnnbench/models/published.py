"""What a ``published:`` block (a model file's, or an experiment's ``experiment.published``) must say.

A block gives the figure, where it is printed, and how it was measured:

    published:
      top1_error: 6.97                      # the figure(s)
      protocol: cifar10_test                # a key of PROTOCOLS
      source: "He et al. 2016, Table 6"     # who, then where: see SOURCE
      note: "..."                           # optional: anything else worth knowing
      in_paper: {...}                       # optional (model files): the paper's figure, same form

``source`` names the place a reader can open: "<who>, <place>[ and <place>...][ (detail)]",
a place being a table, a figure or a section of a paper, a library's weights entry
(``torchvision, ResNet50_Weights.IMAGENET1K_V1``, whose documented metrics hold the
figure), a file of a code release (``file layers-18pct.cfg``) or a titled post.

``protocol`` is one of PROTOCOLS: each says what was measured and either the
``cnnbench eval`` settings that measure the same thing, or why cnnbench eval
cannot (dense evaluation, whitened inputs, ...), so a figure is never compared
with a number measured another way without saying so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

FIGURE_KEYS = ("top1", "top5", "top1_error", "top5_error")  # what a model's block may report
MODEL_KEYS = (*FIGURE_KEYS, "protocol", "source", "note", "in_paper")
# in_paper: where the block's figure is a library's (torchvision's weights), the paper's own figure
# for the network, a block of the same form.
WORDS_KEYS = ("protocol", "source", "note")  # an experiment's other keys are its figures

_PLACE = (
    r"(?:Table|Figure) [1-9][0-9]*"
    r"|section [1-9][0-9]*(?:\.[1-9][0-9]*)*"
    r"|[A-Za-z0-9_]+_Weights\.[A-Z0-9_]+"
    r"|file [\w./-]+"
    r"|post \"[^\"]+\""
)
SOURCE = re.compile(rf"(?P<who>[^,()]+), (?P<where>(?:{_PLACE})(?: and (?:{_PLACE}))*)(?: \((?P<detail>.+)\))?")
PLACE = re.compile(_PLACE)


@dataclass(frozen=True)
class Protocol:
    """How a published figure was measured: ``eval`` is the cnnbench settings (dotted keys) that
    measure it; None with ``not_runnable`` saying why no setting does."""

    summary: str
    eval: Optional[Mapping[str, Any]] = None
    not_runnable: Optional[str] = None
    caveat: Optional[str] = None  # where the settings are the closest cnnbench has, not the same


PROTOCOLS: Dict[str, Protocol] = {
    "imagenet_val_1crop_resize256": Protocol(
        "ILSVRC-2012 val (50,000 images), the centre 224 crop of the image resized so its shorter side is 256",
        eval={"data": "imagenet", "eval.split": "val", "eval.crops": 1, "eval.resize": 256},
    ),
    "imagenet_val_1crop_resize342": Protocol(
        "ILSVRC-2012 val, the centre 299 crop of the image resized so its shorter side is 342 "
        "(torchvision's Inception-v3 weights)",
        eval={"data": "imagenet", "eval.split": "val", "eval.crops": 1, "eval.resize": 342},
    ),
    "imagenet_val_1crop_unstated": Protocol(
        "ILSVRC-2012 val, one crop at the network's input size; the paper does not say how it was cut",
        eval={"data": "imagenet", "eval.split": "val", "eval.crops": 1},
        caveat="eval.crops=1 cuts the centre crop of the image resized to eval.resize (input / 0.875 is usual: "
               "256 for 224, 342 for 299); the paper's crop may differ",
    ),
    "imagenet_val_10crop": Protocol(
        "ILSVRC-2012 val, softmax averaged over AlexNet's ten 224 patches of the 256 image: four corners, "
        "centre, and their mirrors (Krizhevsky et al. 2012, section 4.1)",
        eval={"data": "imagenet", "eval.split": "val", "eval.crops": 10, "eval.resize": 256},
    ),
    "imagenet_val_144crop": Protocol(
        "ILSVRC-2012 val, softmax averaged over GoogLeNet's 144 crops at 4 scales (Szegedy et al. 2015, section 7)",
        eval={"data": "imagenet", "eval.split": "val", "eval.crops": 144, "eval.scales": [256, 288, 320, 352]},
    ),
    "imagenet_val_dense_q256": Protocol(
        "ILSVRC-2012 val, VGG's dense evaluation at one scale Q = 256 (Simonyan & Zisserman 2015, section 3.2 "
        "and Table 3): the fully connected layers run as convolutions over the whole rescaled image, the class "
        "score map averaged over space and with that of the mirrored image",
        not_runnable="cnnbench eval classifies fixed-size crops (eval.crops); it has no dense, whole-image "
                     "evaluation, and one centre crop (eval.crops=1) scores differently",
    ),
    "imagenet_val_unstated": Protocol(
        "ILSVRC-2012 val; the paper does not say how its test images were cropped or scaled",
        not_runnable="the measurement is not described, so no cnnbench eval setting is known to repeat it",
    ),
    "imagenet_val_48238_1crop": Protocol(
        "ILSVRC-2012 val less its 1,762 blacklisted images (48,238), one 299 crop (Szegedy et al. 2016)",
        not_runnable="cnnbench eval scores the whole validation split; it has no blacklist",
    ),
    "cifar10_test": Protocol(
        "CIFAR-10 test (10,000 images), each seen once as it is, 32x32",
        eval={"data": "cifar10", "eval.split": "test", "eval.crops": 1},
    ),
    "mnist_test": Protocol(
        "MNIST test (10,000 images), each seen once as it is",
        eval={"data": "mnist", "eval.split": "test", "eval.crops": 1},
    ),
    "cifar10_test_gcn_zca": Protocol(
        "CIFAR-10 test, every image globally contrast-normalised and ZCA-whitened, as in training "
        "(Lin et al. 2014, section 4.2, after Goodfellow et al. 2013)",
        not_runnable="cnnbench's data pipeline normalises by per-channel mean and std; it has no global "
                     "contrast normalisation or ZCA whitening, so a model trained and tested on them is not run",
    ),
    "cifar10_test_yuv": Protocol(
        "CIFAR-10 test, images converted to YUV, Y normalised locally and U, V globally (cifar.torch's "
        "provider.lua, as in training)",
        not_runnable="cnnbench's data pipeline feeds per-channel normalised RGB; it has no YUV conversion "
                     "or local contrast normalisation",
    ),
}


def parse_source(text: Any) -> Tuple[str, List[str], Optional[str]]:
    """``"He et al. 2016, Table 6 (best of 5 runs)"`` -> ("He et al. 2016", ["Table 6"], "best of 5 runs")."""
    match = SOURCE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(
            f"source must be '<who>, <place>' with the place a 'Table N', 'Figure N', 'section N', "
            f"a '<Name>_Weights.<ENTRY>', 'file <name>' or 'post \"<title>\"', got {text!r}"
        )
    places = [m.group(0) for m in PLACE.finditer(match.group("where"))]
    return match.group("who").strip(), places, match.group("detail")


def block_problems(block: Mapping[str, Any], experiment: bool = False) -> List[str]:
    """What a non-empty published block lacks or gets wrong; [] when it conforms."""
    problems = []
    protocol = block.get("protocol")
    if protocol not in PROTOCOLS:
        problems.append(f"protocol {protocol!r} is not one of: {', '.join(PROTOCOLS)}")
    try:
        parse_source(block.get("source"))
    except ValueError as err:
        problems.append(str(err))
    figures = {k: v for k, v in block.items() if k not in WORDS_KEYS} if experiment else {
        k: v for k, v in block.items() if k in FIGURE_KEYS}
    if not experiment:
        unknown = sorted(set(block) - set(MODEL_KEYS))
        problems += [f"unknown key {', '.join(unknown)}; a model's block takes: {', '.join(MODEL_KEYS)}"] if unknown else []
        inner = block.get("in_paper")
        if inner is not None:
            nested = block_problems(inner) if isinstance(inner, Mapping) else ["must be a published block"]
            problems += [f"in_paper: {problem}" for problem in nested]
    if not figures and not block.get("note"):
        problems.append("no figure (top1, top5, top1_error, top5_error, ...) and no note saying why")
    bad = [k for k, v in figures.items() if not all_percentages(v)]
    if bad:
        problems.append(f"{', '.join(bad)}: a figure is a percentage in (0, 100), or a mapping of them")
    return problems


def all_percentages(value: Any) -> bool:
    if isinstance(value, Mapping):
        return bool(value) and all(all_percentages(v) for v in value.values())
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 100
