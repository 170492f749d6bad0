"""`cnnbench bench model=NAME`: the speed of a model's step, printed (nothing is written)."""

from __future__ import annotations

import json

from omegaconf import DictConfig

from cnnbench.engine.bench import benchmark, format_result
from cnnbench.validate import validate


def bench_command(cfg: DictConfig) -> float:
    validate(cfg, "bench")
    result = benchmark(cfg)
    print(json.dumps(result) if cfg.bench.format == "json" else format_result(result))
    return result["images_per_s"]
