"""``model.pretrained=torchvision``: torchvision's ImageNet weights in the zoo files that are its networks.

A zoo file whose ``source:`` is ``torchvision.models.<name>`` (with or
without arguments) is that network row for row, so torchvision's weights
load into it by order (:func:`cnnbench.models.convert.load_torchvision_state_dict`).
The weights are read from torch hub's cache only,
``torch.hub.get_dir()/checkpoints/<file name of the weights' URL>`` (the
file ``torchvision.models.<name>(weights="DEFAULT")`` downloads); nothing
is downloaded here: a missing file is one error naming where to put it and
the URL to fetch it from.

Two of torchvision's checkpoints differ from the network in the file:
GoogLeNet's and Inception-v3's hold an auxiliary classifier (the files
leave it out; its tensors are dropped), and were trained on inputs scaled
to [-1, 1] (``transform_input=True``), which is folded into the first
convolution and its batchnorm's running mean, so the network takes the
ImageNet mean/std normalisation that ``data=imagenet`` gives. That fold is
exact for Inception-v3 (its first conv has no padding) and exact but for
the 3-pixel zero-padded border for GoogLeNet's 7x7 conv.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional
from urllib.parse import urlparse

import torch

from cnnbench.errors import UserError

TORCHVISION_SOURCE = re.compile(r"^\s*torchvision\.models\.(\w+)")
PRETRAINED_CLASSES = 1000
# torchvision's checkpoints with an auxiliary head the zoo files leave out (tensor name prefixes).
AUX_PREFIXES = ("aux1.", "aux2.", "AuxLogits.")
# Checkpoints trained with transform_input=True: x * std/0.5 + (mean - 0.5)/0.5 per channel.
TRANSFORM_INPUT = ("googlenet", "inception_v3")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def torchvision_name(spec: Mapping[str, Any]) -> Optional[str]:
    """The torchvision builder a model config is (``resnet50`` for ``torchvision.models.resnet50``), else None."""
    match = TORCHVISION_SOURCE.match(str(spec.get("source") or ""))
    return match.group(1) if match else None


def models_with_weights() -> List[str]:
    """The zoo models whose file names a torchvision source, sorted."""
    from omegaconf import OmegaConf

    from cnnbench.config import CONF_DIR

    files = sorted((CONF_DIR / "model").glob("*.yaml"))
    return [path.stem for path in files if torchvision_name(OmegaConf.load(path))]


def check_pretrained(spec: Mapping[str, Any], num_classes: int, classes_key: str = "data.num_classes") -> Optional[str]:
    """The torchvision name whose weights ``spec['pretrained']`` asks for (None: no pretrained weights);
    a model without a torchvision source or a class count other than 1000 is a one-line error."""
    pretrained = spec.get("pretrained")
    if pretrained is None:
        return None
    if str(pretrained) != "torchvision":
        raise UserError(f"model.pretrained={pretrained} is not a choice; use torchvision or null")
    name = torchvision_name(spec)
    if name is None:
        raise UserError(
            f"model.pretrained=torchvision: model '{spec.get('name')}' is not a torchvision network "
            f"(its source: {spec.get('source') or 'none'}); models with torchvision weights: "
            f"{', '.join(models_with_weights())}"
        )
    if num_classes != PRETRAINED_CLASSES:
        raise UserError(
            f"model.pretrained=torchvision: torchvision's weights classify {PRETRAINED_CLASSES} ImageNet classes, "
            f"but {classes_key}={num_classes}; use {PRETRAINED_CLASSES} (data=imagenet) or drop model.pretrained"
        )
    return name


def weights_location(name: str) -> tuple:
    """(path in torch hub's cache, URL) of torchvision's DEFAULT weights for builder ``name``."""
    import torchvision

    url = torchvision.models.get_model_weights(name).DEFAULT.url
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name, url


def torchvision_weights(name: str) -> Dict[str, torch.Tensor]:
    """torchvision's DEFAULT ImageNet state dict for builder ``name``, read from the hub cache and
    adapted to the zoo file (auxiliary head dropped, input transform folded in)."""
    path, url = weights_location(name)
    if not path.is_file():
        raise UserError(
            f"model.pretrained=torchvision: torchvision's {name} weights are not at {path}; nothing is downloaded "
            f"here: fetch {url} on a machine with internet and put it there (the folder is torch.hub.get_dir()/checkpoints, "
            f"set by $TORCH_HOME)"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated download or another file under that name
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise UserError(f"model.pretrained=torchvision: cannot read {path} ({first}); fetch {url} again") from err
    state = {key: value for key, value in state.items() if not key.startswith(AUX_PREFIXES)}
    if name in TRANSFORM_INPUT:
        fold_input_transform(state)
    return state


def fold_input_transform(state: Dict[str, torch.Tensor]) -> None:
    """Fold torchvision's ``transform_input`` (x * a + b per channel, from ImageNet normalisation
    to [-1, 1]) into the first conv (no bias) and the running mean of the batchnorm after it."""
    conv_key = next(key for key, value in state.items() if value.dim() == 4)
    mean_key = next(key for key in state if key.endswith("running_mean"))
    scale = torch.tensor([s / 0.5 for s in IMAGENET_STD])
    shift = torch.tensor([(m - 0.5) / 0.5 for m in IMAGENET_MEAN])
    weight = state[conv_key]
    # conv(W, a*x + b) = conv(W*a, x) + sum(W*b) per output channel (exact where no padding is read).
    constant = (weight * shift.view(1, -1, 1, 1).to(weight.dtype)).sum(dim=(1, 2, 3))
    state[conv_key] = weight * scale.view(1, -1, 1, 1).to(weight.dtype)
    state[mean_key] = state[mean_key] - constant
