"""The zoo from Python: ``create_model``, ``list_models`` and ``model_spec``.

    import cnnbench
    cnnbench.list_models("resnet*")                     # ['resnet101', 'resnet110', ...]
    model = cnnbench.create_model("resnet20")           # 10 classes at its 32x32
    model = cnnbench.create_model("alexnet", num_classes=100, lrn=False, dropout=0.0)

A model is built as ``cnnbench train model=NAME`` builds it: its file in
conf/model/ merged onto the ``ModelConfig`` schema (so a key the schema does
not know fails the same way), ``${data.num_classes}`` resolved to
``num_classes``, at the file's ``input_size``.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
from typing import Any, Dict, List, Optional, Sequence, Tuple

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from cnnbench.config import CONF_DIR, ModelConfig
from cnnbench.errors import UserError
from cnnbench.models.builder import Network, build_model
from cnnbench.models.convert import load_torchvision_state_dict
from cnnbench.models.pretrained import check_pretrained, torchvision_weights
from cnnbench.models.registry import BuildOptions

MODEL_DIR = CONF_DIR / "model"
# The default dataset's (digits) shape, for files with `input_size: null`,
# which take their dataset's shape when trained.
DEFAULT_INPUT = (1, 32, 32)
# create_model's keywords that are the regularization group's switches, not model keys.
OPTION_KEYS = ("dropout", "lrn")


class ZooError(UserError, ValueError):
    """A model name or keyword that create_model / model_spec cannot use."""


def list_models(pattern: str = "*") -> List[str]:
    """The zoo's model names (the files in conf/model/), sorted; ``pattern`` is a glob such as "vgg*"."""
    return sorted(path.stem for path in MODEL_DIR.glob("*.yaml") if fnmatch.fnmatchcase(path.stem, pattern))


def model_keys() -> List[str]:
    """The keys of a model file that a caller may override: the schema's, but the name."""
    return [f.name for f in dataclasses.fields(ModelConfig) if f.name != "name"]


def native_input(spec: Dict[str, Any]) -> Tuple[int, ...]:
    """(C, H, W) a resolved spec is built for: its ``input_size``, else the default dataset's."""
    return tuple(spec.get("input_size") or DEFAULT_INPUT)


def default_num_classes(input_shape: Sequence[int]) -> int:
    """ImageNet's 1000 classes for ImageNet-size inputs (128 px and up), CIFAR-10's 10 below."""
    return 1000 if input_shape[-1] >= 128 else 10


def model_spec(name: str, num_classes: Optional[int] = None, **overrides: Any) -> Dict[str, Any]:
    """The resolved model config of conf/model/<name>.yaml, as ``build_model`` takes it.

    ``overrides`` are model keys (``norm="gn"``, ``input_size=[3, 64, 64]``);
    ``num_classes`` defaults to :func:`default_num_classes` of the input size.
    Block libraries in ``uses`` are left for ``build_model`` to read.
    """
    check_name(name)
    check_keywords(name, overrides, model_keys())
    if num_classes is not None and not is_whole_number(num_classes, at_least=1):
        raise ZooError(f"model '{name}': num_classes must be a whole number >= 1, got {num_classes!r}")
    file = f"conf/model/{name}.yaml"
    config = merged(OmegaConf.structured(ModelConfig), OmegaConf.load(MODEL_DIR / f"{name}.yaml"), file)
    config = merged(config, overrides, f"model '{name}' with {', '.join(overrides)} overridden")
    if num_classes is None:
        num_classes = default_num_classes(tuple(config.input_size or DEFAULT_INPUT))
    # The file reads ${data.num_classes} from the run's config; this is that config's data part.
    root = OmegaConf.create({"data": {"num_classes": num_classes}})
    root.model = config
    try:
        return OmegaConf.to_container(root.model, resolve=True)
    except OmegaConfBaseException as err:
        raise ZooError(f"{file}: {first_line(err)}") from err


def create_model(name: str, num_classes: Optional[int] = None, **overrides: Any) -> Network:
    """The network of conf/model/<name>.yaml, built at its own input size (``input_size=`` changes it).

    ``overrides``: model keys (see :func:`model_spec`; ``pretrained="torchvision"`` loads
    torchvision's ImageNet weights, see cnnbench/models/pretrained.py), and ``dropout=`` (a
    rate for every dropout layer, 0 removes them) and ``lrn=`` (False removes
    LRN layers), the regularization group's switches.
    """
    check_keywords(name, overrides, model_keys() + list(OPTION_KEYS))
    options = build_options(name, {key: overrides.pop(key) for key in OPTION_KEYS if key in overrides})
    spec = model_spec(name, num_classes, **overrides)
    classes = num_classes if num_classes is not None else default_num_classes(native_input(spec))
    weights = pretrained_weights(spec, classes, "num_classes")
    network = build_model(spec, native_input(spec), options, source=f"conf/model/{name}.yaml")
    if weights is not None:
        load_torchvision_state_dict(network, weights)
    return network


def check_name(name: str) -> None:
    models = list_models()
    if name not in models:
        near = difflib.get_close_matches(str(name), models, n=1)
        hint = f"did you mean '{near[0]}'? " if near else ""
        raise ZooError(f"unknown model '{name}'; {hint}models: {', '.join(models)}")


def merged(base: Any, extra: Any, where: str) -> Any:
    """``extra`` merged onto ``base``; a key or a type the schema refuses is a one-line error naming ``where``."""
    try:
        return OmegaConf.merge(base, extra)
    except OmegaConfBaseException as err:
        raise ZooError(f"{where}: {first_line(err)}") from err


def first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0]


def is_whole_number(value: Any, at_least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= at_least


def check_keywords(name: str, given: Dict[str, Any], valid: Sequence[str]) -> None:
    unknown = sorted(set(given) - set(valid))
    if unknown:
        raise ZooError(f"model '{name}': unknown keyword {', '.join(unknown)}; valid: {', '.join(valid)}")


def build_options(name: str, options: Dict[str, Any]) -> BuildOptions:
    """``dropout`` and ``lrn``, checked as the regularization group's schema checks them on the command line."""
    dropout = options.get("dropout")
    is_rate = isinstance(dropout, (int, float)) and not isinstance(dropout, bool) and 0 <= dropout < 1
    if dropout is not None and not is_rate:
        raise ZooError(f"model '{name}': dropout must be a rate in [0, 1) or None (keep each layer's), got {dropout!r}")
    lrn = options.get("lrn", True)
    if not isinstance(lrn, bool):
        raise ZooError(f"model '{name}': lrn must be True or False, got {lrn!r}")
    return BuildOptions(dropout=None if dropout is None else float(dropout), lrn=lrn)


def model_from_config(cfg, source: Optional[str] = None, load_pretrained: bool = True) -> Network:
    """The network a composed run config describes (``cfg.model`` at the run's input
    size), with the run's regularization switches applied; ``source`` names it in errors.
    ``model.pretrained`` loads those weights unless ``load_pretrained`` is False (a caller
    that loads a checkpoint's weights over them anyway)."""
    from cnnbench.config import input_shape, plain

    options = BuildOptions(dropout=cfg.regularization.dropout, lrn=cfg.regularization.lrn)
    where = source or f"model '{cfg.model.name}'"
    spec = plain(cfg.model)
    weights = pretrained_weights(spec, cfg.data.num_classes) if load_pretrained else None
    network = build_model(spec, input_shape(cfg), options, where)
    # A model that ends in the wrong shape would train against the labels anyway (7 outputs
    # for 10 classes fails mid-step, a spatial map fails in the loss): refuse it here, by name.
    classes = cfg.data.num_classes
    if tuple(network.output_shape) != (classes,):
        raise ZooError(
            f"{where}: the model's output shape is {tuple(network.output_shape)}, but data.num_classes={classes} "
            f"needs ({classes},); end the model with flatten and [linear, {{out: \"${{data.num_classes}}\"}}]"
        )
    if weights is not None:
        load_torchvision_state_dict(network, weights)
    return network


def pretrained_weights(spec: Dict[str, Any], num_classes: int, classes_key: str = "data.num_classes"):
    """The state dict ``spec['pretrained']`` asks for (read before the network is built, so a
    refused model or a missing file fails at once), or None."""
    name = check_pretrained(spec, num_classes, classes_key)
    return None if name is None else torchvision_weights(name)
