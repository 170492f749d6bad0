"""`cnnbench summary model=NAME`: the per-layer table (or JSON) of a model, writing no files."""

from __future__ import annotations

import json
from dataclasses import asdict

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from cnnbench.config import input_shape
from cnnbench.models.api import default_num_classes, model_from_config
from cnnbench.models.summary import format_table, summarize
from cnnbench.validate import validate


def summary_command(cfg: DictConfig) -> None:
    validate(cfg, "summary")  # summary.format is a SummaryFormat: the schema refused any other
    options = cfg.summary
    shape = tuple(options.input_size) if options.input_size else input_shape(cfg)
    if options.input_size:
        cfg.model.input_size = list(shape)
    if not chose_data(HydraConfig.get().overrides.task):
        # The model at its own size, as its paper counts it (resnet50: 25.6 M parameters for
        # ImageNet's 1000 classes), not sized for the default dataset's 10 classes.
        cfg.data.num_classes = default_num_classes(shape)
    model = model_from_config(cfg, load_pretrained=False)  # counts need no weights
    rows = summarize(model, shape)
    if options.format == "json":
        print(json.dumps({
            "model": cfg.model.name, "input_size": list(shape), "num_classes": cfg.data.num_classes,
            "params": sum(r.params for r in rows), "macs": sum(r.macs for r in rows),
            "flops": 2 * sum(r.macs for r in rows), "other_ops": sum(r.other_ops for r in rows),
            "layers": [{**asdict(r), "output": list(r.output)} for r in rows],
        }))
    else:
        print(format_table(cfg.model.name, shape, rows))


def chose_data(overrides) -> bool:
    """Whether the command line picked a dataset or set one of its keys (``data=``, ``data.x=``)."""
    return any(o.lstrip("+~").split("=", 1)[0].split(".")[0] == "data" for o in overrides)
