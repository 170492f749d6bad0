"""`cnnbench summary model=NAME`: the per-layer table (or JSON) of a model, writing no files."""

from __future__ import annotations

import json
from dataclasses import asdict

from omegaconf import DictConfig

from cnnbench.config import input_shape
from cnnbench.models.api import model_from_config
from cnnbench.models.summary import format_table, summarize
from cnnbench.validate import validate


def summary_command(cfg: DictConfig) -> None:
    validate(cfg, "summary")  # summary.format is a SummaryFormat: the schema refused any other
    options = cfg.summary
    shape = tuple(options.input_size) if options.input_size else input_shape(cfg)
    if options.input_size:
        cfg.model.input_size = list(shape)
    model = model_from_config(cfg)
    rows = summarize(model, shape)
    if options.format == "json":
        print(json.dumps({
            "model": cfg.model.name, "input_size": list(shape),
            "params": sum(r.params for r in rows), "macs": sum(r.macs for r in rows),
            "flops": 2 * sum(r.macs for r in rows), "other_ops": sum(r.other_ops for r in rows),
            "layers": [{**asdict(r), "output": list(r.output)} for r in rows],
        }))
    else:
        print(format_table(cfg.model.name, shape, rows))
